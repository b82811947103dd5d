"""The accuracy plugin (`accuracy`, `exact-match`, `rouge`) beyond its golden cases.

Golden files pin scores case by case; these tests pin what they cannot show: that the exact
fast paths give math-verify's own verdict wherever they decide (and defer where they cannot be
sure), that the gold is parsed once per reference, that math-verify's signal-based timeouts are
off, that extraction stays linear on hostile text, that params reach the rewards through the
host and TRL-style calls, and that the wheel carries the golden files and imports nothing heavy.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time

import pytest

import grpo_host

from .conftest import run_cli

pytest.importorskip("grpo_reward_accuracy", reason="install plugins/grpo-reward-accuracy (pip install -e)")

from grpo_reward_accuracy import Accuracy, exact_match, mathverify, rouge  # noqa: E402
from grpo_reward_accuracy.exact import canonical  # noqa: E402
from grpo_reward_accuracy.extract import find_answer  # noqa: E402
from grpo_reward_accuracy.rewards import fast_verdict, read_gold  # noqa: E402
from grpo_reward_accuracy.rouge import lcs_length, rouge_l  # noqa: E402


@pytest.fixture(scope="module")
def accuracy():
    return Accuracy().score


# -- the exact paths give math-verify's verdicts ---------------------------------------------
AGREE = [  # (gold, answer, verdict): decided without math-verify, and math-verify agrees
    ("42", "42.0", True), ("42", "41", False), ("-3", "3", False), ("1000", "1{,}000", True),
    ("0.75", r"\frac{3}{4}", True), (r"\frac{1}{3}", "0.33", False), ("0.5", r"\dfrac{1}{2}", True),
    (r"6\sqrt{2}", r"\sqrt{72}", True), (r"6\sqrt{2}", "6", False), (r"6\sqrt{2}", r"6\sqrt{3}", False),
    (r"2\pi", r"\pi \cdot 2", True), (r"2\pi", r"2\pi^2", False), (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}", True),
    (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}", True), (r"3 + 2\sqrt{2}", r"(1+\sqrt{2})^2", True),
    ("x^2 + 2x + 1", "(x+1)^2", True), ("x^2 + 2x + 1", "x^2 + 2x + 2", False), ("x + 1", "y + 1", False),
    (r"\frac{x+1}{x-1}", r"\frac{1+x}{x-1}", True), (r"\frac{x+1}{x-1}", r"\frac{x-1}{x+1}", False),
    ("y = 2x + 3", "y = 3 + 2x", True), ("y = 2x + 3", "y = 2x - 3", False), ("5", "x = 5", True),
    (r"30^\circ", "30", True), ("12", r"12\text{ cm}", True), (r"\text{(C)}", "C", True), ("B", r"\text{(C)}", False),
    (r"(-\infty, 3]", r"\left(-\infty,3\right]", True), (r"(-\infty, 3]", r"(-\infty, 3)", False),
    (r"(1, 5)", "(5, 1)", False), (r"(-\infty, 1) \cup (2, \infty)", r"(2, \infty) \cup (-\infty, 1)", True),
    (r"(-\infty, 1) \cup (2, \infty)", "(1, 2)", False), (r"\{1, 2\}", r"\{2, 1, 1\}", True), (r"\{1, 2\}", r"\{1\}", False),
    ("2", "1, 2, 3", False), ("12345678901234567", "12345678901234568", False),
]


@pytest.mark.parametrize(("gold", "answer", "verdict"), AGREE)
def test_exact_paths_decide_and_agree_with_math_verify(gold, answer, verdict):
    parsed = read_gold(gold)
    assert fast_verdict(parsed, canonical(answer)) is verdict
    assert mathverify.equal(parsed.source, parsed.prose, answer)[0] is verdict


DEFER = [  # left to math-verify: the exact paths cannot be sure of its verdict
    (r"\frac{1}{3}", "0.333333"),  # math-verify rounds decimals to 6 places
    ("3", "3.0000001"), (r"25\%", "0.25"), ("1.5", r"1\frac{1}{2}"),  # mixed number
    (r"\sqrt[3]{8}", "2"), ("2e", r"e \cdot 2"), (r"\sin\frac{\pi}{6}", r"\frac12"), ("(1, 2)", r"\{1, 2\}"),
    (r"\sqrt{3 + 2\sqrt{2}}", r"1 + \sqrt{2}"), ("2x = 4", "x = 2"),
]


@pytest.mark.parametrize(("gold", "answer"), DEFER)
def test_exact_paths_defer_where_math_verify_has_its_own_rules(gold, answer):
    assert fast_verdict(read_gold(gold), canonical(answer)) is None


def test_random_pairs_agree_with_math_verify_wherever_the_exact_paths_decide():
    rng = random.Random(7)

    def answer() -> str:
        a, b = rng.randint(-30, 30), rng.randint(1, 12)
        return rng.choice([str(a), f"{a}.{rng.randint(0, 99)}", rf"\frac{{{a}}}{{{b}}}", f"{a}/{b}",
                           rf"{abs(a)}\sqrt{{{b}}}", rf"{a}\pi", f"x^2 + {b}x + {a}", rf"({a}, {a + b}]"])

    decided = 0
    for _ in range(80):
        gold = answer()
        pred = gold.replace("1", "2", 1) if rng.random() < 0.3 else (gold if rng.random() < 0.3 else answer())
        parsed = read_gold(gold)
        verdict = fast_verdict(parsed, canonical(pred))
        if verdict is not None:
            decided += 1
            assert verdict is mathverify.equal(parsed.source, parsed.prose, pred)[0], (gold, pred)
    assert decided > 60


def test_fast_path_scores_say_so_and_math_verify_scores_say_so(accuracy):
    assert accuracy(r"\boxed{\sqrt{72}}", answer=r"6\sqrt{2}").details["path"] == "fast"
    slow = accuracy(r"\boxed{\sin\frac{\pi}{6}}", answer=r"\frac{1}{2}")
    assert (slow.value, slow.details["path"], slow.details["parsed"]) == (1.0, "math-verify", "sin(pi/6)")


# -- gold handling, caching, timeouts ---------------------------------------------------------
def test_gold_is_read_once_per_reference(accuracy):
    gold = r"7\sqrt{3} + 11"  # not seen elsewhere in this process
    before = read_gold.cache_info()
    for text in [r"\boxed{11 + 7\sqrt{3}}", r"\boxed{7}", "no answer", r"\boxed{\sqrt{147} + 11}"] * 2:
        accuracy(text, answer=gold)
    after = read_gold.cache_info()
    assert (after.misses - before.misses, after.hits - before.hits) == (1, 7)


def test_golds_come_as_data_sets_write_them(accuracy):
    assert accuracy(r"\boxed{42}", answer=42).value == 1.0  # an int column
    assert accuracy(r"\boxed{\frac12}", answer=0.5).value == 1.0  # a float column
    assert accuracy(r"\boxed{72}", answer="She sold 48/2 = 24 clips in May...\n#### 72").value == 1.0
    assert accuracy(r"\boxed{5}", answer="So the answer is $\\boxed{5}$.").value == 1.0
    assert accuracy(r"\boxed{5}", answer=None).value is None


def test_missing_answer_column_is_an_error_that_names_the_param(accuracy):
    with pytest.raises(KeyError, match="answer_field"):
        accuracy(r"\boxed{5}", solution="5")
    assert Accuracy(answer_field="solution").score(r"\boxed{5}", solution="5").value == 1.0


def test_math_verify_timeouts_are_off_so_scoring_works_off_the_main_thread():
    """math-verify's own timeouts use SIGALRM (main thread only) and turn a timeout into a silent
    0; ours are off, so the reward runs in any thread (with them on, math-verify raises there)
    and the host's timeout is the only guard."""
    handler = signal.getsignal(signal.SIGALRM)
    results = []
    thread = threading.Thread(target=lambda: results.append(
        Accuracy().score(r"\boxed{\cos\frac{\pi}{3}}", answer=r"\frac{1}{2}")))
    thread.start()
    thread.join(60)
    assert results and results[0].value == 1.0 and results[0].details["path"] == "math-verify"
    assert signal.getsignal(signal.SIGALRM) is handler


