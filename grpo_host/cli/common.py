"""Helpers shared by the CLI's subcommands: error display, JSON output, --set parsing."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator
from typing import Any

import click

from grpo_host.errors import GrpoHostError
from grpo_host.overrides import parse_sets, parse_value  # noqa: F401 - the subcommands' --set


@contextlib.contextmanager
def fail_cleanly() -> Iterator[None]:
    """A GrpoHostError is the user's to fix: print its message, not a traceback."""
    try:
        yield
    except GrpoHostError as exc:
        from grpo_host.observability.redact import redact

        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(2)


def echo_json(data: Any) -> None:
    from grpo_host.observability.redact import redact

    click.echo(redact(json.dumps(data, indent=2, default=str)))


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False)
