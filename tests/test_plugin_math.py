"""The math plugin (math-equiv, math-steps), beyond its golden cases.

Golden files pin scores case by case; these tests pin what a case cannot show: the documented
order in which the final answer is found, that the reference is parsed once per group, that
parse_expr (which evaluates generated Python) never runs what a completion smuggles in, that
hostile expressions cost little and end as a score, `error` or `timeout` through the runtime,
that broken steps lower math-steps, and that the plugin imports no sympy until a reward is built.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

import grpo_host
from grpo_host.plugins.manager import get_plugin_manager
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples

pytest.importorskip("grpo_reward_math", reason="install plugins/grpo-reward-math (pip install -e)")

from grpo_reward_math.extract import final_answer  # noqa: E402
from grpo_reward_math.rewards import MathEquiv, MathSteps, parsed_reference  # noqa: E402


def run(name: str, completions: list, params: dict | None = None, workers: int = 0, **columns):
    bound = bind_reward(get_plugin_manager().get_reward(name), params or {})
    with RewardRuntime([bound], workers=workers) as runtime:
        return runtime.score(prepare_samples(completions, columns))[bound.name]


# -- finding the final answer ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("completion", "expected", "source"),
    [
        ("\\boxed{1} then $2$ <answer>3</answer>", "3", "answer-tag"),
        ("<answer>so it is \\boxed{4}</answer>", "4", "answer-tag"),
        ("$2$ and \\boxed{\\frac{1}{2}} and $3$", "\\frac{1}{2}", "boxed"),
        ("first $x=1$, finally $x = 2$.", "x = 2", "math-span"),
        ("Adding them up,\nthe total is 2x+2.", "2x+2", "last-line"),
        ("The final answer is: 1,234.", "1,234", "last-line"),
        ("<answer></answer>", None, "empty answer tag"),
        ("I have no idea", None, "no final expression found"),
    ],
)
def test_final_answer_is_found_in_the_documented_order(completion, expected, source):
    assert final_answer(completion) == (expected, source)


def test_details_say_what_was_compared():
    result = MathEquiv().score("so \\boxed{\\frac{2}{4}}", answer="0.5")
    assert result.value == 1.0
    assert result.details["extracted"] == "\\frac{2}{4}" and result.details["source"] == "boxed"
    assert result.details["reference"] == "0.500000000000000" and result.details["method"]


def test_reference_is_parsed_once_per_group():
    parsed_reference.cache_clear()
    reward = MathEquiv()
    group = [f"\\boxed{{{k}/2}}" for k in range(8)]
    scores = [reward.score(c, answer="\\frac{3}{2}").value for c in group]
    assert scores == [0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]
    info = parsed_reference.cache_info()
    assert (info.misses, info.hits) == (1, 7)


def test_answer_field_param_and_a_missing_column():
    rows = run("math-equiv", ["\\boxed{6}"], {"answer_field": "gold"}, gold=["3!"])
    assert rows[0].outcome == "ok" and rows[0].score == 1.0
    rows = run("math-equiv", ["\\boxed{6}"], {}, gold=["3!"])
    assert rows[0].outcome == "error" and "set the param answer_field" in rows[0].details["error"]
    rows = run("math-equiv", ["\\boxed{6}"], {"tolerance": -1}, answer=["6"])
    assert rows[0].outcome == "error" and "tolerance must be >= 0" in rows[0].details["error"]


def test_prompt_copy_is_not_an_answer_unless_it_is_the_reference():
    reward = MathEquiv()
    assert reward.score("<answer>6*7</answer>", answer="42", prompt="What is 6*7?").value == 0.0
    chat = [{"role": "user", "content": "Simplify $2(x+1)$."}]
    assert reward.score("\\boxed{2(x+1)}", answer="2x+2", prompt=chat).value == 0.0
    assert reward.score("\\boxed{2x+2}", answer="2x+2", prompt=chat).value == 1.0
    assert reward.score("\\boxed{42}", answer="42", prompt="Is it 42 or 43?").value == 1.0
    off = MathEquiv(reject_prompt_copy=False)
    assert off.score("<answer>6*7</answer>", answer="42", prompt="What is 6*7?").value == 1.0


# -- hostile input ----------------------------------------------------------------------------
INJECTIONS = [
    "__import__('os').system('touch {marker}')",
    "open('{marker}', 'w')",
    "().__class__.__base__.__subclasses__()",
    "Symbol.__init__.__globals__",
    "lambda: open('{marker}', 'w')",
    "exec(chr(112))",
    "eval(1)",
    "x if open('{marker}','w') else 1",
    "[open('{marker}','w') for x in (1,)]",
    "\\text{{__import__}}('os')",
]


@pytest.mark.parametrize("payload", INJECTIONS)
def test_parse_expr_never_runs_smuggled_code(payload, tmp_path):
    from grpo_reward_math.parse import parse_expression, parse_math

    marker = tmp_path / "pwned"
    text = payload.format(marker=marker)
    for parsed in (parse_expression(text), parse_math(text)):
        assert parsed is None or "sympy" in type(getattr(parsed, "value", parsed)).__module__
    assert MathEquiv().score(f"\\boxed{{{text}}}", answer="0").value == 0.0
    assert not marker.exists()


HOSTILE = [
    "\\boxed{9^{9^{9^{9^{9}}}}}",
    "\\boxed{2**2**2**2**2**2**2**2}",
    "\\boxed{(10^{100})!}",
    "\\boxed{\\binom{10^{9}}{5 \\cdot 10^{8}}}",
    "\\boxed{e^{e^{e^{e^{100}}}}}",
    "\\boxed{(x+y+z)^{100000}}",
    "\\boxed{1e999999999}",
    "\\boxed{" + "(" * 500 + "1" + ")" * 500 + "}",
    "\\boxed{" + "\\sqrt{" * 300 + "2" + "}" * 300 + "}",
    "\\boxed{" + "9" * 1_000_000 + "}",
    "\\boxed{" * 200_000,
    "<answer>" * 200_000,
    "1+" * 500_000 + "1",
    "<think>" + "2^{2^{2^{2^{2^{2}}}}} = 1, " * 5_000 + "</think>",
]


def test_hostile_expressions_are_refused_cheaply_in_process():
    equiv, steps = MathEquiv(), MathSteps()
    for text in HOSTILE:
        start = time.perf_counter()
        assert equiv.score(text, answer="5").value == 0.0
        steps.score(text)
        assert time.perf_counter() - start < 3.0, text[:40]


def test_hostile_batch_through_the_runtime_ends_as_outcomes_within_its_budget():
    completions = HOSTILE + ["\\boxed{5}"]
    start = time.monotonic()
    rows = run("math-equiv", completions, {"timeout": 5.0}, workers=1, answer=["5"] * len(completions))
    assert time.monotonic() - start < 5.0 * len(completions)
    assert all(r.outcome in ("ok", "error", "timeout") for r in rows)
    assert rows[-1].outcome == "ok" and rows[-1].score == 1.0
    rows = run("math-steps", completions, {"timeout": 5.0}, workers=1)
    assert all(r.outcome in ("ok", "not_applicable", "error", "timeout") for r in rows)


# -- the parser: latex2sympy2_extended under math-equiv's own readings -----------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2**10", "1024"),
        ("2^3^2", "512"),  # right-associative, as Python and plain text read it, not (2^3)^2
        ("2**3**2", "512"),
        ("x^-1", "1/x"),
        ("1e5", "100000.000000000"),  # a float, as Python reads it
        ("sqrt(8)", "2*sqrt(2)"),
        ("\\sqrt(x+1)", "sqrt(x + 1)"),
        ("sin x", "sin(x)"),
        ("\\log e^{2}", "2"),  # \log is the natural log here; latex2sympy alone reads base 10
        ("\\lg 1000", "3"),
        ("\\frac14", "1/4"),
        ("4\\frac{2}{3}", "14/3"),
        ("X + x", "X + x"),  # case is kept
        ("\\binom{10}{3}", "120"),
    ],
)
def test_parser_keeps_math_equivs_readings(text, expected):
    from grpo_reward_math.parse import parse_expression

    assert str(parse_expression(text)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "\\int_0^1 x dx",  # evaluating it would run sympy's integrator
        "\\sum_{i=1}^{10^{9}} i",
        "\\lim_{x \\to 0} x",
        "\\begin{pmatrix}1\\\\2\\end{pmatrix}",
        "\\binom{1000000}{500000}",  # latex2sympy would compute it while parsing
        "10**10**10",
        "x" + "+x" * 400,  # over MAX_CHARS
    ],
)
def test_parser_refuses_what_it_must_not_evaluate(text):
    from grpo_reward_math.parse import parse_expression

    start = time.perf_counter()
    assert parse_expression(text) is None
    assert time.perf_counter() - start < 3.0


def test_longest_accepted_expression_costs_under_the_reward_budget():
    """The worst 600-character pattern for the ANTLR parser (bench/math_parse.py) still parses
    well inside math-equiv's 5 s budget, and one character more is refused outright."""
    from grpo_reward_math.parse import MAX_CHARS, parse_expression

    text = "+".join(["x^{2}"] * 100)
    assert len(text) <= MAX_CHARS
    parse_expression.cache_clear()
    start = time.perf_counter()
    assert str(parse_expression(text)) == "100*x**2"
    assert time.perf_counter() - start < 4.0
    assert parse_expression(text + " " * (MAX_CHARS - len(text) + 1)) is None


