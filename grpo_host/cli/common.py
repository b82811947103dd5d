"""Helpers shared by the CLI's subcommands: error display, JSON output, --set parsing."""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import click

from grpo_host.errors import GrpoHostError


@contextlib.contextmanager
def fail_cleanly() -> Iterator[None]:
    """A GrpoHostError is the user's to fix: print its message, not a traceback."""
    try:
        yield
    except GrpoHostError as exc:
        from grpo_host.redact import redact

        click.echo(f"error: {redact(str(exc))}", err=True)
        sys.exit(2)


def echo_json(data: Any) -> None:
    from grpo_host.redact import redact

    click.echo(redact(json.dumps(data, indent=2, default=str)))


def parse_value(text: str) -> Any:
    """`--set` values are YAML scalars: 3 is an int, 0.5 a float, true a bool, [a, b] a list."""
    import yaml

    try:
        value = yaml.safe_load(text) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(value, dict) and not text.lstrip().startswith("{"):
        return text  # `Q: {question}` is a template, not a mapping; mappings are written {a: 1}
    if isinstance(value, str):
        # YAML 1.1 reads 1e-5 (no dot) as a string; a learning rate is meant as a number.
        try:
            return float(value) if value.strip().lower() not in ("nan", "inf", "-inf", "infinity") else value
        except ValueError:
            return value
    return value


def parse_sets(items: Sequence[str], option: str = "--set") -> dict[str, Any]:
    """`a.b=1` pairs -> a nested dict `{"a": {"b": 1}}`."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise GrpoHostError(f"{option} expects KEY=VALUE (dotted keys allowed), got {item!r}")
        node = tree
        parts = key.strip().split(".")
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise GrpoHostError(f"{option} {item!r}: {part!r} was already given a value")
            node = child
        node[parts[-1]] = parse_value(raw)
    return tree


def console(stderr: bool = False):
    from rich.console import Console

    return Console(stderr=stderr, soft_wrap=False)
