"""The MLflow tracker: one grpo-host training run is one MLflow run.

Where it logs, first match wins: ``tracking_params.mlflow.tracking_uri`` in the run config,
the ``MLFLOW_TRACKING_URI`` environment variable, else a local store inside the output dir
(``<output>/mlruns/mlflow.db`` with artifacts beside it), so a run logged with no server
loses nothing: ``mlflow ui --backend-store-uri sqlite:///<output>/mlruns/mlflow.db`` shows it.
A SageMaker managed MLflow ARN (``arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/
<name>``) works as a URI once ``sagemaker-mlflow`` is installed.

What a run gets: the resolved config as params (flattened to dotted keys, the keys ``--set``
takes), each reward's provenance as tags (``reward.<name>.plugin``, ``.params_hash``, ...),
every logged step's numeric metrics at that step, and at the end the report, the resolved
config, metrics and samples as artifacts; the model too with ``log_model: true``. A run that
resumes from a checkpoint goes on in the same MLflow run (its id is kept in
``<output>/mlflow_run.json``). Only the main process (``RANK`` 0 or unset) logs.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grpo_host import GrpoHostError

log = logging.getLogger(__name__)

SETTINGS = {
    "tracking_uri": "MLflow tracking URI (http://..., sqlite:///..., databricks, or a SageMaker MLflow ARN)",
    "experiment": "experiment name (default: $MLFLOW_EXPERIMENT_NAME, else 'grpo-host')",
    "run_name": "run name (default: the run's name)",
    "tags": "extra tags, a mapping",
    "log_model": "log the saved model as artifacts under model/ (default false)",
    "log_artifacts": "log the report, resolved config, metrics and samples (default true)",
}
DEFAULT_EXPERIMENT = "grpo-host"
RUN_RECORD = "mlflow_run.json"
LOCAL_DIR = "mlruns"

# Files of the output dir that are the run's record, not the model.
ARTIFACT_SUFFIXES = (".html", ".png", ".svg", ".jsonl", ".yaml", ".yml", ".md", ".csv")
ARTIFACT_JSON = ("provenance", "reward", "health", "summary", "trainer_state", "config.resolved", "run")
MODEL_FILES = re.compile(  # training_args.bin is the trainer's pickle, not the model
    r"(?!training_args\.bin)(.*\.safetensors|.*\.bin|.*\.pt|.*\.gguf|config\.json|generation_config\.json|tokenizer.*|"
    r"special_tokens_map\.json|vocab\.(json|txt)|merges\.txt|chat_template\..*|added_tokens\.json|"
    r"adapter_config\.json|.*\.model)"
)
MAX_ARTIFACT_BYTES = 64 * 1024**2
_BAD_KEY_CHARS = re.compile(r"[^A-Za-z0-9_\-. /]")


def resolve_tracking_uri(configured: str | None, output_dir: str | Path) -> tuple[str, bool]:
    """The URI to log to and whether it is the local fallback store inside ``output_dir``."""
    uri = (configured or os.environ.get("MLFLOW_TRACKING_URI") or "").strip()
    if not uri:
        db = Path(output_dir).resolve() / LOCAL_DIR / "mlflow.db"
        return f"sqlite:///{db}", True
    if uri.startswith("arn:aws:sagemaker:"):
        if "mlflow" not in uri:
            raise GrpoHostError(
                f"MLflow tracking URI {uri!r} is a SageMaker ARN but not of an MLflow tracking server; "
                "expected arn:aws:sagemaker:<region>:<account>:mlflow-tracking-server/<name>"
            )
        if importlib.util.find_spec("sagemaker_mlflow") is None:
            raise GrpoHostError(
                f"MLflow tracking URI {uri!r} is a SageMaker managed MLflow server, which needs the "
                "sagemaker-mlflow package: pip install 'grpo-tracking-mlflow[sagemaker]' "
                "(or pip install sagemaker-mlflow), with AWS credentials allowed to reach the server"
            )
    return uri, False


class MlflowTracker:
    """``tracking: [mlflow]``; settings under ``tracking_params: {mlflow: {...}}``."""

    name = "mlflow"

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.client: Any = None
        self.run_id: str | None = None
        self.tracking_uri: str | None = None
        self.experiment_id: str | None = None
        self.settings: dict[str, Any] = {}

    # -- the tracker interface -------------------------------------------------------------
    def start(self, run_info: Mapping[str, Any]) -> None:
        self._reset()
        if not _is_main_process():
            return
        settings = dict((run_info.get("tracking_params") or {}).get(self.name) or {})
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            allowed = "; ".join(f"{k}: {v}" for k, v in SETTINGS.items())
            raise GrpoHostError(f"tracking_params.mlflow has unknown setting(s) {', '.join(unknown)}; allowed: {allowed}")
        self.settings = settings
        output_dir = Path(run_info["output_dir"])
        uri, local = resolve_tracking_uri(settings.get("tracking_uri"), output_dir)

        from mlflow.exceptions import MlflowException
        from mlflow.tracking import MlflowClient

        if local:
            (output_dir / LOCAL_DIR).mkdir(parents=True, exist_ok=True)
        try:
            client = MlflowClient(tracking_uri=uri)
            experiment = settings.get("experiment") or os.environ.get("MLFLOW_EXPERIMENT_NAME") or DEFAULT_EXPERIMENT
            experiment_id = self._experiment(client, experiment, output_dir if local else None)
            run_id = self._resumable_run(client, uri, output_dir, run_info)
            resumed = run_id is not None
            if run_id is None:
                run_name = settings.get("run_name") or run_info.get("run_name") or output_dir.name
                run_id = client.create_run(experiment_id, run_name=str(run_name), tags=self._tags(run_info)).info.run_id
                self._log_params(client, run_id, run_info.get("config") or {})
            else:
                client.update_run(run_id, status="RUNNING")
        except MlflowException as exc:
            raise GrpoHostError(f"MLflow tracking at {uri} could not start a run: {exc.message}") from exc
        self.client, self.run_id, self.tracking_uri, self.experiment_id = client, run_id, uri, experiment_id
        record = {"tracking_uri": uri, "experiment_id": experiment_id, "run_id": run_id}
        output_dir.mkdir(parents=True, exist_ok=True)
        (output_dir / RUN_RECORD).write_text(json.dumps(record, indent=2) + "\n")
        where = f"local store {output_dir / LOCAL_DIR}" if local else uri
        log.info("MLflow: %s run %s in experiment %r at %s", "resumed" if resumed else "started", run_id, experiment, where)

    def log_metrics(self, step: int, metrics: Mapping[str, Any]) -> None:
        if self.run_id is None:
            return
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        batch = [
            Metric(_key(k), float(v), now, int(step))
            for k, v in metrics.items()
            if k != "step" and _loggable_number(v)
        ]
        for i in range(0, len(batch), 1000):  # MLflow's cap per log_batch call
            self.client.log_batch(self.run_id, metrics=batch[i : i + 1000])

    def finish(self, output_dir: str, status: str = "FINISHED") -> None:
        if self.run_id is None:
            return
        client, run_id = self.client, self.run_id
        out = Path(output_dir)
        try:
            if self.settings.get("log_artifacts", True):
                for path in _run_artifacts(out):
                    client.log_artifact(run_id, str(path))
            if self.settings.get("log_model", False):
                self._log_model(client, run_id, out)
        finally:
            client.set_terminated(run_id, status=status)
            log.info("MLflow: run %s %s", run_id, status.lower())
            self._reset()

    # -- helpers ---------------------------------------------------------------------------
    @staticmethod
    def _experiment(client: Any, name: str, local_output: Path | None) -> str:
        from mlflow.exceptions import MlflowException

        found = client.get_experiment_by_name(name)
        if found is not None:
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(found.experiment_id)
            return found.experiment_id
        # A local store keeps its artifacts beside the database, not in ./mlartifacts of the cwd.
        location = (local_output.resolve() / LOCAL_DIR / "artifacts").as_uri() if local_output else None
        try:
            return client.create_experiment(name, artifact_location=location)
        except MlflowException:  # created meanwhile by another run
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id

    @staticmethod
    def _resumable_run(client: Any, uri: str, output_dir: Path, run_info: Mapping[str, Any]) -> str | None:
        """The MLflow run of this output dir to go on with, when the training run resumes."""
        resumed = run_info.get("resumed")
        if resumed is None and "resumed_from" in run_info:  # the worker names the checkpoint, or None
            resumed = bool(run_info["resumed_from"])
        if resumed is False:
            return None
        try:
            record = json.loads((output_dir / RUN_RECORD).read_text())
        except (OSError, ValueError):
            return None
        if record.get("tracking_uri") != uri or not record.get("run_id"):
            return None
        from mlflow.exceptions import MlflowException

        try:
            run = client.get_run(record["run_id"])
        except MlflowException:
            return None
        if run.info.status == "FINISHED" or run.info.lifecycle_stage == "deleted":
            return None
        return run.info.run_id

    def _tags(self, run_info: Mapping[str, Any]) -> dict[str, str]:
        import grpo_host

        tags = {
            "grpo_host.version": grpo_host.__version__,
            "grpo_host.output_dir": str(Path(run_info["output_dir"]).resolve()),
            "mlflow.source.name": "grpo-host train",
            "mlflow.source.type": "JOB",
        }
        rewards = list(run_info.get("rewards") or [])
        if rewards:
            tags["grpo_host.rewards"] = ",".join(str(p.get("name")) for p in rewards)
        for p in rewards:
            prefix = f"reward.{_key(str(p.get('name')))}"
            tags[f"{prefix}.plugin"] = f"{p.get('plugin') or '?'} {p.get('version') or '?'}"
            for field in ("import_path", "params_hash", "weight", "timeout"):
                if p.get(field) is not None:
                    tags[f"{prefix}.{field}"] = str(p[field])
            tags[f"{prefix}.params"] = json.dumps(p.get("params") or {}, sort_keys=True, default=str)
        for key, value in (self.settings.get("tags") or {}).items():
            tags[_key(str(key))] = str(value)
        return {k: v[:8000] for k, v in tags.items()}

    @staticmethod
    def _log_params(client: Any, run_id: str, config: Mapping[str, Any]) -> None:
        from mlflow.entities import Param

        from grpo_host.tracking import flatten

        params = []
        for key, value in sorted(flatten(config).items()):
            text = value if isinstance(value, str) else json.dumps(value, default=str)
            params.append(Param(_key(key)[:250], text[:6000]))
        for i in range(0, len(params), 100):  # MLflow's cap on params per log_batch call
            client.log_batch(run_id, params=params[i : i + 100])

    @staticmethod
    def _log_model(client: Any, run_id: str, out: Path) -> None:
        """The saved model: ``<output>/model`` when the worker saved it there, else the model
        files at the top of the output dir; a LoRA adapter under ``adapter/`` too."""
        logged = []
        if (out / "model").is_dir():
            client.log_artifacts(run_id, str(out / "model"), artifact_path="model")
            logged.append("model/")
        else:
            for path in sorted(out.iterdir()):
                if path.is_file() and MODEL_FILES.fullmatch(path.name):
                    client.log_artifact(run_id, str(path), artifact_path="model")
                    logged.append(path.name)
        if (out / "adapter").is_dir():
            client.log_artifacts(run_id, str(out / "adapter"), artifact_path="adapter")
            logged.append("adapter/")
        if not logged:
            log.warning("MLflow: log_model is on but %s holds no saved model", out)


def _run_artifacts(out: Path) -> list[Path]:
    if not out.is_dir():
        return []
    chosen = []
    for path in sorted(out.iterdir()):
        if not path.is_file() or path.name == RUN_RECORD or MODEL_FILES.fullmatch(path.name):
            continue
        wanted = path.suffix in ARTIFACT_SUFFIXES or (
            path.suffix == ".json" and any(word in path.stem for word in ARTIFACT_JSON)
        )
        if wanted and path.stat().st_size <= MAX_ARTIFACT_BYTES:
            chosen.append(path)
    return chosen


def _key(key: str) -> str:
    """MLflow allows letters, digits, ``_ - . / `` and space in keys; the rest become ``_``."""
    return _BAD_KEY_CHARS.sub("_", key)


def _loggable_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _is_main_process() -> bool:
    try:
        return int(os.environ.get("RANK", "0")) == 0
    except ValueError:
        return True