# -- math-steps -------------------------------------------------------------------------------
def test_broken_steps_score_lower_than_sound_ones_with_the_same_answer():
    sound = "<think>3 * 4 = 12, 12 + 5 = 17, 17 * 2 = 34</think><answer>34</answer>"
    broken = "<think>3 * 4 = 13, 12 + 5 = 17, 17 * 2 = 34</think><answer>34</answer>"
    rows = run("math-steps", [sound, broken])
    assert rows[0].score == 1.0
    assert rows[1].score == pytest.approx(2 / 3) and rows[1].details["failed"] == ["3 * 4 = 13"]
    equiv = run("math-equiv", [sound, broken], answer=["34", "34"])
    assert [r.score for r in equiv] == [1.0, 1.0], "math-equiv alone cannot tell them apart"


def test_unparsable_steps_are_skipped_not_wrong():
    result = MathSteps().score("<think>apples = oranges, \\foo{3} = 3, 2 + 2 = 4</think>")
    assert result.value == 1.0 and result.details["checked"] == 1 and result.details["skipped"] == 1


# -- the distribution -------------------------------------------------------------------------
def test_entry_point_module_imports_no_sympy():
    code = "import sys, grpo_reward_math; print(sorted(m for m in ('sympy', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_trl_form_scores_both_rewards():
    equiv, steps = grpo_host.load_rewards(["math-equiv", "math-steps"], workers=0)
    try:
        completions = ["<think>2 + 2 = 4</think><answer>4</answer>", "<think>2 + 2 = 5</think><answer>5</answer>"]
        assert equiv(prompts=["2+2?"] * 2, completions=completions, answer=["4", "4"]) == [1.0, 0.0]
        assert steps(prompts=["2+2?"] * 2, completions=completions, answer=["4", "4"]) == [1.0, 0.0]
    finally:
        equiv.reward_set.close()
