"""`grpo-host train`: the main job.

With no CONFIG it runs the embedded default (a tiny Qwen2 learning arithmetic-shaped
rewards on CPU in a few minutes). `--print-config` and `--schema` answer without importing
torch; training itself runs in a worker process that the backend launches.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from grpo_host.cli.common import console, parse_sets


@click.command("train")
@click.argument("config", required=False, type=click.Path(dir_okay=False))
@click.option("--output-dir", help="Where the run writes its model, metrics and report (default ./grpo-runs/<name>).")
@click.option("--backend", help="Training backend: accelerate, torchrun-fsdp, ... (default from the config).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE",
              help="Override a config field, dotted: grpo.max_steps=20, rewards.length.weight=2.")
@click.option("--print-config", is_flag=True, help="Print the resolved config as YAML and exit.")
@click.option("--print-command", is_flag=True, help="Check the run and print the command the backend would run.")
@click.option("--schema", is_flag=True, help="Print the config's JSON schema (for editors) and exit.")
@click.option("--overwrite", is_flag=True, help="Start over when the output dir holds a run: its checkpoints, "
              "metrics and model are replaced (without it a finished run is left as it is, and a crashed one resumes).")
def train_cmd(config: str | None, output_dir: str | None, backend: str | None, sets: tuple[str, ...],
              print_config: bool, print_command: bool, schema: bool, overwrite: bool) -> None:
    """Train with GRPO; with no CONFIG, the embedded default (a tiny model on CPU).

    Rerunning the same command resumes a crashed run from its last checkpoint and leaves a
    finished one as it is; raise grpo.max_steps to train it further, or add --overwrite.
    """
    from grpo_host.config import json_schema, load_config

    if schema:
        click.echo(json.dumps(json_schema(), indent=2))
        return
    from grpo_host.config import apply_overrides
    from grpo_host.sagemaker.job_env import finish_job, prepare_job

    # Inside a SageMaker job ({} elsewhere): its model/output/channel paths and hyperparameters.
    overrides = apply_overrides(prepare_job(config, backend), parse_sets(sets))
    run_config = load_config(config, overrides, output_dir=output_dir, backend=backend)
    from grpo_host.observability import redact

    redact.configure(run_config.redact_env)
    from grpo_host.training.launch import ProgressView, check_run, closing_message, prepare, run_prepared

    if print_config:
        check_run(run_config)  # what train would refuse, --print-config refuses too
        click.echo(redact.redact(run_config.to_yaml()), nl=False)
        return
    from grpo_host.training.finished import finished_message, finished_run, forget_finished

    if overwrite:
        run_config.checkpointing.resume = False
    else:
        done = finished_run(run_config)
        if done is not None:
            check_run(run_config)
            click.echo(finished_message(done, run_config.output.dir))
            return
    prepared = prepare(run_config, write=not print_command)
    if overwrite and not print_command:
        forget_finished(run_config.output.dir)
    if print_command:
        import shlex

        click.echo(shlex.join(prepared.argv))
        return
    out = console()
    names = [r.key for r in run_config.rewards]
    out.print(f"[bold]grpo-host train[/bold] {config or '(embedded default)'} -> {run_config.output.dir} "
              f"[dim](backend {prepared.backend.name}, rewards {', '.join(names)})[/dim]")
    with ProgressView(out, names) as view:
        code = run_prepared(prepared, view.event, view.line)
    if code != 0:
        out.print(f"[red]training failed (exit code {code})[/red]; the log is above, the run's files in "
                  f"{run_config.output.dir}")
        raise SystemExit(code)
    for line in closing_message(Path(run_config.output.dir), view.end):
        out.print(line, highlight=False, markup=False)  # completions and prompts may hold [brackets]
    finish_job(run_config.output.dir)  # in a SageMaker job: the report into output.tar.gz too


COMMANDS = (train_cmd,)
