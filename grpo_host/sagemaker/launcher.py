"""``grpo-host launch sagemaker``: a run config becomes a SageMaker training job.

:func:`plan_job` does everything that needs no AWS call: validates the run config and the
launch options, builds the wheels and the job's source, and decides the image, channels,
distribution, environment and secrets. :func:`preview_request` renders that plan as the
CreateTrainingJob request (what ``--dry-run`` prints, with local paths where uploads would
go); :func:`submit` hands it to the SageMaker SDK's ``ModelTrainer``, which uploads and
creates the job; :func:`stream_job` follows it.

Secrets never travel in the job's description: a secret's value stays in the user's
environment or in AWS Secrets Manager, and the job gets only the secret's name
(``GRPO_HOST_SECRETS``), which ``grpo-host train`` resolves inside the job with the job's role.
"""

from __future__ import annotations

import copy
import datetime as _dt
import json
import os
import re
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from grpo_host import __version__
from grpo_host.errors import GrpoHostError
from grpo_host.observability.redact import SECRET_NAME, looks_secret, redact, secret_values
from grpo_host.sagemaker import job_env
from grpo_host.sagemaker.options import SageMakerOptions, resolve_options
from grpo_host.sagemaker.packaging import (
    RUN_CONFIG_NAME,
    SOURCE_TARBALL,
    TORCHRUN_ENTRY,
    JobSource,
    plugin_dists_for_run,
    write_job_source,
)

CHECKPOINT_LOCAL_PATH = "/opt/ml/checkpoints"
TORCHRUN_BACKENDS = ("torchrun",)  # backend names starting with these run under the SDK's Torchrun driver
# Names of variables whose values are secrets wherever they appear (checked in env, hps, config).
SECRET_NAME_RE = SECRET_NAME
KNOWN_SECRET_VARS = ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY",
                     "AWS_SESSION_TOKEN", "MLFLOW_TRACKING_TOKEN", "MLFLOW_TRACKING_PASSWORD")
# Secret settings whose library reads them from a variable of its own.
KNOWN_SETTING_VARS = {"tracking_params.mlflow.password": "MLFLOW_TRACKING_PASSWORD",
                      "tracking_params.mlflow.token": "MLFLOW_TRACKING_TOKEN"}
SDK_HINT = "the SageMaker SDK is not installed: pip install 'grpo-host[sagemaker]'"


@dataclass
class ChannelPlan:
    name: str
    source: str  # an S3 URI, or a local path the SDK uploads
    field: str | None = None  # the run-config field it feeds in the job
    file: str | None = None  # the file inside the channel folder, when known
    is_dir: bool = False

    @property
    def local(self) -> bool:
        return not self.source.startswith("s3://")


@dataclass
class JobPlan:
    """Everything about the job that is decided before any AWS call."""

    options: SageMakerOptions
    run_name: str
    backend: str
    region: str
    image: str
    base_job_name: str
    source: JobSource
    channels: list[ChannelPlan]
    environment: dict[str, str]
    secret_names: dict[str, str]  # job variable -> Secrets Manager name
    secrets_to_store: dict[str, str]  # your environment variable -> the Secrets Manager name to store it as
    hyperparameters: dict[str, str]
    torchrun: bool
    command: str | None
    workdir: Path
    notes: list[str] = field(default_factory=list)

    @property
    def tarball(self) -> Path:
        assert self.source.tarball is not None
        return self.source.tarball


