"""The MLflow tracker against a real MLflow tracking server on 127.0.0.1, read back with MlflowClient."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("mlflow")
pytest.importorskip("grpo_tracking_mlflow")

from mlflow.tracking import MlflowClient  # noqa: E402

from grpo_host.errors import GrpoHostError  # noqa: E402
from grpo_host.plugins.manager import PluginManager  # noqa: E402
from grpo_host.tracking import TrackerSet  # noqa: E402

from .conftest import free_port, run_cli  # noqa: E402

CONFIG = {
    "run_name": "tiny",
    "model": {"name": "tiny-qwen2", "dtype": "float32"},
    "grpo": {"beta": 0.04, "num_generations": 8, "max_steps": 3},
    "rewards": [{"name": "format", "weight": 1.0}, {"name": "length", "params": {"target": 20}}],
    "peft": {"enabled": False, "target_modules": ["q_proj", "v_proj"]},
}
PROVENANCE = [
    {"name": "format", "plugin": "grpo-reward-format", "version": "0.1.0", "import_path": "grpo_reward_format:format",
     "params": {"think_tag": "think"}, "params_hash": "aaaa1111bbbb2222", "timeout": 5.0, "weight": 1.0},
    {"name": "length", "plugin": "grpo-reward-length", "version": "0.1.0", "import_path": "grpo_reward_length:length",
     "params": {"target": 20}, "params_hash": "cccc3333dddd4444", "timeout": 5.0, "weight": 0.5},
]


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` with a SQLite store and proxied artifacts, for this module only."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    exe = shutil.which("mlflow", path=str(Path(sys.executable).parent)) or shutil.which("mlflow")
    assert exe, "the mlflow command is not installed (pip install mlflow)"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no background job runner
    env.pop("MLFLOW_TRACKING_URI", None)
    log = open(root / "server.log", "wb")
    proc = subprocess.Popen(
        [exe, "server", "--backend-store-uri", f"sqlite:///{root / 'store.db'}",
         "--artifacts-destination", str(root / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                log.flush()
                pytest.fail(f"mlflow server did not come up:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.3)
        yield url
    finally:
        # The server runs in its own session: end that group (uvicorn is a child of the CLI).
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)
        log.close()


def fake_output(out: Path) -> Path:
    """What a finished training run leaves in its output dir."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text("<html><body>report</body></html>")
    (out / "reward_curves.png").write_bytes(b"\x89PNG\r\n\x1a\nfake")
    (out / "run_config.yaml").write_text("run_name: tiny\n")
    (out / "metrics.jsonl").write_text('{"step": 1, "reward": 0.1}\n')
    (out / "samples.jsonl").write_text('{"step": 1, "completion": "4"}\n')
    (out / "run.json").write_text('{"final_step": 3}')
    (out / "reward_provenance.json").write_text(json.dumps(PROVENANCE))
    (out / "model.safetensors").write_bytes(b"weights")
    (out / "config.json").write_text("{}")
    (out / "tokenizer.json").write_text("{}")
    return out


def run_info(out: Path, **extra):
    return {"output_dir": str(out), "run_name": "tiny", "config": CONFIG, "rewards": PROVENANCE, **extra}


def step_metrics(step: int) -> dict:
    return {
        "step": step, "reward": 0.1 * step, "rewards/format/mean": 0.2 * step, "rewards/format/error": 0,
        "rewards/length/mean": -0.5 + 0.1 * step, "loss": 0.01, "kl": 0.001 * step, "step_time": 0.15,
        "completions/mean_length": 20.0 + step, "gpu/0/utilization/mean": 50.0,
        "health/warnings": 0.0, "note": "not a number", "flag": True, "bad": float("nan"),
    }


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


@pytest.fixture
def manager():
    return PluginManager(environ={"GRPO_HOST_LOAD_PLUGINS": "grpo-tracking-mlflow"})


