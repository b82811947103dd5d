"""`grpo-host serve-rewards` and `export`: our rewards for trainers other than TRL."""

from __future__ import annotations

import sys

import click

from grpo_host.cli.common import console


def _names(text: tuple[str, ...]) -> list[str]:
    return [n.strip() for item in text for n in item.split(",") if n.strip()]


def _end_tokens_option(func):
    func = click.option("--tokenizer", metavar="NAME_OR_PATH",
                        help="Cut this tokenizer's EOS and pad tokens off completions, instead of the default list "
                             "(<|im_end|>, <|endoftext|>, </s>, <|eot_id|>, <|end_of_text|>, <end_of_turn>).")(func)
    return click.option("--strip-end-tokens/--keep-end-tokens", default=True, show_default=True,
                        help="Cut trailing EOS/pad tokens off each completion before scoring (trainers that decode "
                             "with skip_special_tokens=False, as OpenRLHF, leave them on).")(func)


@click.command("serve-rewards")
@click.argument("names", nargs=-1, required=True)
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 0.0.0.0 for other machines (then set --token-env).")
@click.option("--port", type=int, default=8000, show_default=True, help="Port; 0 takes a free one.")
@click.option("--set", "sets", multiple=True, metavar="REWARD.PARAM=VALUE",
              help="Set a reward param (timeout and weight too: accuracy.timeout=5).")
@click.option("--workers", type=int, default=None,
              help="Reward worker processes (default: the cores available); each scores its own batches, "
                   "so a hanging sample holds up only its worker's batch.")
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: worker processes on this machine; ray: one front end here, workers as Ray actors "
                   "across the cluster (pip install 'grpo-host[ray]').")
@click.option("--ray-address", metavar="HOST:PORT", default=None,
              help="With --executor ray: the cluster to join (default: RAY_ADDRESS, else a local Ray).")
@click.option("--num-cpus-per-worker", type=float, default=None,
              help="With --executor ray: CPUs each worker actor reserves (default 1).")
@click.option("--token-env", metavar="NAME",
              help="Require 'Authorization: Bearer <token>', the token read from environment variable NAME.")
@click.option("--max-request-bytes", type=int, default=None, help="Largest request body (default 8 MiB).")
@click.option("--max-samples", type=int, default=None, help="Most samples in one request (default 4096).")
@click.option("--max-connections", type=int, default=None, help="Most open connections (default 1024).")
@click.option("--header-timeout", type=float, default=None, help="Seconds a request's headers may take (default 15).")
@click.option("--body-timeout", type=float, default=None, help="Seconds a request's body may take (default 40).")
@click.option("--label-column", default="answer", show_default=True,
              help="The column OpenRLHF's `labels` fill on /get_reward.")
