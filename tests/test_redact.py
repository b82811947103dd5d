"""Redaction: secret-looking variables' values never reach what a run writes or prints.

Fast checks of each place the one redaction step is wired into (the worker's own streams,
what the host relays from the worker, the error the CLI prints, the trackers, the report, a
SageMaker request); ``test_run_safety.py`` trains a run whose reward leaks and greps all of it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from grpo_host.observability import redact as redact_module
from grpo_host.observability.redact import (
    MASK,
    Redactor,
    looks_secret,
    redact,
    redact_settings,
    secret_values,
)

SECRET = "hf_FAKE_redact_unit_4d9e1b"  # not a real secret


@pytest.fixture
def secret_env(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", SECRET)
    return SECRET


@pytest.mark.parametrize(
    "name",
    [
        "HF_TOKEN",
        "OPENAI_API_KEY",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
        "DB_PASSWORD",
        "MLFLOW_TRACKING_PASSWORD",
        "password",
        "api_key",
        "GOOGLE_APPLICATION_CREDENTIALS",
        "GITHUB_TOKENS",
        "MY_SECRET",
    ],
)
def test_secret_looking_names(name):
    assert looks_secret(name)


@pytest.mark.parametrize(
    "name",
    [
        "TOKENIZERS_PARALLELISM",
        "KEYBOARD",
        "MONKEY_PATCH",
        "PATH",
        "HF_HUB_OFFLINE",
        "api_key_env",
        "HF_TOKEN_PATH",
        "max_steps",
    ],
)
def test_names_that_are_not_secrets(name):
    assert not looks_secret(name)


def test_values_short_or_unlisted_are_left_alone():
    env = {
        "HF_TOKEN": SECRET,
        "MY_KEY": "1",
        "TOKENIZERS_PARALLELISM": "false-but-long",
        "PLAIN": "hunter2hunter2",
        "DEPLOY_PIN": "4242",
        "GRPO_HOST_REDACT_ENV": "PLAIN, DEPLOY_*",
    }
    assert secret_values(env) == {"HF_TOKEN": SECRET, "PLAIN": "hunter2hunter2", "DEPLOY_PIN": "4242"}


def test_configured_names_and_patterns(monkeypatch):
    monkeypatch.setattr(redact_module, "_configured", set())
    monkeypatch.setenv("COMPANY_VAULT_PHRASE", "open-sesame")
    assert "open-sesame" in redact("say open-sesame")
    redact_module.configure(["COMPANY_VAULT_*"])
    assert redact("say open-sesame") == f"say {MASK}"


def test_escaped_forms_and_structures():
    tricky = 'p@ss"w/rd\\x'
    r = Redactor([tricky])
    assert r.text(json.dumps({"e": f"bad {tricky}"})) == json.dumps({"e": f"bad {MASK}"})  # JSON-escaped
    assert r.text("https://u:p%40ss%22w%2Frd%5Cx@host") == f"https://u:{MASK}@host"  # URL-quoted
    nested = r.value({"a": [tricky, ("x", tricky)], tricky: 1, "n": 2.5})
    assert nested == {"a": [MASK, ("x", MASK)], MASK: 1, "n": 2.5}


def test_settings_whose_key_looks_secret_are_masked(secret_env):
    data = {
        "tracking_params": {"mlflow": {"password": "literal-pass", "experiment": "e"}},
        "rewards": [{"params": {"api_key_env": "OPENAI_API_KEY", "note": f"uses {secret_env}"}}],
    }
    shown = redact_settings(data)
    assert shown["tracking_params"]["mlflow"] == {"password": MASK, "experiment": "e"}
    assert shown["rewards"][0]["params"] == {"api_key_env": "OPENAI_API_KEY", "note": f"uses {MASK}"}


def test_worker_streams_redact_prints_logging_and_tracebacks(secret_env):
    code = (
        "import logging, os, sys\n"
        "from grpo_host.observability.redact import redact_std_streams\n"
        "redact_std_streams()\n"
        "logging.basicConfig(force=True)\n"
        "t = os.environ['HF_TOKEN']\n"
        "print('print', t); logging.warning('log %s', t); sys.stderr.write('raw ' + t + '\\n')\n"
        "raise RuntimeError('boom ' + t)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), timeout=60
    )
    assert proc.returncode == 1
    out = proc.stdout + proc.stderr
    assert SECRET not in out
    assert out.count(MASK) == 4 and "RuntimeError: boom ***" in out


@pytest.mark.slow  # run_prepared imports transformers (through the callbacks' progress prefix)
def test_host_relays_the_worker_output_redacted(secret_env, tmp_path):
    """What the backend's command prints (also a progress event) reaches the console redacted,
    whatever process printed it (a reward's worker writes straight to the inherited fd)."""
    from grpo_host.training.callbacks import PROGRESS_PREFIX
    from grpo_host.training.launch import PreparedRun, run_prepared

    code = (
        "import json, os; t = os.environ['HF_TOKEN']\n"
        "os.write(1, ('fd ' + t + '\\n').encode())\n"
        f"print({PROGRESS_PREFIX!r} + json.dumps({{'event': 'phase', 'text': 'x ' + t + ' \\\\ \"'}}))\n"
    )
    prepared = PreparedRun(
        None, None, {}, tmp_path / "c.yaml", [sys.executable, "-c", code], dict(os.environ)
    )
    lines, events = [], []
    assert run_prepared(prepared, events.append, lines.append) == 0
    assert lines == [f"fd {MASK}"]
    assert events == [{"event": "phase", "text": f'x {MASK} \\ "'}]


def test_cli_error_message_is_redacted(secret_env, tmp_path):
    from tests.conftest import run_cli

    proc = run_cli(
        "train", "--set", f"data.source={tmp_path}/{SECRET}.jsonl", "--output-dir", str(tmp_path / "o")
    )
    assert proc.returncode == 2 and "not found" in proc.stderr
    assert SECRET not in proc.stderr and MASK in proc.stderr


def test_trackers_get_params_tags_and_metrics_redacted(secret_env):
    from grpo_host.tracking import TrackerSet

    class Recording:
        name = "rec"

        def __init__(self):
            self.seen = []

        def start(self, run_info):
            self.seen.append(run_info)

        def log_metrics(self, step, metrics):
            self.seen.append(metrics)

        def finish(self, output_dir):
            pass

    tracker = Recording()
    trackers = TrackerSet([tracker])
    trackers.start(
        {
            "config": {"tracking_params": {"mlflow": {"tracking_uri": f"https://u:{SECRET}@host"}}},
            "tracking_params": {"mlflow": {"token": "literal-token-value"}},
        }
    )
    trackers.log_metrics(1, {"reward": 0.5, "metric_source_errors": [f"HTTP 401 for {SECRET}"]})
    seen = json.dumps(tracker.seen)
    assert SECRET not in seen and "literal-token-value" not in seen
    assert tracker.seen[1]["reward"] == 0.5


def test_report_is_redacted_before_it_escapes_html(tmp_path, monkeypatch):
    from grpo_host.observability.report import write_report

    tricky = "s3cr<t&v@lue!"
    monkeypatch.setenv("API_SECRET", tricky)
    row = {
        "step": 1,
        "prompt": "p",
        "completion": "c",
        "rewards": {"judge": {"score": None, "outcome": "error", "details": {"error": f"refused {tricky}"}}},
    }
    (tmp_path / "samples.jsonl").write_text(json.dumps(row) + "\n")
    (tmp_path / "metrics.jsonl").write_text(
        json.dumps({"step": 1, "reward": 0.0, "rewards/judge/mean": 0.0}) + "\n"
    )
    (tmp_path / "run.json").write_text(json.dumps({"run_name": f"run {tricky}"}))
    page = write_report(tmp_path)["html"].read_text()
    assert "s3cr&lt;t&amp;v@lue!" not in page and tricky not in page and MASK in page


def test_launch_refuses_secret_looking_hp_and_set_keys(tmp_path):
    from grpo_host.errors import GrpoHostError
    from grpo_host.sagemaker.launcher import plan_job

    config = tmp_path / "run.yaml"
    config.write_text("rewards: [format]\n")
    with pytest.raises(GrpoHostError) as err:
        plan_job(
            config,
            {"hyperparameters": {"tracking_params.mlflow.password": "hunter2hunter2"}},
            workdir=tmp_path / "w",
            environ={},
        )
    msg = str(err.value)
    assert "--hp tracking_params.mlflow.password=…" in msg and "hunter2" not in msg
    assert "--secret-from-env MLFLOW_TRACKING_PASSWORD" in msg
    with pytest.raises(
        GrpoHostError,
        match=r"--set rewards\.judge\.params\.api_key=….*--secret-from-env "
        r"REWARDS_JUDGE_PARAMS_API_KEY",
    ):
        plan_job(
            config,
            {},
            {"rewards": {"judge": {"params": {"api_key": "sk-123456789"}}}},
            workdir=tmp_path / "w",
            environ={},
        )
    assert not (tmp_path / "w").exists()  # refused before any source was built