# -- planning ----------------------------------------------------------------------------------
def plan_job(config_path: str | Path, cli_options: Mapping[str, Any] | None = None,
             sets: Mapping[str, Any] | None = None, backend: str | None = None,
             workdir: str | Path | None = None, environ: Mapping[str, str] | None = None) -> JobPlan:
    """Validate, build the source and decide the job. Makes no AWS call."""
    from grpo_host.config import apply_overrides, dump_yaml, read_yaml, validate_config

    env = os.environ if environ is None else environ
    config_path = Path(config_path)
    raw = read_yaml(config_path)
    launch = raw.pop("launch", None) or {}
    if not isinstance(launch, Mapping):
        raise GrpoHostError(f"launch in {config_path} must be a mapping (sagemaker: {{...}})")
    options = resolve_options(launch.get("sagemaker"), cli_options or {}, str(config_path))
    _refuse_secret_keys(options.hyperparameters, sets or {})
    if sets:
        raw = apply_overrides(raw, sets)
    if backend:
        raw.setdefault("backend", {})["name"] = backend
    if not raw.get("run_name"):
        raw["run_name"] = config_path.stem
    base_dir = Path.cwd()  # relative data and model paths mean what they mean to `grpo-host train` here
    run = validate_config(raw, str(config_path))  # config errors now, not after the instances start

    region = options.region or _default_region()
    backend_name = run.backend.name
    torchrun = backend_name.startswith(TORCHRUN_BACKENDS)
    channels = _plan_channels(run, options, base_dir)
    shipped = _config_for_job(raw, channels)

    secret_names, to_store = _plan_secrets(options, env)
    hps = {job_env.hp_name(str(k)): _hp_text(v) for k, v in options.hyperparameters.items()}
    for name in hps:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", name):
            raise GrpoHostError(f"hyperparameter {name!r}: give a config field (letters, digits, '_', '-', "
                                "dotted), e.g. --hp grpo.learning_rate=1e-5")
    environment = dict(options.environment)
    environment.update({
        job_env.MARKER_ENV: "1",
        job_env.CHECKPOINT_ENV: CHECKPOINT_LOCAL_PATH,
        job_env.CHANNELS_ENV: json.dumps({c.name: _channel_env(c) for c in channels if c.field}, sort_keys=True),
        "PYTHONUNBUFFERED": "1",  # the log streams as it is written
    })
    if options.processes_per_node:  # the backends' view of the cluster (the Torchrun driver reads its own)
        environment[job_env.PROCESSES_ENV] = str(options.processes_per_node)
    if secret_names:
        environment[job_env.SECRETS_ENV] = json.dumps({"region": region, "env": secret_names}, sort_keys=True)
    _refuse_secret_leaks(options, environment, hps, dump_yaml(shipped), env)

    workdir = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="grpo-host-sagemaker-"))
    extras = ["train"] + (["quant"] if run.quantization.load_in_4bit else [])
    more = list(options.requirements)
    if secret_names and not any(r.lower().startswith("boto3") for r in more):
        more.append("boto3")  # reads the secrets in the job; the AWS images have it, others may not
    plugin_dists = plugin_dists_for_run([r.name for r in run.rewards], backend_name, run.tracking)
    source = write_job_source(
        workdir / "source", plugin_dists=plugin_dists, config_yaml=dump_yaml(shipped), extras=extras,
        pin_versions=options.pin_versions, more_requirements=more,
        extra_manifest={"launched_from": str(config_path.resolve()), "grpo_host": __version__,
                        "backend": backend_name, "launched_at": _dt.datetime.now(_dt.timezone.utc).isoformat()},
    )
    image = options.image or default_image(region, options.instance_type)
    command = None if torchrun else f"python3 -m grpo_host train {RUN_CONFIG_NAME}"
    plan = JobPlan(
        options=options, run_name=str(raw["run_name"]), backend=backend_name, region=region, image=image,
        base_job_name=options.job_name or job_base_name(str(raw["run_name"])), source=source, channels=channels,
        environment=environment, secret_names=secret_names, secrets_to_store=to_store, hyperparameters=hps,
        torchrun=torchrun, command=command, workdir=workdir,
    )
    if run.output.push_to_hub and "HF_TOKEN" not in secret_names:
        plan.notes.append("output.push_to_hub is on but the job gets no HF_TOKEN: add --secret-from-env HF_TOKEN "
                          "or --secret HF_TOKEN=<Secrets Manager name>")
    if options.network_isolation:
        plan.notes.append("network isolation: pip in the job cannot reach an index, so the image must already "
                          "hold every requirement in requirements.txt but the shipped wheels")
    return plan


def job_base_name(run_name: str) -> str:
    """A SageMaker job name prefix: letters, digits and '-', room left for the SDK's timestamp."""
    name = re.sub(r"[^A-Za-z0-9-]+", "-", f"grpo-{run_name}").strip("-")
    return re.sub(r"-{2,}", "-", name)[:48].rstrip("-") or "grpo"


