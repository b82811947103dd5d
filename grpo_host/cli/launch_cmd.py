"""`grpo-host launch TARGET CONFIG`: run a training config elsewhere (an Amazon SageMaker job).

The SageMaker SDK is imported only when a job is planned, so this module costs nothing at
CLI start; without the SDK the command says which extra to install.
"""

from __future__ import annotations

import json
import shutil
from typing import Any

import click

from grpo_host.cli.common import echo_json, parse_sets
from grpo_host.errors import GrpoHostError


@click.group("launch")
def launch_cmd() -> None:
    """Launch a run elsewhere: `grpo-host launch sagemaker run.yaml`."""


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    result = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise GrpoHostError(f"{option} expects NAME=VALUE, got {item!r}")
        result[key.strip()] = value
    return result


@launch_cmd.command("sagemaker")
@click.argument("config", type=click.Path(exists=True, dir_okay=False))
@click.option("--region", help="AWS region (default: your AWS profile's).")
@click.option("--role", help="IAM role ARN the job runs as (default: the SDK's execution-role lookup).")
@click.option("--image", help="Training image URI (default: the newest AWS PyTorch training image for the region).")
@click.option("--instance-type", help="e.g. ml.g5.2xlarge (default), ml.p4d.24xlarge, ml.m5.xlarge (CPU).")
@click.option("--instance-count", type=int, help="Number of instances (default 1).")
@click.option("--volume-size", "volume_size_gb", type=int, help="Storage volume per instance, GB (default 100).")
@click.option("--processes-per-node", type=int, help="Training processes per instance (default: one per GPU).")
@click.option("--train", help="Train data: an S3 URI, or a local file/folder to upload (default: data.source "
              "when it is a local path).")
@click.option("--eval", "eval_", help="Eval data channel: an S3 URI or a local path.")
@click.option("--channel", "channels", multiple=True, metavar="NAME=URI", help="Another input channel "
              "($SM_CHANNEL_<NAME> in the job).")
@click.option("--checkpoint-s3-uri", help="Sync /opt/ml/checkpoints here (resume after a spot interruption).")
@click.option("--output-path", help="S3 URI for the model and the report.")
@click.option("--bucket", help="S3 bucket for the uploaded source and data (default: the SDK's default bucket).")
@click.option("--job-name", help="Base job name; a timestamp is appended (default: grpo-<run name>).")
@click.option("--max-run", help="Max run time: seconds or 90m, 24h, 2d (default 24h).")
@click.option("--spot/--no-spot", default=None, help="Managed spot training.")
@click.option("--max-wait", help="With --spot: max time including waiting for capacity (default 2 x max run).")
@click.option("--keep-alive", help="Keep the instances warm this long after the job (warm pool).")
@click.option("--env", "environment", multiple=True, metavar="KEY=VALUE", help="A job environment variable "
              "(not for secrets).")
@click.option("--tag", "tags", multiple=True, metavar="KEY=VALUE", help="A tag on the job.")
@click.option("--subnet", "subnets", multiple=True, help="VPC subnet id (repeat; needs --security-group).")
@click.option("--security-group", "security_group_ids", multiple=True, help="VPC security group id (repeat).")
@click.option("--network-isolation", is_flag=True, default=None, help="No network in the container.")
@click.option("--secret", "secrets", multiple=True, metavar="VAR=SECRET_NAME", help="Set $VAR in the job from "
              "this AWS Secrets Manager secret (read there with the job's role).")
@click.option("--secret-from-env", "secrets_from_env", multiple=True, metavar="VAR", help="Store your $VAR "
              "(e.g. HF_TOKEN) in AWS Secrets Manager and pass the job its name, never the value.")
@click.option("--hp", "hyperparameters", multiple=True, metavar="KEY=VALUE", help="A run-config override "
              "applied in the job as a SageMaker hyperparameter (grpo.learning_rate=1e-5).")
