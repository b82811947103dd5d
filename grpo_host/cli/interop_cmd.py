"""`grpo-host serve-rewards` and `export`: our rewards for trainers other than TRL."""

from __future__ import annotations

import sys

import click

from grpo_host.cli.common import console


def _names(text: tuple[str, ...]) -> list[str]:
    return [n.strip() for item in text for n in item.split(",") if n.strip()]


@click.command("serve-rewards")
@click.argument("names", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for other machines (put it behind your network's controls).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port; 0 takes a free one.")
@click.option("--set", "sets", multiple=True, metavar="REWARD.PARAM=VALUE",
              help="Set a reward param (timeout and weight too: accuracy.timeout=5).")
@click.option("--workers", type=int, default=None, help="Reward worker processes (default: the cores available).")
@click.option("--max-request-bytes", type=int, default=None, help="Largest request body (default 8 MiB).")
@click.option("--max-samples", type=int, default=None, help="Most samples in one request (default 4096).")
@click.option("--label-column", default="answer", show_default=True,
              help="The column OpenRLHF's `labels` fill on /get_reward.")
@click.option("-v", "--verbose", is_flag=True, help="Log every request to stderr.")
def serve_rewards_cmd(names: tuple[str, ...], host: str, port: int, sets: tuple[str, ...], workers: int | None,
                      max_request_bytes: int | None, max_samples: int | None, label_column: str,
                      verbose: bool) -> None:
    """Serve rewards NAME[,NAME...] over HTTP for trainers on other machines.

    POST /score takes {"samples": [{"completion", "prompt", <columns>}]}; POST /get_reward takes
    OpenRLHF's {"query", "prompts", "labels"}; GET /health. See docs/serve-rewards.md.
    """
    from grpo_host.cli.rewards_cmd import _reward_params
    from grpo_host.interop.scoring import bind_rewards
    from grpo_host.interop.server import DEFAULT_MAX_REQUEST_BYTES, DEFAULT_MAX_SAMPLES, RewardServer

    reward_names = _names(names)
    params = _reward_params(reward_names, sets)
    bound = bind_rewards([(name, params[name]) for name in reward_names])
    server = RewardServer(
        bound, host=host, port=port, workers=workers,
        max_request_bytes=max_request_bytes or DEFAULT_MAX_REQUEST_BYTES,
        max_samples=max_samples or DEFAULT_MAX_SAMPLES, label_column=label_column, verbose=verbose,
    )
    # The first line is for scripts (and tests) that started us with --port 0.
    click.echo(f"serving rewards {', '.join(server.names)} on {server.url}", nl=True)
    sys.stdout.flush()
    console(stderr=True).print(
        f"[dim]POST {server.url}/score · POST {server.url}/get_reward (OpenRLHF) · GET {server.url}/health · "
        f"{server.runtime.size} worker(s); Ctrl-C stops[/dim]", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


@click.command("export")
@click.argument("trainer", type=click.Choice(["verl", "openrlhf"]))
@click.argument("names", nargs=-1)
@click.option("-o", "--output", metavar="FILE.py", help="Where to write (default ./grpo_host_<trainer>_reward.py).")
@click.option("--url", help="Score through a reward server at this URL instead of in the trainer's process.")
@click.option("--set", "sets", multiple=True, metavar="REWARD.PARAM=VALUE", help="Set a reward param.")
@click.option("--label-column", default="answer", show_default=True,
              help="The column the trainer's label (verl's ground_truth, OpenRLHF's labels) fills.")
@click.option("--workers", type=int, default=None, help="Reward worker processes in the trainer's process.")
def export_cmd(trainer: str, names: tuple[str, ...], output: str | None, url: str | None, sets: tuple[str, ...],
               label_column: str, workers: int | None) -> None:
    """Write the file verl or OpenRLHF loads to score with rewards NAME[,NAME...].

    verl: custom_reward_function.path=FILE (compute_score). OpenRLHF: --remote_rm_url FILE
    (reward_func). Or point OpenRLHF's --remote_rm_url at a `grpo-host serve-rewards` server's
    /get_reward directly: no file needed.
    """
    from grpo_host.cli.rewards_cmd import _reward_params
    from grpo_host.interop.export import write_export

    reward_names = _names(names)
    params = _reward_params(reward_names, sets) if reward_names else {}
    path = write_export(trainer, reward_names, params, output, url=url, label_column=label_column,
                        workers=workers, argv=sys.argv[1:] if sys.argv[1:2] == ["export"] else ["export", trainer])
    click.echo(f"wrote {path}")
    if trainer == "verl":
        click.echo(f"  verl: custom_reward_function.path={path} custom_reward_function.name=compute_score")
    else:
        click.echo(f"  OpenRLHF: --remote_rm_url {path} --label_key <your answer column>")


COMMANDS = (serve_rewards_cmd, export_cmd)