def _default_region() -> str:
    try:
        import boto3
    except ImportError:
        raise GrpoHostError(SDK_HINT)
    region = boto3.session.Session().region_name
    if not region:
        raise GrpoHostError("no AWS region: pass --region, set launch.sagemaker.region, or export AWS_DEFAULT_REGION")
    return region


def default_image(region: str, instance_type: str) -> str:
    """The newest AWS PyTorch training image the installed SDK knows, for the region and the
    instance type (GPU or CPU build)."""
    try:
        from sagemaker.core import image_uris
    except ImportError:
        raise GrpoHostError(SDK_HINT + " (or give the training image with --image)")
    config = image_uris.config_for_framework("pytorch")["training"]
    versions = sorted(config["versions"], key=lambda v: tuple(int(p) for p in re.findall(r"\d+", v)))
    version = versions[-1]
    py_versions = config["versions"][version].get("py_versions") or [None]
    try:
        return image_uris.retrieve(framework="pytorch", region=region, version=version, py_version=py_versions[-1],
                                   instance_type=instance_type, image_scope="training")
    except ValueError as exc:
        raise GrpoHostError(f"no default PyTorch training image for {region} / {instance_type} ({exc}); "
                            "give one with --image")


def _plan_channels(run: Any, options: SageMakerOptions, base_dir: Path) -> list[ChannelPlan]:
    channels: list[ChannelPlan] = []
    train_source = options.train
    source = run.data.source
    if train_source is None and source.startswith("s3://"):
        train_source = source
    elif train_source is None and _local_path(source, base_dir):
        train_source = str(_local_path(source, base_dir))
    elif train_source is None and source.lower().endswith(job_env.DATA_SUFFIXES):
        raise GrpoHostError(f"data.source: file {source!r} not found here ({base_dir}); the job gets its data "
                            "from here or from S3: fix the path, or give --train s3://bucket/key")
    if train_source:
        channels.append(_channel("train", train_source, "data.source", base_dir))
    if options.eval:
        from grpo_host.config import DataSection

        if "eval_source" not in DataSection.model_fields:
            raise GrpoHostError(
                "--eval: this grpo-host's run config takes eval data from data.eval_split (a fraction, a row "
                "count, or a split name), not from a separate file; save train and eval as splits of one data "
                "set folder (datasets' save_to_disk), set data.eval_split to the eval split's name and ship "
                "the folder with --train, or drop --eval")
        channels.append(_channel("eval", options.eval, "data.eval_source", base_dir))
    # A model or tokenizer in a local folder travels as a channel of its own.
    for name, field_name, value in (("model", "model.id", run.model.id),
                                    ("tokenizer", "model.tokenizer", run.model.tokenizer)):
        path = _local_path(value, base_dir) if value else None
        if path is not None and path.is_dir():
            channels.append(ChannelPlan(name=name, source=str(path), field=field_name, is_dir=True))
    for name, source in options.channels.items():
        channels.append(_channel(name, source, None, base_dir))
    return channels


def _channel(name: str, source: str, field_name: str | None, base_dir: Path) -> ChannelPlan:
    if source.startswith("s3://"):
        tail = source.rstrip("/").rsplit("/", 1)[-1]
        is_file = tail.lower().endswith(job_env.DATA_SUFFIXES) and not source.endswith("/")
        return ChannelPlan(name=name, source=source, field=field_name, file=tail if is_file else None)
    path = _local_path(source, base_dir)
    if path is None:
        raise GrpoHostError(f"channel {name}: {source!r} is neither an S3 URI (s3://bucket/key) nor an existing "
                            f"local file or folder")
    if path.is_dir():
        return ChannelPlan(name=name, source=str(path), field=field_name, is_dir=True)
    return ChannelPlan(name=name, source=str(path), field=field_name, file=path.name)


def _local_path(value: str, base_dir: Path) -> Path | None:
    if not value or value.startswith(("builtin:", "s3://", "hf://")):
        return None
    path = Path(value).expanduser()
    if not path.is_absolute():
        path = base_dir / path
    return path.resolve() if path.exists() else None


def _channel_env(channel: ChannelPlan) -> dict[str, Any]:
    spec: dict[str, Any] = {"field": channel.field}
    if channel.file:
        spec["file"] = channel.file
    if channel.is_dir:
        spec["dir"] = True
    return spec


