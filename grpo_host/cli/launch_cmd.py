"""`grpo-host launch TARGET CONFIG`: run a training config elsewhere (an Amazon SageMaker job)."""

from __future__ import annotations

import click

from grpo_host.errors import GrpoHostError


@click.command("launch")
@click.argument("target")
@click.argument("config")
def launch_cmd(target: str, config: str) -> None:
    """Launch a run elsewhere (sagemaker)."""
    raise GrpoHostError("launch is not available yet in this version")


COMMANDS = (launch_cmd,)
