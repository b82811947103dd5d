"""A run whose reward leaks a secret, rerun as a careless user would: end to end on CPU.

One tiny run (3 steps) with a hostile reward that prints its ``HF_TOKEN`` and raises an error
quoting it, MLflow on (its local store lands in the output dir) and the report written. The
token must appear nowhere: not in any file of the output dir (checkpoints and the MLflow store
included, read as bytes), not in the console. Then the same command again must leave the
finished run as it is; ``--overwrite`` starts over; a higher ``max_steps`` extends it.
Slow: these train.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import write_distribution

pytestmark = pytest.mark.slow

TOKEN = "hf_FAKE_run_safety_token_5be07a2c"  # not a real secret: checked never to land anywhere

LEAKY = """
import os, sys
import grpo_host


@grpo_host.reward(name="leaky")
def leaky(completion, **columns):
    token = os.environ["HF_TOKEN"]
    print(f"leaky: calling the judge with {token}", file=sys.stderr, flush=True)
    raise RuntimeError(f"401 from the judge: token {token} was refused")


@grpo_host.hookimpl
def grpo_rewards():
    return [leaky]
"""

CONFIG = """
rewards: [format, leaky]
rewards_error_threshold: 1.0
tracking: [mlflow]
grpo: {max_steps: 3, per_device_train_batch_size: 4, num_generations: 4, max_completion_length: 8}
checkpointing: {steps: 50}
"""


@pytest.fixture
def env(plugin_dir, tmp_path):
    write_distribution(
        plugin_dir, "grpo-reward-leaky", {"grpo_reward_leaky": LEAKY}, {"leaky": "grpo_reward_leaky"}
    )
    return {
        **os.environ,
        "HF_TOKEN": TOKEN,
        "CUDA_VISIBLE_DEVICES": "",
        "GRPO_HOST_CACHE": str(tmp_path / "cache"),
        "MLFLOW_TRACKING_URI": "",
    }


def train(config: Path, out: Path, env, *args: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_host", "train", str(config), "--output-dir", str(out), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert TOKEN not in proc.stdout + proc.stderr, "the secret reached the console"
    return proc


def files_holding(folder: Path, needle: str) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and needle.encode() in path.read_bytes():
            found.append(str(path.relative_to(folder)))
    return found


def summary(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


def steps(out: Path) -> list[int]:
    return [
        json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()
    ]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_leaked_secret_lands_nowhere_and_a_finished_run_is_left_alone(tmp_path, env):
    config = tmp_path / "run.yaml"
    config.write_text(CONFIG)
    out = tmp_path / "out"

    first = train(config, out, env)
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    assert "leaky: calling the judge with ***" in first.stdout  # the reward's own print, relayed redacted
    assert summary(out)["final_step"] == 3
    for name in ("samples.jsonl", "report.html", "mlruns", "checkpoints", "metrics.jsonl", "run_config.yaml"):
        assert (out / name).exists(), name
    assert files_holding(out, TOKEN) == []
    assert (
        "401 from the judge: token *** was refused" in (out / "samples.jsonl").read_text()
    )  # it did get there

    model = digest(out / "model.safetensors")
    again = train(config, out, env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "holds a finished run (step 3 of max_steps 3)" in again.stdout and "--overwrite" in again.stdout
    assert summary(out)["final_step"] == 3 and steps(out) == [1, 2, 3]
    assert digest(out / "model.safetensors") == model
    # The worker launched by hand (or by a job) on the same dir: the same rule, before anything is built.
    worker = subprocess.run(
        [sys.executable, "-m", "grpo_host.training.worker", "--config", str(out / "run_config.yaml")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert "holds a finished run" in worker.stdout + worker.stderr
    assert digest(out / "model.safetensors") == model and summary(out)["final_step"] == 3

    quick = (
        "--set",
        "tracking=[]",
        "--set",
        "output.report=false",
    )  # MLflow and the report were checked above
    over = train(config, out, env, "--overwrite", "--set", "grpo.max_steps=2", *quick)
    assert over.returncode == 0, over.stdout[-4000:]
    assert summary(out)["final_step"] == 2 and summary(out)["resumed_from_step"] is None
    assert steps(out) == [1, 2]
    assert not (out / "checkpoints" / "checkpoint-3").exists()

    more = train(config, out, env, "--set", "grpo.max_steps=4", *quick)
    assert more.returncode == 0, more.stdout[-4000:]
    assert summary(out)["final_step"] == 4 and summary(out)["resumed_from_step"] == 2
    assert steps(out) == [1, 2, 3, 4]  # extended from its last checkpoint, no step twice
    assert files_holding(out, TOKEN) == []