def _config_for_job(raw: Mapping[str, Any], channels: Sequence[ChannelPlan]) -> dict[str, Any]:
    """The run config the job gets: no launch section, and no local paths that mean nothing there
    (the job sets them from its channels and the container contract)."""
    shipped = copy.deepcopy(dict(raw))
    shipped.pop("launch", None)
    output = shipped.get("output")
    if isinstance(output, dict):
        output.pop("dir", None)
    checkpointing = shipped.get("checkpointing")
    if isinstance(checkpointing, dict):
        checkpointing.pop("dir", None)
    return shipped


def _hp_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


# -- secrets -----------------------------------------------------------------------------------
def _plan_secrets(options: SageMakerOptions, env: Mapping[str, str]) -> tuple[dict[str, str], dict[str, str]]:
    names = dict(options.secrets)
    to_store: dict[str, str] = {}
    for var in options.secrets_from_env:
        if not env.get(var):
            raise GrpoHostError(f"--secret-from-env {var}: ${var} is not set in your environment; export it, or "
                                f"name a secret already in AWS Secrets Manager with --secret {var}=NAME")
        name = f"{options.secret_prefix}{var}"
        names.setdefault(var, name)
        to_store[var] = names[var]
    for var, name in names.items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", var):
            raise GrpoHostError(f"secret variable {var!r} is not a valid environment variable name")
        if env.get(var) and name == env.get(var):
            raise GrpoHostError(f"--secret {var}=…: that is the secret's value, not its name; give the name it "
                                f"has in AWS Secrets Manager, or use --secret-from-env {var}")
    return names, to_store


def _refuse_secret_leaks(options: SageMakerOptions, environment: Mapping[str, str], hps: Mapping[str, str],
                         config_text: str, env: Mapping[str, str]) -> None:
    """Refuse a job whose description or shipped config would carry a secret value."""
    for key in options.environment:
        if looks_secret(key):
            raise GrpoHostError(
                f"environment {key}: the job's environment is visible in its description and logs; pass "
                f"secrets by name instead: --secret-from-env {key} (stores your ${key} in AWS Secrets Manager) "
                f"or --secret {key}=<Secrets Manager name>")
    values = {var: env[var] for var in {*KNOWN_SECRET_VARS, *options.secrets_from_env, *options.secrets}
              if env.get(var) and len(env[var]) >= 8}
    values.update(secret_values(env))
    for var, value in values.items():
        places = [f"environment {k}" for k, v in environment.items() if value in v]
        places += [f"hyperparameter {k}" for k, v in hps.items() if value in v]
        places += ["the run config"] if value in config_text else []
        if places:
            raise GrpoHostError(f"the value of ${var} appears in {', '.join(places)}; a job's description, "
                                f"hyperparameters and source are not secret. Pass it with --secret-from-env {var}")


def _refuse_secret_keys(hyperparameters: Mapping[str, Any], sets: Mapping[str, Any]) -> None:
    """``--hp tracking_params.mlflow.password=...`` would show the password in the job's description
    (and ``--set`` in its uploaded config): refused, with the way that keeps it secret."""
    from grpo_host.tracking import flatten

    given = [("--hp", str(k)) for k in hyperparameters] + [("--set", k) for k in flatten(dict(sets))]
    for option, key in given:
        part = key.replace("__", ".").split(".")[-1]
        if looks_secret(part):
            dotted = key.replace("__", ".")
            var = KNOWN_SETTING_VARS.get(dotted) or re.sub(r"[^A-Za-z0-9]+", "_", dotted).upper().strip("_")
            raise GrpoHostError(
                f"{option} {key}=…: that looks like a secret, and {option} values are shown in plain text "
                f"({'the job description lists hyperparameters' if option == '--hp' else 'they go into the uploaded config'}). "
                f"Keep it in an environment variable and pass it by name: export {var}=… and add --secret-from-env {var} "
                "(stored in AWS Secrets Manager, read inside the job with its role), or --secret "
                f"{var}=<Secrets Manager name>"
                + ("" if dotted in KNOWN_SETTING_VARS else f"; then have the run read it from ${var} (a *_env setting)"))