@pytest.mark.slow
def test_run_logs_params_metrics_tags_artifacts_to_a_server(mlflow_server, tmp_path, manager, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = fake_output(tmp_path / "run")
    settings = {"tracking_uri": mlflow_server, "experiment": "grpo-test", "tags": {"team": "rl"}, "log_model": True}
    trackers = TrackerSet.from_names(["mlflow"], manager)
    trackers.start(run_info(out, tracking_params={"mlflow": settings}, resumed_from=None))
    for step in (1, 2, 3):
        trackers.log_metrics(step, step_metrics(step))
    trackers.finish(str(out))

    record = json.loads((out / "mlflow_run.json").read_text())
    client = MlflowClient(tracking_uri=mlflow_server)
    run = client.get_run(record["run_id"])
    assert run.info.status == "FINISHED" and run.info.run_name == "tiny"
    assert client.get_experiment(run.info.experiment_id).name == "grpo-test"
    # Params: the resolved config, flattened to the keys --set takes.
    params = run.data.params
    assert params["grpo.beta"] == "0.04" and params["model.name"] == "tiny-qwen2"
    assert json.loads(params["peft.target_modules"]) == ["q_proj", "v_proj"]
    assert json.loads(params["rewards"])[1]["params"] == {"target": 20}
    # Metrics: every numeric one, at its step; text, bools and NaN left out.
    history = client.get_metric_history(run.info.run_id, "rewards/format/mean")
    assert [(m.step, round(m.value, 6)) for m in history] == [(1, 0.2), (2, 0.4), (3, 0.6)]
    assert [m.step for m in client.get_metric_history(run.info.run_id, "kl")] == [1, 2, 3]
    assert {"loss", "step_time", "completions/mean_length", "gpu/0/utilization/mean", "rewards/format/error"} <= set(
        run.data.metrics
    )
    assert not {"note", "flag", "bad", "step"} & set(run.data.metrics)
    # Tags: reward provenance.
    tags = run.data.tags
    assert tags["reward.format.plugin"] == "grpo-reward-format 0.1.0"
    assert tags["reward.length.params_hash"] == "cccc3333dddd4444"
    assert json.loads(tags["reward.length.params"]) == {"target": 20}
    assert tags["grpo_host.rewards"] == "format,length" and tags["team"] == "rl"
    # Artifacts: the run's record, and the model under model/ since log_model is on.
    artifacts = artifact_paths(client, run.info.run_id)
    assert {"report.html", "reward_curves.png", "run_config.yaml", "metrics.jsonl", "samples.jsonl", "run.json",
            "reward_provenance.json"} <= artifacts
    assert {"model/model.safetensors", "model/config.json", "model/tokenizer.json"} <= artifacts
    assert "model.safetensors" not in artifacts and "mlflow_run.json" not in artifacts
    local = client.download_artifacts(run.info.run_id, "report.html", str(tmp_path))
    assert "report" in Path(local).read_text()

    # A resumed training run goes on in the same MLflow run, once it was left unfinished.
    client.set_terminated(run.info.run_id, status="FAILED")
    trackers = TrackerSet.from_names(["mlflow"], manager)
    trackers.start(run_info(out, tracking_params={"mlflow": {"tracking_uri": mlflow_server}},
                            resumed_from=str(out / "checkpoints" / "checkpoint-3")))
    trackers.log_metrics(4, step_metrics(4))
    trackers.finish(str(out), status="FAILED")
    assert json.loads((out / "mlflow_run.json").read_text())["run_id"] == run.info.run_id
    history = client.get_metric_history(run.info.run_id, "rewards/format/mean")
    assert [m.step for m in history] == [1, 2, 3, 4]
    assert client.get_run(run.info.run_id).info.status == "FAILED"


@pytest.mark.slow
def test_uri_from_environment_and_main_process_only(mlflow_server, tmp_path, manager, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    monkeypatch.setenv("MLFLOW_EXPERIMENT_NAME", "from-env")
    tracker = manager.get_tracker("mlflow")

    monkeypatch.setenv("RANK", "1")  # another process of a distributed run: logs nothing
    tracker.start(run_info(tmp_path / "rank1"))
    tracker.log_metrics(1, step_metrics(1))
    tracker.finish(str(tmp_path / "rank1"))
    assert not (tmp_path / "rank1" / "mlflow_run.json").exists()

    monkeypatch.setenv("RANK", "0")
    out = fake_output(tmp_path / "rank0")
    tracker.start(run_info(out))
    tracker.log_metrics(1, step_metrics(1))
    tracker.finish(str(out))
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("from-env")
    runs = client.search_runs([experiment.experiment_id])
    assert len(runs) == 1 and runs[0].data.metrics["reward"] == pytest.approx(0.1)
    assert not (out / "mlruns").exists()


def test_no_uri_logs_to_a_local_store_in_the_output_dir(tmp_path, manager, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_EXPERIMENT_NAME", raising=False)
    monkeypatch.chdir(tmp_path)  # nothing may land in the working directory
    out = fake_output(tmp_path / "out")
    trackers = TrackerSet.from_names(["mlflow"], manager)
    trackers.start(run_info(out))
    trackers.log_metrics(1, step_metrics(1))
    trackers.log_metrics(2, step_metrics(2))
    trackers.finish(str(out))

    db = out / "mlruns" / "mlflow.db"
    assert db.is_file()
    client = MlflowClient(tracking_uri=f"sqlite:///{db}")
    run = client.get_run(json.loads((out / "mlflow_run.json").read_text())["run_id"])
    assert client.get_experiment(run.info.experiment_id).name == "grpo-host"
    assert [m.step for m in client.get_metric_history(run.info.run_id, "reward")] == [1, 2]
    assert "report.html" in artifact_paths(client, run.info.run_id)
    assert run.info.artifact_uri.startswith((out / "mlruns" / "artifacts").resolve().as_uri())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_sagemaker_arn_needs_sagemaker_mlflow(tmp_path, monkeypatch):
    import importlib.util

    from grpo_tracking_mlflow import resolve_tracking_uri

    arn = "arn:aws:sagemaker:us-east-1:123456789012:mlflow-tracking-server/my-server"
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "sagemaker_mlflow" else real_find_spec(name, *a)
    )
    with pytest.raises(GrpoHostError, match=r"sagemaker-mlflow"):
        resolve_tracking_uri(arn, tmp_path)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object())
    assert resolve_tracking_uri(arn, tmp_path) == (arn, False)
    with pytest.raises(GrpoHostError, match="not of an MLflow tracking server"):
        resolve_tracking_uri("arn:aws:sagemaker:us-east-1:123456789012:training-job/x", tmp_path)


def test_unknown_setting_is_refused_with_the_allowed_ones(tmp_path, manager):
    tracker = manager.get_tracker("mlflow")
    with pytest.raises(GrpoHostError, match=r"unknown setting\(s\) experiment_name.*experiment:"):
        tracker.start(run_info(tmp_path, tracking_params={"mlflow": {"experiment_name": "x"}}))


def test_entry_point_module_does_not_import_mlflow():
    code = "import grpo_tracking_mlflow, sys; print('mlflow' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == "False", result.stderr


@pytest.mark.slow
def test_grpo_host_train_logs_to_the_server(mlflow_server, tmp_path):
    """A few real training steps with `tracking: [mlflow]`, read back from the server."""
    out = tmp_path / "run"
    result = run_cli(
        "train", "--output-dir", str(out),
        "--set", "grpo.max_steps=3", "--set", "grpo.per_device_train_batch_size=8",
        "--set", "grpo.num_generations=4", "--set", "grpo.max_completion_length=16",
        "--set", "grpo.num_iterations=1",  # a logged row per step (the default: one per two steps)
        "--set", "reward_workers=0", "--set", "checkpointing.steps=1000",
        "--set", "tracking=[mlflow]", "--set", "tracking_params.mlflow.experiment=e2e-train",
        env={"MLFLOW_TRACKING_URI": mlflow_server}, timeout=400,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    client = MlflowClient(tracking_uri=mlflow_server)
    experiment = client.get_experiment_by_name("e2e-train")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.status == "FINISHED"
    assert run.data.params["grpo.max_steps"] == "3" and run.data.params["tracking"] == '["mlflow"]'
    rewards = run.data.tags["grpo_host.rewards"].split(",")
    assert rewards and all(run.data.tags[f"reward.{r}.params_hash"] for r in rewards)
    for name in rewards:
        history = client.get_metric_history(run.info.run_id, f"rewards/{name}/mean")
        assert [m.step for m in history] == [1, 2, 3], name
        assert client.get_metric_history(run.info.run_id, f"rewards/{name}/ok")
    assert {"loss", "step_time", "health/warnings"} <= set(run.data.metrics)
    assert {"report.html", "reward_curves.png", "run_config.yaml", "metrics.jsonl", "reward_provenance.json"} <= (
        artifact_paths(client, run.info.run_id)
    )
    # The same step figures are in metrics.jsonl, group figures and health included.
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert all(f"rewards/{rewards[0]}/frac_zero_std" in r and "health/warnings" in r for r in records)