@_end_tokens_option
@click.option("-v", "--verbose", is_flag=True, help="Log every request to stderr.")
def serve_rewards_cmd(names: tuple[str, ...], host: str, port: int, sets: tuple[str, ...], workers: int | None,
                      executor: str, ray_address: str | None, num_cpus_per_worker: float | None,
                      token_env: str | None, max_request_bytes: int | None, max_samples: int | None,
                      max_connections: int | None, header_timeout: float | None, body_timeout: float | None,
                      label_column: str, strip_end_tokens: bool, tokenizer: str | None, verbose: bool) -> None:
    """Serve rewards NAME[,NAME...] over HTTP for trainers on other machines.

    POST /score takes {"samples": [{"completion", "prompt", <columns>}]}; POST /get_reward takes
    OpenRLHF's {"query", "prompts", "labels"}; GET /health, GET /rewards. SIGTERM finishes the
    requests in flight and stops. See docs/serve-rewards.md.
    """
    import os

    from grpo_host.cli.rewards_cmd import _reward_params
    from grpo_host.errors import GrpoHostError
    from grpo_host.interop.end_tokens import resolve_end_tokens
    from grpo_host.interop.scoring import bind_rewards
    from grpo_host.interop.server import Limits, RewardServer, is_loopback

    token = None
    if token_env:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise GrpoHostError(f"--token-env {token_env}: that environment variable is unset or empty; "
                                f"export {token_env}=<a long random secret> first (the token never goes on argv)")
    given = {"max_request_bytes": max_request_bytes, "max_samples": max_samples, "max_connections": max_connections,
             "header_timeout_s": header_timeout, "body_timeout_s": body_timeout}
    for key, value in given.items():
        if value is not None and not value > 0:
            raise GrpoHostError(f"--{key.removesuffix('_s').replace('_', '-')} must be a positive number, not {value}")
    if workers is not None and workers < 1:
        raise GrpoHostError(f"--workers must be 1 or more, not {workers}")
    executor_options = {k: v for k, v in (("address", ray_address), ("num_cpus_per_worker", num_cpus_per_worker))
                        if v is not None}
    if executor_options and executor != "ray":
        raise GrpoHostError("--ray-address and --num-cpus-per-worker go with --executor ray")
    if executor == "ray":
        from grpo_host.rewards.trl_adapter import check_executor

        check_executor(executor, executor_options)
    limits = Limits(**{k: v for k, v in given.items() if v is not None})
    end_tokens = resolve_end_tokens(tokenizer, strip_end_tokens)
    reward_names = _names(names)
    params = _reward_params(reward_names, sets)
    bound = bind_rewards([(name, params[name]) for name in reward_names])
    err = console(stderr=True)
    if not is_loopback(host) and token is None:
        err.print(f"[yellow]warning:[/yellow] serving on {host} without a token: anyone who can reach this port "
                  "can score (and load your workers); set --token-env NAME", highlight=False)
    server = RewardServer(bound, host=host, port=port, workers=workers, limits=limits,
                          label_column=label_column, end_tokens=end_tokens, token=token, warm=True, verbose=verbose,
                          executor=executor, executor_options=executor_options)
    # The first line is for scripts (and tests) that started us with --port 0.
    click.echo(f"serving rewards {', '.join(server.names)} on {server.url}", nl=True)
    sys.stdout.flush()
    err.print(
        f"[dim]POST {server.url}/score · POST {server.url}/get_reward (OpenRLHF) · GET {server.url}/health · "
        f"{server.pool.workers} worker(s){' (Ray actors)' if executor == 'ray' else ''}"
        f"{' · bearer token required' if token else ''}; Ctrl-C or SIGTERM stops[/dim]", highlight=False)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass


@click.command("export")
@click.argument("trainer", type=click.Choice(["verl", "openrlhf"]))
@click.argument("names", nargs=-1)
@click.option("-o", "--output", metavar="FILE.py", help="Where to write (default ./grpo_host_<trainer>_reward.py).")
@click.option("--url", help="Score through a reward server at this URL instead of in the trainer's process.")
@click.option("--token-env", metavar="NAME", help="With --url: send the bearer token read from variable NAME.")
@click.option("--set", "sets", multiple=True, metavar="REWARD.PARAM=VALUE", help="Set a reward param.")
@click.option("--label-column", default="answer", show_default=True,
              help="The column the trainer's label (verl's ground_truth, OpenRLHF's labels) fills.")
@click.option("--workers", type=int, default=None, help="Reward worker processes in the trainer's process.")
@_end_tokens_option
def export_cmd(trainer: str, names: tuple[str, ...], output: str | None, url: str | None, token_env: str | None,
               sets: tuple[str, ...], label_column: str, workers: int | None, strip_end_tokens: bool,
               tokenizer: str | None) -> None:
    """Write the file verl or OpenRLHF loads to score with rewards NAME[,NAME...].

    verl 0.9.1: reward.custom_reward_function.path=FILE (compute_score). OpenRLHF 0.11:
    --reward.remote_url FILE (reward_func). Or point OpenRLHF's --reward.remote_url at a
    `grpo-host serve-rewards` server's /get_reward directly: no file needed.
    """
    from grpo_host.cli.rewards_cmd import _reward_params
    from grpo_host.interop.end_tokens import resolve_end_tokens
    from grpo_host.interop.export import write_export

    reward_names = _names(names)
    params = _reward_params(reward_names, sets) if reward_names else {}
    path = write_export(trainer, reward_names, params, output, url=url, label_column=label_column,
                        workers=workers, argv=sys.argv[1:] if sys.argv[1:2] == ["export"] else ["export", trainer],
                        end_tokens=resolve_end_tokens(tokenizer, strip_end_tokens), token_env=token_env)
    click.echo(f"wrote {path}")
    if trainer == "verl":
        click.echo(f"  verl 0.9.1: reward.custom_reward_function.path={path} "
                   "reward.custom_reward_function.name=compute_score")
    else:
        click.echo(f"  OpenRLHF 0.11: --reward.remote_url {path} --data.label_key <your answer column>")


COMMANDS = (serve_rewards_cmd, export_cmd)
