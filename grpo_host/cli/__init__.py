"""The `grpo-host` command line.

Each subcommand lives in its own module and imports what it needs when it runs, so that
`grpo-host --help`, `plugins` and `rewards` start in a fraction of a second: no torch,
transformers or trl is imported here.
"""

from __future__ import annotations

import sys

import click

from grpo_host import __version__
from grpo_host.cli.common import fail_cleanly


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if not value or ctx.resilient_parsing:
        return
    from grpo_host.plugins.manager import get_plugin_manager

    click.echo(f"grpo-host {__version__} (Python {sys.version.split()[0]})")
    for plugin in get_plugin_manager().plugins:
        status = "" if plugin.status == "ok" else f" [{plugin.status}]"
        click.echo(f"  {plugin.name} {plugin.version}{status}")
    ctx.exit()


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Show the host version and the loaded plugins.")
def cli() -> None:
    """grpo-host: reward plugins and training backends for GRPO with TRL."""


def _register_commands() -> None:
    from grpo_host.cli import (
        datasets_cmd,
        interop_cmd,
        launch_cmd,
        plugins_cmd,
        report_cmd,
        rewards_cmd,
        train_cmd,
    )

    for module in (plugins_cmd, datasets_cmd, rewards_cmd, train_cmd, report_cmd, launch_cmd, interop_cmd):
        for command in module.COMMANDS:
            cli.add_command(command)


_register_commands()


def main() -> None:
    with fail_cleanly():
        cli.main(prog_name="grpo-host", standalone_mode=True)