# -- extraction ------------------------------------------------------------------------------
def test_extraction_order_tag_then_boxed_then_phrase_then_last_expression():
    text = r"The answer is 3. Then \boxed{4}. <answer>5</answer> Finally 6."
    assert (find_answer(text).text, find_answer(text).source) == ("5", "answer-tag")
    text = text.replace("<answer>5</answer>", "")
    assert (find_answer(text).text, find_answer(text).source) == ("4", "boxed")
    text = text.replace(r"\boxed{4}", "")
    assert (find_answer(text).text, find_answer(text).source) == ("3", "answer-phrase")
    assert (find_answer("So we get 6 apples.").text, find_answer("So we get 6 apples.").source) == ("6", "last-expression")
    assert find_answer("We get $x = 5$. Now we check the other", fallback=True) is None  # cut off mid-reasoning
    assert find_answer("So we get 6 apples.", fallback=False) is None


@pytest.mark.parametrize("hostile", [
    r"\boxed{" * 150_000,  # unbalanced, a million characters
    "$" * 1_000_000,
    r"\[" * 300_000 + "1",
    "answer is " * 100_000,
    "{" * 500_000 + "}" * 500_000 + r"\boxed{1}",
])
def test_extraction_is_linear_on_megabytes_of_hostile_text(hostile):
    start = time.perf_counter()
    find_answer(hostile)
    assert time.perf_counter() - start < 2.0


