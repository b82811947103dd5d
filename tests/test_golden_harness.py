"""The golden harness on rewards with known flaws: each conformance check and probe must catch
its flaw, and pass an honest reward. Rewards live in a package written to a temp dir (no pip)."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from grpo_host.golden.conformance import CHECKS, import_check
from grpo_host.golden.harness import RewardHarness, run_golden_case
from grpo_host.golden.loader import GoldenCase
from grpo_host.golden.probes import PROBE_NAMES, answer_slot, find_gold, wrong_answers
from grpo_host.rewards.spec import spec_of

QUIRKS = '''
import math
import random
import re

import grpo_host

def _right(completion, answer):
    found = re.findall(r"<answer>(.*?)</answer>", completion, re.S)
    return bool(found) and found[-1].strip() == str(answer).strip()


@grpo_host.reward(name="honest")
def honest(completion: str, answer: str, **columns):
    return 1.0 if _right(completion, answer) else 0.0


@grpo_host.reward(name="coin")
def coin(completion: str, answer: str, **columns):
    return random.random() if completion.strip() else 0.0


@grpo_host.reward(name="position")
class Position:
    """Deterministic, but a sample's score is its place in the batch."""

    def score_batch(self, completions, answer, **columns):
        return [i / len(completions) for i in range(len(completions))]


@grpo_host.reward(name="batch-relative")
class BatchRelative:
    """Deterministic and order-free, but relative to the batch's mean length."""

    def score_batch(self, completions, answer, **columns):
        mean = sum(len(c) for c in completions) / len(completions) or 1.0
        return [len(c) / mean for c in completions]


@grpo_host.reward(name="nan-on-empty")
def nan_on_empty(completion: str, answer: str, **columns):
    return math.nan if not completion else float(_right(completion, answer))


@grpo_host.reward(name="fragile")
def fragile(completion: str, answer: str, **columns):
    completion.encode("utf-8")  # lone surrogates raise here
    if not completion.strip():
        raise ValueError("nothing to score")
    if completion.count("\\n") > 1000:
        raise RecursionError("too long")
    return float(_right(completion, answer))


@grpo_host.reward(name="anywhere")
def anywhere(completion: str, answer: str, **columns):
    """Pays when the gold appears in any answer block: sprayed answers get paid."""
    return 1.0 if any(a.strip() == str(answer) or str(answer) in a.split(", ") or str(answer) in a.split(" or ")
                      for a in re.findall(r"<answer>(.*?)</answer>", completion, re.S)) else 0.0


@grpo_host.reward(name="prompt-echo")
def prompt_echo(completion: str, answer: str, **columns):
    """Pays for overlap with the prompt: copying the prompt gets paid."""
    prompt = columns.get("prompt")
    if _right(completion, answer):
        return 1.0
    return 1.0 if prompt and prompt in completion else 0.0


@grpo_host.reward(name="evaluator")
def evaluator(completion: str, answer: str, **columns):
    """Evaluates arithmetic in the answer, as a math-equivalence checker does: `6*7` is 42."""
    found = re.findall(r"<answer>(.*?)</answer>", completion, re.S)
    given = found[-1].strip() if found else ""
    if re.fullmatch(r"[\\d\\s+*/().-]+", given):
        given = str(eval(given))  # digits and operators only
    return 1.0 if given == str(answer) else 0.0


@grpo_host.reward(name="batch-short")
class BatchShort:
    def score_batch(self, completions, answer, **columns):
        return [1.0] * max(0, len(completions) - 1)
