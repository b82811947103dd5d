"""`grpo-host report OUTPUT_DIR`: rebuild a run's report from the files it wrote."""

from __future__ import annotations

from pathlib import Path

import click

from grpo_host.cli.common import echo_json
from grpo_host.errors import GrpoHostError


@click.command("report")
@click.argument("output_dir", type=click.Path(file_okay=False, path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def report_cmd(output_dir: Path, as_json: bool) -> None:
    """Rebuild OUTPUT_DIR/report.html and reward_curves.png from its metrics.jsonl.

    Works on a finished run, a run still training, or one that was stopped: the report is a
    pure function of metrics.jsonl, samples.jsonl, reward_provenance.json and run.json.
    """
    if not (output_dir / "metrics.jsonl").is_file():
        raise GrpoHostError(
            f"{output_dir} has no metrics.jsonl; give the output dir of a training run "
            "(where `grpo-host train` wrote its model and metrics)"
        )
    from grpo_host.observability.health import analyse
    from grpo_host.observability.report import read_jsonl, write_report

    paths = write_report(output_dir)
    records = read_jsonl(output_dir / "metrics.jsonl")
    warnings = analyse(records)
    if as_json:
        echo_json({"files": {k: str(v) for k, v in paths.items()}, "steps": len(records),
                   "health_warnings": [w.to_json() for w in warnings]})
        return
    for kind, path in paths.items():
        click.echo(f"{kind + ':':6} {path}")
    click.echo(f"{len(records)} logged steps; {len(warnings) or 'no'} reward-health warning(s)")
    for warning in warnings:
        click.echo(f"  - {warning.kind} (steps {warning.first_step}-{warning.last_step}): {warning.message}")


COMMANDS = (report_cmd,)