def store_secrets(plan: JobPlan, session: Any, environ: Mapping[str, str] | None = None) -> list[str]:
    """Put the user's secret variables into AWS Secrets Manager under their names."""
    env = os.environ if environ is None else environ
    if not plan.secrets_to_store:
        return []
    client = session.client("secretsmanager", region_name=plan.region)
    stored = []
    for var, name in plan.secrets_to_store.items():
        value = env[var]
        try:
            client.put_secret_value(SecretId=name, SecretString=value)
        except Exception as exc:  # noqa: BLE001 - ResourceNotFoundException: create it
            if "ResourceNotFound" not in str(getattr(exc, "response", {}).get("Error", {}).get("Code", exc)):
                raise GrpoHostError(f"cannot store ${var} in AWS Secrets Manager as {name!r}: "
                                    f"{_error_code(exc)}") from None
            client.create_secret(Name=name, SecretString=value,
                                 Description="Stored by grpo-host launch sagemaker; read by its training jobs",
                                 Tags=[{"Key": "grpo-host", "Value": "secret"}])
        stored.append(name)
    return stored


def _error_code(exc: BaseException) -> str:
    return str(getattr(exc, "response", {}).get("Error", {}).get("Code") or type(exc).__name__)


# -- the request ---------------------------------------------------------------------------------
def preview_request(plan: JobPlan) -> dict[str, Any]:
    """The CreateTrainingJob request ``submit`` makes, with local paths where the SDK uploads."""
    o = plan.options
    job_name = f"{plan.base_job_name}-{_dt.datetime.now().strftime('%Y%m%d%H%M%S')}"
    bucket = o.bucket or "<sagemaker default bucket>"
    prefix = f"s3://{bucket}/{plan.base_job_name}/{job_name}/input"
    channels = [_preview_channel(c, f"{prefix}/{c.name}") for c in plan.channels]
    channels.append(_preview_channel(ChannelPlan("code", str(plan.tarball)), f"{prefix}/code"))
    channels.append({"ChannelName": "sm_drivers", "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": f"{prefix}/sm_drivers", "S3DataDistributionType": "FullyReplicated"}},
        "InputMode": "File", "UploadFrom": "(the SageMaker SDK's driver scripts)"})
    resource: dict[str, Any] = {"InstanceType": o.instance_type, "InstanceCount": o.instance_count,
                                "VolumeSizeInGB": o.volume_size_gb}
    if o.keep_alive:
        resource["KeepAlivePeriodInSeconds"] = o.keep_alive
    stopping: dict[str, Any] = {"MaxRuntimeInSeconds": o.max_run}
    if plan.options.spot:
        stopping["MaxWaitTimeInSeconds"] = o.wait_time
    request: dict[str, Any] = {
        "TrainingJobName": job_name,
        "RoleArn": o.role or "<the SDK's default execution role>",
        "AlgorithmSpecification": {
            "TrainingImage": plan.image, "TrainingInputMode": "File",
            "ContainerEntrypoint": ["/bin/bash"],
            "ContainerArguments": ["-c", "chmod +x /opt/ml/input/data/sm_drivers/sm_train.sh && "
                                         "/opt/ml/input/data/sm_drivers/sm_train.sh"],
        },
        "HyperParameters": dict(plan.hyperparameters),
        "InputDataConfig": channels,
        "OutputDataConfig": {"S3OutputPath": o.output_path or f"s3://{bucket}/{plan.base_job_name}"},
        "ResourceConfig": resource,
        "StoppingCondition": stopping,
        "Environment": dict(plan.environment),
        "Tags": [{"Key": k, "Value": v} for k, v in job_tags(plan).items()],
        "EnableManagedSpotTraining": o.spot,
        "EnableNetworkIsolation": o.network_isolation,
    }
    checkpoint = checkpoint_uri(plan)
    if checkpoint is not False:
        request["CheckpointConfig"] = {"S3Uri": checkpoint or f"s3://{bucket}/{plan.base_job_name}/{job_name}/checkpoints",
                                       "LocalPath": CHECKPOINT_LOCAL_PATH}
    if o.subnets:
        request["VpcConfig"] = {"Subnets": list(o.subnets), "SecurityGroupIds": list(o.security_group_ids)}
    run = {"SourceDir": SOURCE_TARBALL, "Requirements": "requirements.txt"}
    if plan.torchrun:
        run.update({"Distribution": "Torchrun", "ProcessCountPerNode": o.processes_per_node or "one per GPU",
                    "EntryScript": TORCHRUN_ENTRY})
    else:
        run["Command"] = plan.command
    return redact({"CreateTrainingJob": request, "SourceCode": run,
                   "Upload": {"source": str(plan.tarball), "wheels": [d.wheel for d in plan.source.dists if d.wheel],
                              "requirements": plan.source.requirements},
                   "SecretsManager": {"read_in_job": plan.secret_names, "store_from_your_env": plan.secrets_to_store},
                   "Notes": plan.notes})


