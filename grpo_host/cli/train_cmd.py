"""`grpo-host train`: the main job."""

from __future__ import annotations

import click

from grpo_host.errors import GrpoHostError


@click.command("train", context_settings={"ignore_unknown_options": False})
@click.argument("config", required=False)
@click.option("--output-dir", help="Where the run writes its model, metrics and report.")
@click.option("--backend", help="Training backend: accelerate, torchrun-fsdp, ...")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config field (dotted keys).")
def train_cmd(config: str | None, output_dir: str | None, backend: str | None, sets: tuple[str, ...]) -> None:
    """Train with GRPO; with no CONFIG, the embedded default (a tiny model on CPU)."""
    raise GrpoHostError("train is not available yet in this version")


COMMANDS = (train_cmd,)