'''

GOLDEN = """\
reward: {name}
cases:
  - id: right
    completion: "<think>6 times 7 is 42</think>\\n<answer>42</answer>"
    prompt: "What is 6*7?"
    columns: {{answer: "42"}}
    score: 1.0
  - id: wrong
    completion: "<answer>41</answer>"
    prompt: "What is 6*7?"
    columns: {{answer: "42"}}
    score: 0.0
"""
NAMES = ("honest", "coin", "position", "batch-relative", "nan-on-empty", "fragile", "anywhere", "prompt-echo", "evaluator", "batch-short")


@pytest.fixture
def quirks(plugin_dir):
    package = plugin_dir / "golden_quirks"
    (package / "golden").mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(QUIRKS))
    for name in NAMES:
        (package / "golden" / f"{name}.yaml").write_text(GOLDEN.format(name=name))
    sys.modules.pop("golden_quirks", None)  # each test imports its own copy, from its own folder
    module = importlib.import_module("golden_quirks")
    yield {spec_of(v).name: spec_of(v) for v in vars(module).values() if spec_of(v) is not None}
    sys.modules.pop("golden_quirks", None)


def checks_of(spec, kind):
    with RewardHarness(spec) as harness:
        return harness.conformance() if kind == "conformance" else harness.probes()


def failed(results):
    return sorted(name for name, r in results.items() if r.status == "failed")


def test_an_honest_reward_passes_everything(quirks):
    with RewardHarness(quirks["honest"]) as harness:
        checks = harness.run_checks()
    assert [c.name for c in checks if c.failed] == []
    assert {c.name for c in checks if c.kind == "conformance"} == set(CHECKS)
    assert {c.name: c.status for c in checks if c.kind == "probe"} == dict.fromkeys(PROBE_NAMES, "passed")


@pytest.mark.parametrize("name, flagged", [
    ("coin", ["batch-order", "batch-size", "deterministic"]),
    ("position", ["batch-order", "batch-size"]),
    ("batch-relative", ["batch-size"]),
    ("nan-on-empty", ["finite-or-none"]),
    ("fragile", ["survives-empty", "survives-odd-text", "survives-whitespace"]),
    ("batch-short", ["one-score-per-sample"]),
])
def test_each_conformance_check_catches_its_flaw(quirks, name, flagged):
    results = checks_of(quirks[name], "conformance")
    assert [n for n in failed(results) if not n.startswith("survives-") or name == "fragile"] == flagged, {
        n: r.message for n, r in results.items() if r.failed
    }


def test_conformance_messages_name_the_input(quirks):
    results = checks_of(quirks["fragile"], "conformance")
    assert "lone-surrogates: error (UnicodeEncodeError" in results["survives-odd-text"].message
    assert "empty: error (ValueError: nothing to score)" in results["survives-empty"].message
    coin = checks_of(quirks["coin"], "conformance")["deterministic"].message
    assert "golden:right:" in coin and "scored again" in coin


@pytest.mark.parametrize("name, flagged", [
    ("anywhere", ["answer-sprayed", "every-candidate"]),
    ("prompt-echo", ["prompt-copied"]),
    ("evaluator", ["prompt-copied"]),
])
def test_probes_catch_their_hack_and_only_it(quirks, name, flagged):
    results = checks_of(quirks[name], "probes")
    assert failed(results) == flagged, {n: r.message for n, r in results.items()}
    message = results[flagged[0]].message
    assert "at least the 1 of the best honest input (golden case 'right')" in message
    assert "intended_probes=" in message


def test_run_golden_case_scores_through_the_runtime(quirks):
    spec = quirks["honest"]
    case = GoldenCase(id="chat", completion=[{"role": "assistant", "content": "<answer>42</answer>"}],
                      columns={"answer": "42"}, score=1.0)
    result = run_golden_case(spec, case)
    assert (result.passed, result.outcome, result.score) == (True, "ok", 1.0)
    bad = run_golden_case(spec, GoldenCase(id="p", completion="x", columns={"answer": "1"}, params={"nope": 1},
                                           score=0.0))
    assert not bad.passed and "has no param 'nope'" in bad.problem
    missing = run_golden_case(spec, GoldenCase(id="m", completion="x", outcome="error"))
    assert missing.passed and "needs column(s) answer" in missing.details["error"]


def test_import_check_catches_torch_at_import(plugin_dir):
    (plugin_dir / "heavy_reward.py").write_text("import torch  # the mistake under test\n")
    (plugin_dir / "light_reward.py").write_text("import grpo_host\n")

    class Spec:
        name, plugin = "heavy", ""

        class target:
            __module__ = "heavy_reward"

    result = import_check(Spec)
    assert result.status == "failed" and "imports torch" in result.message, result.message
    Spec.target.__module__ = "light_reward"
    assert import_check(Spec).status == "passed"


def test_probe_building_blocks():
    text = "<think>so 3 + 4 = 7</think>\n<answer>7</answer>"
    slot = answer_slot(text, "7")
    assert (slot.kind, text[slot.start:slot.end]) == ("tag", "7")
    boxed = "We get \\boxed{\\frac{1}{2}}."
    assert boxed[answer_slot(boxed, None).start:answer_slot(boxed, None).end] == "\\frac{1}{2}"
    assert answer_slot("The answer is 7.\n", "7").kind == "gold"
    assert wrong_answers("7")[:2] == ["6", "8"] and "7" not in wrong_answers("7")
    assert "B" not in wrong_answers("B") and wrong_answers("0.5")[0] == "-0.5"
    assert find_gold(None, {"answer_field": "solution"}, {"solution": 12, "answer": "x"}) == ("12", "solution")
    assert find_gold(None, {}, {"prompt": "p"}) == (None, None)