def _preview_channel(channel: ChannelPlan, s3_prefix: str) -> dict[str, Any]:
    uri = channel.source if not channel.local else s3_prefix + (
        f"/{Path(channel.source).name}" if Path(channel.source).is_file() else "")
    entry = {"ChannelName": channel.name, "DataSource": {"S3DataSource": {
        "S3DataType": "S3Prefix", "S3Uri": uri, "S3DataDistributionType": "FullyReplicated"}}, "InputMode": "File"}
    if channel.local:
        entry["UploadFrom"] = channel.source
    return entry


def job_tags(plan: JobPlan) -> dict[str, str]:
    tags = {"grpo-host:version": __version__, "grpo-host:run": plan.run_name[:256]}
    tags.update(plan.options.tags)
    return tags


def checkpoint_uri(plan: JobPlan) -> str | None | bool:
    """The checkpoint S3 URI; None = the SDK's default under the job; False = no checkpoint sync."""
    if plan.options.checkpoint_s3_uri:
        return plan.options.checkpoint_s3_uri
    return None if plan.options.spot else False


# -- submitting ----------------------------------------------------------------------------------
def model_trainer(plan: JobPlan, session: Any = None) -> Any:
    """The SDK's ModelTrainer for the plan (creating it resolves the role and the output bucket)."""
    try:
        from sagemaker.core.helper.session_helper import Session
        from sagemaker.core.training.configs import (
            CheckpointConfig,
            Compute,
            InputData,
            Networking,
            OutputDataConfig,
            SourceCode,
            StoppingCondition,
            Tag,
        )
        from sagemaker.train import ModelTrainer
        from sagemaker.train.distributed import Torchrun
    except ImportError:
        raise GrpoHostError(SDK_HINT)
    import boto3

    o = plan.options
    if session is None:
        session = Session(boto_session=boto3.Session(region_name=plan.region), default_bucket=o.bucket)
    source = SourceCode(source_dir=str(plan.tarball), requirements="requirements.txt",
                        entry_script=TORCHRUN_ENTRY if plan.torchrun else None, command=plan.command)
    compute = Compute(instance_type=o.instance_type, instance_count=o.instance_count,
                      volume_size_in_gb=o.volume_size_gb, keep_alive_period_in_seconds=o.keep_alive,
                      enable_managed_spot_training=o.spot or None)
    stopping = StoppingCondition(max_runtime_in_seconds=o.max_run, max_wait_time_in_seconds=o.wait_time)
    networking = None
    if o.subnets or o.network_isolation:
        networking = Networking(subnets=o.subnets or None, security_group_ids=o.security_group_ids or None,
                                enable_network_isolation=o.network_isolation or None)
    checkpoint = checkpoint_uri(plan)
    kwargs: dict[str, Any] = dict(
        sagemaker_session=session, role=o.role, base_job_name=plan.base_job_name, training_image=plan.image,
        source_code=source, compute=compute, stopping_condition=stopping, networking=networking,
        environment=dict(plan.environment), hyperparameters=dict(plan.hyperparameters),
        tags=[Tag(key=k, value=v) for k, v in job_tags(plan).items()],
        input_data_config=[InputData(channel_name=c.name, data_source=c.source) for c in plan.channels] or None,
    )
    if plan.torchrun:
        kwargs["distributed"] = Torchrun(process_count_per_node=o.processes_per_node)
    if checkpoint is not False:
        kwargs["checkpoint_config"] = CheckpointConfig(s3_uri=checkpoint or None, local_path=CHECKPOINT_LOCAL_PATH)
    if o.output_path:
        kwargs["output_data_config"] = OutputDataConfig(s3_output_path=o.output_path)
    return ModelTrainer(**kwargs)


