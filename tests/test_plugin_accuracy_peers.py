"""`accuracy` judged by peer verifiers' own test suites, and by math-verify beside it.

Two parts. The first always runs: one case per class of miss that ``accuracy`` once had
(several answers, number formats, prose, relations, precision, word golds, reasoning blocks),
each scored by ``accuracy`` and by math-verify's own reading, with the verdict asserted for
``accuracy`` and the cases where math-verify is right asserted to be right for us too. The
second runs the cases extracted from huggingface/Math-Verify's, trl's and open-r1's test
suites (``tests/data/peer_cases.json``, built by ``tests/data/make_peer_cases.py`` from git
snapshots of those repositories; the file names their commits) and asserts that ``accuracy``
agrees with the expected verdicts at least as often as math-verify does, and that no case
where math-verify is right has ``accuracy`` wrong, outside the few listed below with the reason.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import pytest

pytest.importorskip("grpo_reward_accuracy", reason="install plugins/grpo-reward-accuracy (pip install -e)")

from grpo_reward_accuracy import Accuracy  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CASES = ROOT / "tests" / "data" / "peer_cases.json"


def _bench():
    spec = importlib.util.spec_from_file_location(
        "accuracy_peer_agreement", ROOT / "bench" / "accuracy_peer_agreement.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def score():
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    return Accuracy().score


# -- one case per class, always run ---------------------------------------------------------
CLASSES = [  # (class, gold, completion, expected accuracy verdict)
    ("several boxes vs a set", r"\{1, 3\}", r"so $x = \boxed{1}$ and $x = \boxed{3}$.", 1),
    ("several boxes vs pairs", "(2,1),(1,2)", r"The pairs are \boxed{(1, 2)}, \boxed{(2, 1)}", 1),
    ("gold of several boxes", r"\boxed{1}, \boxed{2}", r"\boxed{1,2}", 1),
    ("a system, one box each", "k = 45, n = 2", r"We get $\boxed{k = 45}$ and $\boxed{n = 2}$.", 1),
    ("several boxes, one wrong", r"\{1, 3\}", r"so $\boxed{1}$ and $\boxed{4}$.", 0),
    ("space thousands", "1000", "The total is 1 000", 1),
    ("comma thousands and decimal", "1000.5", r"\boxed{1,000.5}", 1),
    ("currency", "1000.99", "It costs $1,000.99", 1),
    ("decimal comma", "0.5", "The probability is 0,5", 1),
    ("leading point", "0.4", r"\boxed{.4}", 1),
    ("slash fraction", r"\frac{10}{9}", r"\boxed{10/9}", 1),
    ("prose after Final Answer", "34", "Final Answer: The largest $n$ is 34.", 1),
    ("relation vs interval", r"-2 \le x \le 7", r"\boxed{x \in [-2,7]}", 1),
    ("interval decimals in precision", r"(\frac{3}{5}, \frac{8}{3}]", r"\boxed{(0.6, 2.666667]}", 1),
    ("interval decimals past precision", r"(\frac{3}{5}, \frac{8}{3}]", r"\boxed{(0.6, 2.6667]}", 0),
    (
        "matrix decimals",
        r"\begin{pmatrix} \frac{1}{2} \\ \frac{1}{4} \end{pmatrix}",
        r"\boxed{\begin{pmatrix} 0.5 \\ 0.25 \end{pmatrix}}",
        1,
    ),
    ("word gold, anagram", "Monday", r"\boxed{dynamo}", None),
    ("word gold, number words", "forty two", r"\boxed{42}", None),
    ("answer only in the reasoning", "42", r"<think> My answer is \boxed{42} </think> Some other text.", 0),
    ("last box wins", "4", r"First \boxed{3}. Wait, I made an error: the answer is \boxed{4}.", 1),
    (
        "first box is not the answer",
        "3",
        r"First \boxed{3}. Wait, I made an error: the answer is \boxed{4}.",
        0,
    ),
    ("spray in one box", "2", r"\boxed{1, 2, 3}", 0),
]


@pytest.mark.parametrize(("name", "gold", "completion", "expected"), CLASSES, ids=[c[0] for c in CLASSES])
def test_each_class_of_miss_is_scored_right(score, name, gold, completion, expected):
    got = score(completion, answer=gold)
    assert got.value == expected, (
        f"{name}: gold {gold!r}, completion {completion!r}: {got.value} ({got.details})"
    )


def test_where_math_verify_reads_a_class_right_accuracy_does_too(score):
    bench = _bench()
    for name, gold, completion, expected in CLASSES:
        if bench.verdict_math_verify(gold, completion) == expected:
            assert score(completion, answer=gold).value == expected, name


def test_the_reasoning_block_counts_only_when_asked():
    inside = r"<think> My answer is \boxed{42} </think> Some other text."
    assert Accuracy(answer_in_reasoning=True).score(inside, answer="42").value == 1.0
    assert Accuracy().score(inside, answer="42").value == 0.0
    after = r"<think> maybe \boxed{41} </think> So \boxed{42}"
    assert Accuracy().score(after, answer="42").value == 1.0
    assert Accuracy().score(after, answer="41").value == 0.0  # the draft in the reasoning is not the answer
    lone = r"the template opened it </think> \boxed{42}"
    assert Accuracy().score(lone, answer="42").value == 1.0
    custom = r"<reasoning> \boxed{42} </reasoning> nothing"
    assert Accuracy(reasoning_tag="reasoning").score(custom, answer="42").value == 0.0


def test_word_golds_say_why_they_are_not_applicable(score):
    got = score(r"\boxed{dynamo}", answer="Monday")
    assert got.value is None and "words" in got.details["reason"]
    # Math with letters is still math.
    assert score(r"\boxed{x + y}", answer="y + x").value == 1.0
    assert score(r"\boxed{\sin x}", answer=r"\sin x").value == 1.0
    assert score(r"\boxed{B}", answer=r"\text{(B)}").value == 1.0


def test_hostile_second_look_stays_bounded(score):
    """The math-verify second look reads only the end of a completion: a megabyte of boxes
    before the answer costs what the last few thousand characters cost."""
    import time

    text = r"\boxed{1} " * 100_000 + r"so $\boxed{1}$ and $\boxed{3}$."
    start = time.perf_counter()
    assert score(text, answer=r"\{1, 3\}").value == 1.0
    assert time.perf_counter() - start < 30


# -- the peer suites -----------------------------------------------------------------------
# Where math-verify (with its defaults) gives the expected verdict and `accuracy` does not, on
# purpose. Word golds are not applicable by design (`exact-match` is the reward for them).
WORD_GOLD = "a gold of words is not applicable (None): read as math it is a product of letters"
ACCEPTED = {
    (
        r"$1 - \frac{1}{\mathrm{e}}$",
        r"$1 + \frac{1}{\mathrm{e}}$",
    ): "1 - 1/e is not 1 + 1/e: math-verify cannot parse \\mathrm{e}, reads both as 1, and the test pins that",
}


@pytest.fixture(scope="module")
def peer_rows():
    if not CASES.exists():
        pytest.skip(
            f"{CASES.relative_to(ROOT)} is not built: run `python tests/data/make_peer_cases.py "
            "--math-verify DIR --trl DIR --open-r1 DIR` with git snapshots of those repositories"
        )
    bench = _bench()
    rows = bench.judge(bench.load_cases(CASES), with_trl=False)
    return bench, rows


@pytest.mark.slow
def test_accuracy_agrees_with_peer_suites_at_least_as_often_as_math_verify(peer_rows):
    """On the cases graded under math-verify's default settings with a math gold (the others
    expect what only a non-default setting gives, or are words): in all, and per suite without
    the ACCEPTED cases."""
    bench, rows = peer_rows
    judged = bench.subsets(rows)["default settings, math golds"]
    assert len(judged) > 150
    for suite in [None, *{r["suite"] for r in judged}]:
        subset = [r for r in judged if suite is None or r["suite"] == suite]
        if suite is not None:  # per suite, the cases whose expected verdict we dispute are left out
            subset = [r for r in subset if (r["gold"], r["prediction"]) not in ACCEPTED]
        ours = sum(r["accuracy"] == r["expected"] for r in subset)
        theirs = sum(r["math-verify"] == r["expected"] for r in subset)
        assert ours >= theirs, (
            f"{suite or 'all'}: accuracy agrees on {ours}/{len(subset)}, math-verify on {theirs}"
        )


@pytest.mark.slow
def test_no_peer_case_where_math_verify_is_right_and_accuracy_wrong(peer_rows):
    bench, rows = peer_rows
    misses = [
        (
            r["gold"],
            r["prediction"][-200:],
            r["expected"],
            r["accuracy"],
            f"{r['source']['path']}::{r['source']['test']}",
        )
        for r in rows
        if r["math-verify"] == r["expected"] != r["accuracy"]
        and (r["gold"], r["prediction"]) not in ACCEPTED
        and bench.math_gold(r)
    ]
    assert not misses, "\n".join(map(repr, misses))
    word_golds = [r for r in rows if not bench.math_gold(r)]
    assert word_golds and all(r["accuracy"] is None for r in word_golds), WORD_GOLD


SPRAYS = [  # several different answers against one value: no reading makes them right
    ("1", r"\boxed{1} and \boxed{3}"),
    ("3", r"\boxed{3}, \boxed{4}"),
    ("2", r"\boxed{1,2,3}"),
    ("2", "The answer is 1, 2, or 3."),
    ("2", "It is 1 or 2 or 3."),
    ("5", r"$\boxed{5}$ or $\boxed{6}$ or $\boxed{7}$"),
]


@pytest.mark.parametrize(("gold", "completion"), SPRAYS)
def test_sprayed_answers_score_0_even_where_math_verify_would_pick_one(score, gold, completion):
    assert score(completion, answer=gold).value == 0.0


def test_second_look_refuses_a_deeply_nested_tail(score):
    """A finished completion with no answer we can place goes to math-verify, unless its end is
    nested past max_nesting (the LaTeX parser is exponential in nesting): then it scores 0 at once."""
    import time

    hostile = "We get " + "(" * 60 + "x" + ")" * 60 + "."
    start = time.perf_counter()
    got = score(hostile, answer="5")
    assert got.value == 0.0 and "nested" in got.details["reason"]
    assert time.perf_counter() - start < 5
    # The same shape, shallow, is read by math-verify: a finished sentence whose answer only it places.
    got = score(
        "Therefore there are 12 distinct sequences that meet the three given conditions. I hope it is correct.",
        answer="12",
    )
    assert (got.value, got.details["path"]) == (1.0, "math-verify-completion")
    # Cut off mid-sentence: no second look, no credit for a number in the reasoning.
    assert score("So far $n = 12$ sequences.\n\nNow we combine this with the", answer="12").value == 0.0
