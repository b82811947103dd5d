"""Completions built to hang sympy or math-verify cost at most their timeout, through the runtime.

Each hostile answer (towers of exponents, huge factorials, deeply nested brackets, megabyte
answers) must end as ``timeout`` or ``error`` within its budget, in the worker pool the way
training scores, and the honest samples around it must still be scored. A short per-sample
timeout keeps the file fast; the worker a timeout kills is replaced between samples.
"""

from __future__ import annotations

import time

import pytest

import grpo_host
from grpo_host.plugins.manager import get_plugin_manager
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples

pytest.importorskip("grpo_reward_accuracy", reason="install plugins/grpo-reward-accuracy (pip install -e)")

TIMEOUT = 1.5
# A killed worker is replaced (a fresh interpreter that imports math-verify): allow for that.
SLACK = 20.0

HANGS = {  # parse fine, then sympy evaluates them for minutes: only the timeout stops them
    "exponent-tower": r"So the answer is \boxed{9^{9^{9^{9}}}}.",
    "exponent-tower-in-tag": r"<answer>10^{10^{10^{10}}}</answer>",
    "huge-factorial": r"\boxed{(10^{10})!}",
}
REFUSED = {  # refused before any parsing: an error at once
    "nested-parentheses": r"\boxed{" + "(" * 5_000 + "1" + ")" * 5_000 + "}",
    "nested-braces-in-tag": "<answer>" + "{" * 2_000 + "1" + "}" * 2_000 + "</answer>",
    "megabyte-boxed-sum": r"\boxed{" + "1+" * 500_000 + "1}",
    "megabyte-answer-tag": "<answer>" + "9" * 1_000_000 + "</answer>",
}
HONEST = [(r"\boxed{42}", "42", 1.0), (r"\boxed{\sqrt{72}}", r"6\sqrt{2}", 1.0), ("The answer is 7.", "8", 0.0)]


@pytest.fixture(scope="module")
def runtime():
    spec = get_plugin_manager().get_reward("accuracy")
    with RewardRuntime([bind_reward(spec, {"timeout": TIMEOUT})], workers=2) as rt:
        rt.score(prepare_samples([r"\boxed{1}"] * 2, {"answer": ["1"] * 2}))  # workers up, math-verify loaded
        yield rt


def _score(rt: RewardRuntime, completions: list[str], golds: list[str]):
    start = time.monotonic()
    rows = rt.score(prepare_samples(completions, {"answer": golds}))["accuracy"]
    return rows, time.monotonic() - start


@pytest.mark.parametrize("name", sorted(HANGS))
def test_a_completion_that_hangs_sympy_ends_as_timeout_within_its_budget(runtime, name):
    rows, elapsed = _score(runtime, [HANGS[name]], ["3"])
    assert rows[0].outcome == "timeout", rows[0]
    assert rows[0].score is None
    assert elapsed < TIMEOUT + SLACK


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_a_completion_built_to_stall_the_parser_is_refused_as_an_error_at_once(runtime, name):
    rows, elapsed = _score(runtime, [REFUSED[name]], ["1"])
    assert rows[0].outcome == "error", rows[0]
    assert "max_answer_chars" in rows[0].details["error"] or "max_nesting" in rows[0].details["error"]
    assert rows[0].seconds < TIMEOUT / 2  # no parsing was tried
    assert elapsed < TIMEOUT + SLACK  # (a worker killed by an earlier test may be restarting)


def test_hostile_samples_in_a_batch_cost_their_timeout_and_the_honest_ones_are_still_scored(runtime):
    completions = [c for c, _, _ in HONEST] + [HANGS["exponent-tower"]] + [c for c, _, _ in HONEST] + [
        REFUSED["megabyte-boxed-sum"], HANGS["huge-factorial"]
    ]
    golds = [g for _, g, _ in HONEST] + ["3"] + [g for _, g, _ in HONEST] + ["1", "3"]
    rows, elapsed = _score(runtime, completions, golds)
    assert [r.outcome for r in rows] == ["ok"] * 3 + ["timeout"] + ["ok"] * 3 + ["error", "timeout"]
    assert [r.score for r in rows if r.outcome == "ok"] == [s for _, _, s in HONEST] * 2
    # Two hangs, each stopped at its budget (in parallel or one after the other), plus restarts.
    assert elapsed < 2 * TIMEOUT + SLACK


def test_a_megabyte_completion_without_an_answer_is_scored_quickly(runtime):
    text = "Let me think about this. " * 40_000 + "{[(" * 10_000  # 1 MB, unbalanced brackets, no answer
    rows, elapsed = _score(runtime, [text, "x" * 1_000_000 + r"\boxed{5}"], ["5", "5"])
    assert [(r.outcome, r.score) for r in rows] == [("ok", 0.0), ("ok", 1.0)]
    assert max(r.seconds for r in rows) < TIMEOUT / 2


def test_hostile_samples_reach_trl_as_none_and_do_not_stop_the_run():
    """Through `load_rewards`, as TRL calls it: hostile samples become None (left out of the
    advantage), counted as timeout/error; below the health threshold the run goes on."""
    (reward,) = grpo_host.load_rewards([{"name": "accuracy", "timeout": TIMEOUT}], workers=2)
    try:
        completions = [[{"role": "assistant", "content": rf"\boxed{{{i}}}"}] for i in range(38)]
        completions += [[{"role": "assistant", "content": HANGS["exponent-tower"]}],
                        [{"role": "assistant", "content": REFUSED["nested-parentheses"]}]]
        answers = [str(i) for i in range(38)] + ["3", "1"]
        scores = reward(prompts=["q"] * 40, completions=completions, answer=answers)
        assert scores == [1.0] * 38 + [None, None]
        totals = reward.reward_set.runtime.totals["accuracy"]
        assert (totals["timeout"], totals["error"], totals["ok"]) == (1, 1, 38)
    finally:
        reward.reward_set.close()