# -- exact-match and rouge -------------------------------------------------------------------
def test_exact_match_normalization_params():
    assert exact_match("<answer>New  York!</answer>", answer="new york").value == 1.0
    assert exact_match("<answer>New  York!</answer>", answer="new york", ignore_punctuation=False).value == 0.0
    assert exact_match("<answer>New York</answer>", answer="NewYork", whitespace="remove").value == 1.0
    assert exact_match("<answer>Paris</answer>", answer="paris", ignore_case=False).value == 0.0
    assert exact_match("<answer>-3.5</answer>", answer="35").value == 0.0  # sign and point survive


def test_rouge_lcs_is_the_dynamic_programme():
    rng = random.Random(3)

    def table(a, b):
        rows = [[0] * (len(b) + 1) for _ in range(len(a) + 1)]
        for i, x in enumerate(a):
            for j, y in enumerate(b):
                rows[i + 1][j + 1] = rows[i][j] + 1 if x == y else max(rows[i][j + 1], rows[i + 1][j])
        return rows[-1][-1]

    for _ in range(300):
        a = [rng.choice("abcd") for _ in range(rng.randint(0, 25))]
        b = [rng.choice("abcde") for _ in range(rng.randint(0, 25))]
        assert lcs_length(a, b) == table(a, b)


def test_rouge_measures_and_long_inputs():
    assert rouge_l("the cat", "the cat sat on the mat") == pytest.approx((1.0, 1 / 3, 0.5))
    assert rouge("the cat", answer="the cat sat on the mat", measure="recall").value == pytest.approx(1 / 3)
    words = " ".join(f"w{i % 500}" for i in range(20_000))
    start = time.perf_counter()
    assert rouge(words, answer=words).value == 1.0
    assert time.perf_counter() - start < 2.0


# -- through the host ------------------------------------------------------------------------
def test_load_rewards_scores_trl_style_chat_batches_with_a_solution_column():
    (reward,) = grpo_host.load_rewards([{"name": "accuracy", "params": {"answer_field": "solution"}}], workers=1)
    try:
        completions = [[{"role": "assistant", "content": text}] for text in
                       [r"\boxed{6\sqrt{2}}", r"\boxed{6}", "<answer>0.5</answer>", "I give up"]]
        solutions = [r"6\sqrt{2}", r"6\sqrt{2}", r"$\frac{1}{2}$", "7"]
        assert reward(prompts=["q"] * 4, completions=completions, solution=solutions) == [1.0, 0.0, 1.0, 0.0]
    finally:
        reward.reward_set.close()


def test_try_reward_explain_shows_what_was_compared():
    result = run_cli("try-reward", "accuracy", "--json", "--workers", "0", "--set", "accuracy.answer_field=solution",
                     "--completion", r"so \boxed{\dfrac{3}{4}}", "--column", "solution=0.75")
    assert result.returncode == 0, result.stderr
    score = json.loads(result.stdout)["rewards"]["accuracy"]
    assert score["score"] == 1.0
    assert {k: score["details"][k] for k in ("extracted", "gold", "path", "source")} == {
        "extracted": r"\dfrac{3}{4}", "gold": "0.75", "path": "fast", "source": "boxed"}
