"""grpo-reasoning-gym: every task a data source, its scorer a reward; the catalogue matches the
installed reasoning-gym; gold answers score 1.0 through the runtime; a task trains (slow)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

pytest.importorskip("reasoning_gym", reason="reasoning-gym is not installed")
tasks = pytest.importorskip("grpo_reasoning_gym.tasks", reason="grpo-reasoning-gym is not installed")

from grpo_reasoning_gym.catalog import build_catalog, load_catalog  # noqa: E402

from grpo_host.golden.harness import RewardHarness  # noqa: E402
from grpo_host.plugins.manager import get_plugin_manager  # noqa: E402
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_catalogue_matches_the_installed_reasoning_gym():
    """Rerun `python -m grpo_reasoning_gym.catalog` after upgrading reasoning-gym when this fails."""
    assert build_catalog() == load_catalog()


def test_every_task_is_a_data_source_scored_by_the_reward():
    manager = get_plugin_manager()
    names = {n for n in manager.datasets if n.startswith(tasks.PREFIX)}
    assert names == {tasks.PREFIX + t for t in load_catalog()["tasks"]}
    assert len(names) >= 100
    spec = manager.get_dataset("reasoning-gym:leg_counting")
    assert spec.rewards == ("reasoning-gym",) and spec.plugin == "grpo-reasoning-gym"
    params = {p.name: p for p in spec.params}
    assert params["size"].default == 500 and params["seed"].default == 0 and "difficulty" in params
    assert params["max_animals"].type is int and params["max_animals"].text == "int"
    # Every task's declaration is sound (upstream's loose hints pass unchecked, shown as written);
    # a task's own `difficulty` is listed once, as the curriculum level draw_rows takes.
    assert not [key for key in manager.refused if key[1].startswith(tasks.PREFIX)]
    assert [p.name for p in manager.get_dataset("reasoning-gym:bf").params].count("difficulty") == 1
    symbols = {p.name: p for p in manager.get_dataset("reasoning-gym:intermediate_integration").params}["symbols"]
    assert symbols.text == "tuple" and symbols.type is Any
    assert manager.get_reward("reasoning-gym").plugin == "grpo-reasoning-gym"


def test_the_entry_point_does_not_import_reasoning_gym():
    probe = ("import json, sys, grpo_reasoning_gym; grpo_reasoning_gym.grpo_datasets(); "
             "print(json.dumps('reasoning_gym' in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) is False


def test_rows_are_reproducible_and_difficulty_changes_them():
    spec = get_plugin_manager().get_dataset("reasoning-gym:chain_sum")
    first = list(spec.draw({"size": 4, "seed": 3}))
    assert first == list(spec.draw({"size": 4, "seed": 3}))
    assert [r["prompt"] for r in first] != [r["prompt"] for r in spec.draw({"size": 4, "seed": 4})]
    hard = list(spec.draw({"size": 4, "seed": 3, "difficulty": 4}))
    assert [r["prompt"] for r in hard] != [r["prompt"] for r in first]
    assert json.loads(hard[0]["rg_source"])["difficulty"] == 4


TASKS = ("leg_counting", "chain_sum", "basic_arithmetic", "spell_backward", "word_sorting", "arc_1d", "gcd",
         "number_sorting")


def test_gold_answers_score_one_through_the_runtime():
    manager = get_plugin_manager()
    rows = [row for task in TASKS for row in manager.get_dataset(tasks.PREFIX + task).draw({"size": 2, "seed": 7})]
    completions = [f"<think>...</think><answer>{r['answer']}</answer>" for r in rows]
    wrong = ["<answer>certainly not this</answer>"] * len(rows)
    samples = prepare_samples(completions + wrong, {"rg_source": [r["rg_source"] for r in rows] * 2})
    with RewardRuntime([bind_reward(manager.get_reward("reasoning-gym"))], workers=1) as runtime:
        results = runtime.score(samples)["reasoning-gym"]
    assert [r.outcome for r in results] == ["ok"] * len(samples), [r.details for r in results if r.outcome != "ok"]
    assert [r.score for r in results[: len(rows)]] == [1.0] * len(rows)
    assert all(r.score < 1.0 for r in results[len(rows):])


def test_goldens_pass():
    spec = get_plugin_manager().get_reward("reasoning-gym")
    with RewardHarness(spec) as harness:
        checks = harness.run_checks(["golden"])
    assert len(checks) >= 10 and not [c.message for c in checks if c.failed]


@pytest.mark.slow
def test_a_task_trains_the_tiny_model_through_grpo_host_train(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "GRPO_HOST_CACHE": str(tmp_path / "cache"), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_host", "train", os.path.join(REPO, "examples", "reasoning-gym.yaml"),
         "--output-dir", str(out), "--set", "grpo.max_steps=3", "--set", "grpo.per_device_train_batch_size=8",
         "--set", "grpo.num_generations=4", "--set", "grpo.max_completion_length=16",
         "--set", "output.report=false", "--set", "data.params.size=64"],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in rows] == [1, 2, 3]
    for row in rows:
        assert isinstance(row["rewards/reasoning-gym/mean"], float)
        assert row["rewards/reasoning-gym/ok"] == 8 and row["rewards/reasoning-gym/error"] == 0
    provenance = json.loads((out / "reward_provenance.json").read_text())
    assert provenance[0]["name"] == "reasoning-gym" and provenance[0]["plugin"] == "grpo-reasoning-gym"