def submit(plan: JobPlan, session: Any = None) -> str:
    """Store the secrets, upload, create the job; returns its name."""
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

    try:
        trainer = model_trainer(plan, session)
        store_secrets(plan, trainer.sagemaker_session.boto_session)
        trainer.train(wait=False, logs=False)
    except NoCredentialsError:
        raise GrpoHostError("no AWS credentials: run `aws configure` or `aws sso login`, or export "
                            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE)") from None
    except ClientError as exc:
        raise GrpoHostError(f"AWS refused the job ({_error_code(exc)}): {exc}") from None
    except (BotoCoreError, ValueError) as exc:  # the SDK's checks raise ValueError (no role found, ...)
        hint = "; pass the job's IAM role with --role" if "role" in str(exc).lower() else ""
        raise GrpoHostError(f"could not submit the job: {exc}{hint}") from None
    job = trainer._latest_training_job  # the SDK keeps the created job here
    return job.training_job_name


# -- following a job -----------------------------------------------------------------------------
TERMINAL = ("Completed", "Failed", "Stopped")


def stream_job(job_name: str, region: str, echo: Callable[[str], None] = print, poll: float = 15.0,
               session: Any = None, timeout: float | None = None) -> dict[str, Any]:
    """Print the job's status changes and its CloudWatch log lines until it ends; returns the
    final DescribeTrainingJob response."""
    import boto3

    session = session or boto3.Session(region_name=region)
    sm = session.client("sagemaker", region_name=region)
    logs = session.client("logs", region_name=region)
    tokens: dict[str, str | None] = {}
    last_status = None
    start = time.monotonic()
    while True:
        desc = sm.describe_training_job(TrainingJobName=job_name)
        status = f"{desc['TrainingJobStatus']} / {desc.get('SecondaryStatus', '')}".rstrip(" /")
        if status != last_status:
            message = desc.get("SecondaryStatusTransitions", [{}])[-1].get("StatusMessage", "")
            echo(f"[{_dt.datetime.now().strftime('%H:%M:%S')}] {job_name}: {status}" + (f" - {message}" if message else ""))
            last_status = status
        _drain_logs(logs, job_name, tokens, echo)
        if desc["TrainingJobStatus"] in TERMINAL:
            _drain_logs(logs, job_name, tokens, echo)  # lines written just before the end
            return desc
        if timeout is not None and time.monotonic() - start > timeout:
            return desc
        time.sleep(poll)


def _drain_logs(logs: Any, job_name: str, tokens: dict[str, str | None], echo: Callable[[str], None]) -> None:
    group = "/aws/sagemaker/TrainingJobs"
    try:
        streams = logs.describe_log_streams(logGroupName=group, logStreamNamePrefix=f"{job_name}/")["logStreams"]
    except Exception as exc:  # noqa: BLE001 - no log group before the first container starts
        if "ResourceNotFound" in _error_code(exc):
            return
        raise
    many = len(streams) > 1
    for stream in streams:
        name = stream["logStreamName"]
        while True:
            kwargs = {"logGroupName": group, "logStreamName": name, "startFromHead": True}
            if tokens.get(name):
                kwargs["nextToken"] = tokens[name]
            page = logs.get_log_events(**kwargs)
            for event in page.get("events", []):
                host = name.split("/", 1)[-1].rsplit("-", 1)[0] if many else ""  # algo-1
                echo(f"{host + ': ' if host else ''}{event['message']}")
            token = page.get("nextForwardToken")
            if not page.get("events") or token == tokens.get(name):
                tokens[name] = token
                break
            tokens[name] = token


def describe_summary(desc: Mapping[str, Any]) -> str:
    lines = [f"job {desc['TrainingJobName']}: {desc['TrainingJobStatus']}"]
    if desc.get("FailureReason"):
        lines.append(f"  failure: {desc['FailureReason']}")
    artifacts = desc.get("ModelArtifacts", {}).get("S3ModelArtifacts")
    if artifacts:
        lines.append(f"  model: {artifacts}")
        lines.append(f"  report: {artifacts.rsplit('/', 1)[0]}/output.tar.gz")
    return "\n".join(lines)


def console_url(region: str, job_name: str) -> str:
    return f"https://{region}.console.aws.amazon.com/sagemaker/home?region={region}#/jobs/{job_name}"