@click.option("--requirement", "requirements", multiple=True, help="Another pip requirement for the job.")
@click.option("--pin/--no-pin", "pin_versions", default=None, help="Pin trl, transformers, ... to the versions "
              "installed here (default: pin).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a run-config field in the "
              "config the job gets (dotted keys).")
@click.option("--backend", help="Training backend (default: the config's).")
@click.option("--source-dir", type=click.Path(file_okay=False), help="Build the job's source here and keep it "
              "(default: a temporary folder).")
@click.option("--dry-run", is_flag=True, help="Build everything and print the job request; send nothing.")
@click.option("--wait", is_flag=True, help="Follow the job: status changes and its log, until it ends.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def sagemaker_cmd(config: str, sets: tuple[str, ...], backend: str | None, source_dir: str | None, dry_run: bool,
                  wait: bool, as_json: bool, **options: Any) -> None:
    """Run CONFIG as an Amazon SageMaker training job.

    Ships the host and every plugin the run uses as wheels built from what is installed here,
    with a requirements file and the run config; inside the job `grpo-host train` runs on it.
    Options can also live in the config's `launch: sagemaker:` section; the command line wins.
    """
    from grpo_host.sagemaker import launcher

    cli = dict(options)
    cli["eval"] = cli.pop("eval_")
    for key, option in (("channels", "--channel"), ("environment", "--env"), ("tags", "--tag"),
                        ("secrets", "--secret")):
        cli[key] = _pairs(cli[key], option)
    cli["hyperparameters"] = _pairs(cli["hyperparameters"], "--hp")
    plan = launcher.plan_job(config, cli, parse_sets(sets), backend=backend, workdir=source_dir)
    keep = source_dir is not None or dry_run
    try:
        if dry_run:
            request = launcher.preview_request(plan)
            if as_json:
                echo_json(request)
            else:
                click.echo(json.dumps(request, indent=2, default=str))
                click.echo(f"\ndry run: nothing was sent. The job's source is in {plan.source.root} "
                           f"(packed: {plan.tarball}).", err=True)
            return
        for note in plan.notes:
            click.echo(f"note: {note}", err=True)
        job_name = launcher.submit(plan)
    finally:
        if not keep:
            shutil.rmtree(plan.workdir, ignore_errors=True)
    if not wait:
        if as_json:
            echo_json({"job_name": job_name, "region": plan.region})
        else:
            click.echo(f"submitted {job_name} ({plan.region})\n  {launcher.console_url(plan.region, job_name)}\n"
                       f"  follow it: grpo-host launch sagemaker-logs {job_name} --region {plan.region}")
        return
    _follow(job_name, plan.region, as_json)


@launch_cmd.command("sagemaker-logs")
@click.argument("job_name")
@click.option("--region", help="AWS region (default: your AWS profile's).")
@click.option("--poll", type=float, default=15.0, show_default=True, help="Seconds between status checks.")
@click.option("--json", "as_json", is_flag=True, help="Print the final job description as JSON.")
def sagemaker_logs_cmd(job_name: str, region: str | None, poll: float, as_json: bool) -> None:
    """Follow a SageMaker training job: status changes and its log, until it ends."""
    from grpo_host.sagemaker import launcher

    _follow(job_name, region or launcher._default_region(), as_json, poll)


def _follow(job_name: str, region: str, as_json: bool, poll: float = 15.0) -> None:
    from grpo_host.observability.redact import redact
    from grpo_host.sagemaker import launcher

    desc = launcher.stream_job(job_name, region, echo=lambda line: click.echo(redact(line), err=as_json), poll=poll)
    if as_json:
        echo_json({k: v for k, v in desc.items() if k != "ResponseMetadata"})
    else:
        click.echo(launcher.describe_summary(desc))
    if desc["TrainingJobStatus"] != "Completed":
        raise SystemExit(1)


COMMANDS = (launch_cmd,)
