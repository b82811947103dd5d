"""The reward author's commands: `test-rewards`, `new-reward` (the full round trip through
pip and pytest) and `try-reward --explain`."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import uuid

from .conftest import run_cli
from .test_golden_pytest_plugin import GOLDEN, write_golden_plugin


def test_test_rewards_reports_per_reward_and_fails_on_any_failure(plugin_dir, monkeypatch):
    monkeypatch.setenv("GRPO_HOST_LOAD_PLUGINS", "")  # only the plugins written below
    write_golden_plugin(plugin_dir, "cli-wrong")  # one golden case expects the wrong score
    write_golden_plugin(plugin_dir, "cli-lenient", lenient=True,
                        golden=GOLDEN.format(name="cli-lenient").split("  - id: claims-half")[0])
    write_golden_plugin(plugin_dir, "cli-good", golden=GOLDEN.format(name="cli-good").split("  - id: claims-half")[0])

    result = run_cli("test-rewards", "cli-wrong", "cli-lenient", "cli-good", "--json")
    assert result.returncode == 1, result.stderr
    report = json.loads(result.stdout)
    rewards = {r["name"]: r for r in report["rewards"]}
    assert report["ok"] is False
    wrong, lenient, good = rewards["cli-wrong"], rewards["cli-lenient"], rewards["cli-good"]
    assert (wrong["cases"], wrong["passed"], wrong["failed"], wrong["probes"]["flagged"]) == (3, 2, 1, 0)
    assert wrong["plugin"] == "grpo-reward-cli-wrong"
    failing = [c for c in wrong["checks"] if c["status"] == "failed"]
    assert [(c["kind"], c["name"]) for c in failing] == [("golden", "claims-half")]
    assert "expected:  score 0.5" in failing[0]["message"] and "actual:    score 0" in failing[0]["message"]
    assert (lenient["failed"], lenient["probes"]["flagged"]) == (0, 1)
    assert good["ok"] is True and good["conformance"] == {"passed": 11, "failed": 0, "skipped": 0}

    clean = run_cli("test-rewards", "cli-good")
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "PASS" in clean.stdout and "1 reward(s)" in clean.stdout and ", 0 failed" in clean.stdout
    table = run_cli("test-rewards", "cli-wrong", "cli-lenient")
    assert table.returncode == 1
    assert "FAIL cli-wrong golden claims-half" in table.stdout
    assert "FAIL cli-lenient probe empty-completion" in table.stdout
    unknown = run_cli("test-rewards", "cli-gud")
    assert unknown.returncode == 2 and "did you mean 'cli-good'?" in unknown.stderr


def test_try_reward_explain_shows_what_was_read_and_compared(plugin_dir, monkeypatch):
    monkeypatch.setenv("GRPO_HOST_LOAD_PLUGINS", "")  # only the plugin written below
    write_golden_plugin(plugin_dir, "cli-explain")
    result = run_cli("try-reward", "cli-explain", "--completion", "<answer>4</answer>", "--column", "answer=4",
                     "--prompt", "What is 2+2?", "--explain")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "row 0 · cli-explain: 1 (ok" in out
    assert "read      completion: '<answer>4</answer>' (18 characters)" in out
    assert "prompt: 'What is 2+2?'" in out
    assert "compared  extracted = '4'" in out and "gold      = '4'" in out


def test_new_reward_round_trip(tmp_path):
    """Generate, pip install -e, pytest in it, listed by `grpo-host rewards`, uninstall."""
    name = f"roundtrip-{uuid.uuid4().hex[:8]}"
    distribution = f"grpo-reward-{name}"
    made = run_cli("new-reward", name, "--dir", str(tmp_path))
    assert made.returncode == 0, made.stderr
    root = tmp_path / distribution
    assert (root / "pyproject.toml").is_file() and (root / "tests" / "grpo-golden.yaml").is_file()
    again = run_cli("new-reward", name, "--dir", str(tmp_path))
    assert again.returncode == 2 and "already exists" in again.stderr
    bad = run_cli("new-reward", "Bad_Name", "--dir", str(tmp_path))
    assert bad.returncode == 2 and "not a usable reward name" in bad.stderr

    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "-e", str(root)]
    if importlib.util.find_spec("setuptools") is not None:
        pip.insert(-2, "--no-build-isolation")  # offline and fast; else pip fetches setuptools
    installed = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr
    try:
        env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
        tested = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=root,
                                capture_output=True, text=True, timeout=300, env=env)
        assert tested.returncode == 0, tested.stdout + tested.stderr
        # Its 8 golden cases, the 11 conformance checks and the 7 probes all ran as items.
        passed = re.search(r"(\d+) passed", tested.stdout)
        assert passed and int(passed.group(1)) >= 8 + 11 + 7 and "failed" not in tested.stdout, tested.stdout
        listed = run_cli("rewards", "--json")
        rewards = {r["name"]: r for r in json.loads(listed.stdout)["rewards"]}
        assert rewards[name]["plugin"] == distribution and rewards[name]["columns"] == ["answer"]
        scored = run_cli("try-reward", name, "--completion", "<answer>4</answer>", "--column", "answer=4", "--json")
        assert json.loads(scored.stdout)["rewards"][name]["score"] == 1.0
    finally:
        removed = subprocess.run([sys.executable, "-m", "pip", "uninstall", "-y", "-q", distribution],
                                 capture_output=True, text=True, timeout=300)
    assert removed.returncode == 0, removed.stderr
    assert name not in run_cli("rewards", "--json").stdout
