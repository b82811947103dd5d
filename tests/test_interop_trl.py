"""grpo-reward-trl: every function of trl.rewards is a grpo-host reward, its goldens pass through
our runtime, and each golden score is what TRL's own function returns when called directly."""

from __future__ import annotations

import inspect
import json
import subprocess
import sys

import pytest

rewards_module = pytest.importorskip("grpo_reward_trl.rewards", reason="grpo-reward-trl is not installed")

from grpo_host.golden.harness import RewardHarness  # noqa: E402
from grpo_host.golden.loader import find_golden_file, load_golden_file  # noqa: E402
from grpo_host.plugins.manager import get_plugin_manager  # noqa: E402

NAMES = sorted(rewards_module.TRL_REWARDS.values())


def trl_functions() -> set[str]:
    import trl.rewards

    return {n for n in trl.rewards.__all__ if callable(getattr(trl.rewards, n)) and not inspect.ismodule(
        getattr(trl.rewards, n))}


def test_every_trl_reward_function_is_wrapped():
    assert trl_functions() == set(rewards_module.TRL_REWARDS)
    installed = get_plugin_manager().rewards
    for name in NAMES:
        assert installed[name].plugin == "grpo-reward-trl", name


def test_the_entry_point_does_not_import_trl():
    probe = "import sys, grpo_reward_trl; print(json.dumps(sorted(m for m in ('trl', 'torch', 'math_verify') if m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", "import json; " + probe], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == []


def cases(name: str):
    spec = get_plugin_manager().get_reward(name)
    return spec, load_golden_file(find_golden_file(spec)).cases


@pytest.mark.parametrize("name", NAMES)
def test_goldens_pass_through_the_runtime(name):
    spec, golden = cases(name)
    assert len(golden) >= 10, f"{name}: {len(golden)} golden cases"
    with RewardHarness(spec) as harness:
        checks = harness.run_checks(["golden"])
    failed = [c.message for c in checks if c.failed]
    assert not failed, "\n\n".join(failed)
    assert sum(c.status == "passed" for c in checks) == len(golden)


def direct_call(name: str, completion: str, columns: dict, params: dict):
    """The TRL function itself, called as GRPOTrainer calls it, on one golden case."""
    import trl.rewards as tr

    completions = [[{"role": "assistant", "content": completion}]]
    solution = [columns.get(params.get("solution_column", "solution"))]
    ids = [columns["completion_ids"]] if "completion_ids" in columns else None
    if name == "trl-accuracy":
        return tr.accuracy_reward(completions, solution)[0]
    if name == "trl-reasoning-accuracy":
        return tr.reasoning_accuracy_reward(completions, solution, params.get("reasoning_delimiters"))[0]
    if name == "trl-think-format":
        return tr.think_format_reward(completions)[0]
    if name == "trl-cosine-scaled":
        fn = tr.get_cosine_scaled_reward(**{"max_len": 1000, **{k: v for k, v in params.items() if k != "solution_column"}})
        return fn(completions, solution, ids)[0]
    if name == "trl-repetition-penalty":
        return tr.get_repetition_penalty_reward(**params)(ids)[0]
    if name == "trl-soft-overlong-punishment":
        return tr.get_soft_overlong_punishment(**{"max_completion_len": 1024, "soft_punish_cache": 256, **params})(ids)[0]
    raise AssertionError(name)


@pytest.mark.parametrize("name", NAMES)
def test_golden_scores_are_trls_own(name):
    """Faithfulness: every golden case with a score is what TRL's function gives directly."""
    from grpo_host.rewards.spec import completion_text

    _, golden = cases(name)
    compared = 0
    for case in golden:
        if case.score is None:
            continue
        text, _ = completion_text(case.completion_value())
        direct = direct_call(name, text, case.sample_columns(), dict(case.params))
        assert direct == pytest.approx(case.score, abs=case.tolerance), (name, case.id, direct)
        compared += 1
    assert compared >= 8
