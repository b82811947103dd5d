"""Inside a SageMaker training job: SageMaker's container contract as run-config overrides.

A job's container tells its program where things are through environment variables:
``SM_MODEL_DIR`` (saved model, uploaded as model.tar.gz), ``SM_OUTPUT_DATA_DIR`` (other
results, uploaded as output.tar.gz), ``SM_CHANNEL_<NAME>`` (each input channel's folder),
``SM_HOSTS``/``SM_CURRENT_HOST``/``SM_NUM_GPUS`` (the cluster) and ``SM_HPS`` (the
hyperparameters as JSON). :func:`sagemaker_overrides` turns them into a nested dict of config
overrides, the same shape ``--set`` produces, so ``grpo-host train`` inside a job is the same
command as outside it. It is a pure function of the environment it is given.

What the launcher adds to the job's environment (names only, never secret values):
``GRPO_HOST_CHANNELS`` (which config field each channel feeds, and the file inside it),
``GRPO_HOST_CHECKPOINT_DIR`` (the local side of the job's checkpoint sync),
``GRPO_HOST_PROCESSES_PER_NODE`` (when set at launch; else one process per GPU) and
``GRPO_HOST_SECRETS`` (job variable -> AWS Secrets Manager secret name, fetched here at start).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from grpo_host.errors import GrpoHostError
from grpo_host.overrides import parse_value, set_dotted
from grpo_host.training.cluster import PROCESSES_ENV, cluster_backend_params  # noqa: F401 - this module's API too

DEFAULT_CHECKPOINT_DIR = "/opt/ml/checkpoints"  # the local path of SageMaker's checkpoint sync
CHANNELS_ENV = "GRPO_HOST_CHANNELS"
CHECKPOINT_ENV = "GRPO_HOST_CHECKPOINT_DIR"
SECRETS_ENV = "GRPO_HOST_SECRETS"
MARKER_ENV = "GRPO_HOST_SAGEMAKER"

# Channels a hand-made job (not started by `grpo-host launch`) gets without GRPO_HOST_CHANNELS.
DEFAULT_CHANNEL_FIELDS = {"train": "data.source", "model": "model.id"}
# What the run writes that belongs in output.tar.gz as well as beside the model.
REPORT_FILES = ("report.html", "reward_curves.png", "metrics.jsonl", "samples.jsonl", "run.json",
                "run_config.yaml", "reward_provenance.json")
DATA_SUFFIXES = (".json", ".jsonl", ".parquet", ".csv")


def in_sagemaker_job(environ: Mapping[str, str]) -> bool:
    """True inside a SageMaker training container (``GRPO_HOST_SAGEMAKER=0`` opts out)."""
    marker = environ.get(MARKER_ENV)
    if marker is not None:
        return marker not in ("", "0", "false", "no")
    return bool(environ.get("SM_MODEL_DIR")) and bool(environ.get("TRAINING_JOB_NAME"))


def sagemaker_overrides(environ: Mapping[str, str], backend_params: Collection[str] = (),
                        listdir: Callable[[str], list[str]] | None = None) -> dict[str, Any]:
    """Run-config overrides for a run inside a SageMaker job; ``{}`` outside one.

    Precedence: hyperparameters (config fields, ``grpo__learning_rate`` for
    ``grpo.learning_rate``, see :func:`hp_name`) first, then the
    paths the container contract owns (output, checkpoints, channels) on top, so a
    hyperparameter cannot send the model somewhere SageMaker does not upload.
    ``backend_params`` names the params the run's backend declares: the cluster's shape
    (machines, rank, main address, processes) sets those of them, over the config file's
    values (set for another machine) but under an explicit hyperparameter.
    ``listdir`` finds the data file in a channel whose file name the launcher did not record
    (a user's S3 prefix); it defaults to ``os.listdir``.
    """
    if not in_sagemaker_job(environ):
        return {}
    overrides: dict[str, Any] = {}
    for key, value in hyperparameters(environ).items():
        set_dotted(overrides, hp_field(key), value, replace=True)

    model_dir = environ.get("SM_MODEL_DIR", "/opt/ml/model")
    set_dotted(overrides, "output.dir", model_dir, replace=True)
    set_dotted(overrides, "checkpointing.dir", environ.get(CHECKPOINT_ENV) or DEFAULT_CHECKPOINT_DIR, replace=True)
    # A spot interruption restarts the job with the synced checkpoint dir: always resume.
    set_dotted(overrides, "checkpointing.resume", True, replace=True)

    for _channel, field, path in channel_paths(environ, listdir):
        set_dotted(overrides, field, path, replace=True)

    cluster = {k: v for k, v in cluster_backend_params(environ).items() if k in set(backend_params)}
    if cluster:
        params = overrides.setdefault("backend", {}).setdefault("params", {})
        for key, value in cluster.items():
            params.setdefault(key, value)
    return overrides


def hp_name(field: str) -> str:
    """A config field's hyperparameter name: ``grpo.learning_rate`` -> ``grpo__learning_rate``.

    SageMaker's driver exports each hyperparameter as ``SM_HP_<NAME>`` in a shell script, so a
    name must be a shell identifier once '-' becomes '_': no dots.
    """
    return field.replace(".", "__")


def hp_field(name: str) -> str:
    """The config field a hyperparameter sets (``grpo__learning_rate`` or ``grpo.learning_rate``)."""
    return name.replace("__", ".")


def hyperparameters(environ: Mapping[str, str]) -> dict[str, Any]:
    """The job's hyperparameters (``SM_HPS``) with their values decoded."""
    raw = environ.get("SM_HPS")
    if not raw:
        return {}
    try:
        hps = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise GrpoHostError(f"SM_HPS is not JSON ({exc}); the job's hyperparameters cannot be read")
    if not isinstance(hps, dict):
        raise GrpoHostError(f"SM_HPS must be a JSON object of hyperparameters, got {type(hps).__name__}")
    return {str(k): _scalar(v) for k, v in hps.items()}


def _scalar(value: Any) -> Any:
    """JSON first (SageMaker's own encoding: ``1e-5`` is a number there, not in YAML 1.1),
    then a YAML scalar as ``--set`` reads it."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return parse_value(value)


def channel_paths(environ: Mapping[str, str], listdir: Callable[[str], list[str]] | None = None
                  ) -> list[tuple[str, str, str]]:
    """``(channel, config field, path in the container)`` for every mapped input channel."""
    mapping = _channel_mapping(environ)
    result = []
    for channel, spec in mapping.items():
        folder = environ.get(f"SM_CHANNEL_{channel.upper()}")
        if not folder:
            continue
        field = spec.get("field")
        if not field:
            continue
        file_name = spec.get("file")
        if file_name:
            path = str(Path(folder) / file_name)
        elif spec.get("dir"):
            path = folder
        else:
            path = _data_path_in(folder, listdir or os.listdir)
        result.append((channel, field, path))
    return result


def _channel_mapping(environ: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    raw = environ.get(CHANNELS_ENV)
    if not raw:
        return {name: {"field": field, "dir": field == "model.id"} for name, field in DEFAULT_CHANNEL_FIELDS.items()}
    try:
        mapping = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise GrpoHostError(f"{CHANNELS_ENV} is not JSON ({exc}); relaunch with grpo-host launch sagemaker")
    return {str(k): dict(v) for k, v in mapping.items()}


def _data_path_in(folder: str, listdir: Callable[[str], list[str]]) -> str:
    """The one data file in a channel folder, or the folder itself (a saved data set, or many files)."""
    try:
        names = sorted(listdir(folder))
    except OSError:
        return folder
    if "dataset_info.json" in names or "dataset_dict.json" in names:
        return folder
    data_files = [n for n in names if n.lower().endswith(DATA_SUFFIXES)]
    if len(data_files) == 1:
        return str(Path(folder) / data_files[0])
    return folder


def job_secret_names(environ: Mapping[str, str]) -> tuple[str | None, dict[str, str]]:
    """``(region, {job variable: secret name})`` from ``GRPO_HOST_SECRETS``."""
    raw = environ.get(SECRETS_ENV)
    if not raw:
        return None, {}
    try:
        spec = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise GrpoHostError(f"{SECRETS_ENV} is not JSON ({exc}); relaunch with grpo-host launch sagemaker")
    return spec.get("region"), {str(k): str(v) for k, v in (spec.get("env") or {}).items()}


def fetch_secrets(environ: Mapping[str, str], client: Any = None) -> dict[str, str]:
    """Read the job's secrets from AWS Secrets Manager: ``{job variable: value}``.

    Variables already set in the environment are kept (and not fetched). The values are
    returned for the caller to put in ``os.environ``; nothing here prints or logs them.
    """
    region, names = job_secret_names(environ)
    wanted = {var: name for var, name in names.items() if not environ.get(var)}
    if not wanted:
        return {}
    if client is None:
        try:
            import boto3
        except ImportError:
            raise GrpoHostError(
                f"this job reads {', '.join(sorted(wanted))} from AWS Secrets Manager but boto3 is not "
                "installed in the image; add boto3 to the requirements (grpo-host launch does when secrets are set)"
            )
        client = boto3.client("secretsmanager", region_name=region or environ.get("AWS_REGION") or None)
    values = {}
    for var, name in wanted.items():
        try:
            response = client.get_secret_value(SecretId=name)
        except Exception as exc:  # noqa: BLE001 - botocore's ClientError and friends
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", type(exc).__name__)
            raise GrpoHostError(
                f"cannot read secret {name!r} for ${var} from AWS Secrets Manager ({code}); give the "
                "job's IAM role secretsmanager:GetSecretValue on it, or check the name"
            ) from None
        value = response.get("SecretString")
        if value is None:
            raise GrpoHostError(f"secret {name!r} for ${var} holds binary data; store the token as a string")
        values[var] = value
    return values


def prepare_job(config_path: str | Path | None = None, backend: str | None = None,
                environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """What ``grpo-host train`` calls first. Outside a job: ``{}``. Inside one: put the job's
    secrets in this process's environment (the training processes inherit it) and return the
    contract's overrides, with the cluster's shape for the run's backend (``backend``, else the
    one the hyperparameters or the config at ``config_path`` name)."""
    env = os.environ if environ is None else environ
    if not in_sagemaker_job(env):
        return {}
    secrets = fetch_secrets(env)
    if environ is None:
        os.environ.update(secrets)
    name = backend or _backend_name(env, config_path)
    return sagemaker_overrides(env, backend_params=_backend_param_names(name))


def _backend_name(environ: Mapping[str, str], config_path: str | Path | None) -> str:
    from grpo_host.config import BackendSection, read_yaml

    for key, value in hyperparameters(environ).items():
        if hp_field(key) == "backend.name":
            return str(value)
    if config_path is not None:
        section = read_yaml(config_path).get("backend")
        if isinstance(section, Mapping) and section.get("name"):
            return str(section["name"])
    return BackendSection().name


def _backend_param_names(name: str) -> list[str]:
    from grpo_host.plugins.manager import get_plugin_manager

    try:
        return [p.name for p in get_plugin_manager().get_backend(name).params]
    except GrpoHostError:
        return []  # the run's own check names the missing backend, with its did-you-mean


def finish_job(output_dir: str | Path, environ: Mapping[str, str] | None = None) -> list[str]:
    """Copy the run's report and metrics into ``SM_OUTPUT_DATA_DIR`` (output.tar.gz); the model
    stays in ``SM_MODEL_DIR``. Returns the copied file names."""
    env = os.environ if environ is None else environ
    target = env.get("SM_OUTPUT_DATA_DIR")
    if not in_sagemaker_job(env) or not target:
        return []
    source = Path(output_dir)
    Path(target).mkdir(parents=True, exist_ok=True)
    copied = []
    for name in REPORT_FILES:
        if (source / name).is_file():
            shutil.copy2(source / name, Path(target) / name)
            copied.append(name)
    return copied
