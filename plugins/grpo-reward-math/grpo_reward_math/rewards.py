"""The rewards: ``math-equiv`` (is the final expression equivalent to the reference?) and
``math-steps`` (what share of the written ``lhs = rhs`` steps hold?).

Both are classes so that sympy is imported when the reward is built (under the runtime's
build budget), not in the first sample's time budget, and this module stays cheap to import.
"""

from __future__ import annotations

import re
from typing import Any

import grpo_host
from grpo_host import Score
from grpo_host.answers import prompt_texts, tag_contents
from grpo_reward_math.extract import final_answer, reference_text

_SHOWN = 200  # characters of an extracted answer kept in the details


def warm_up_parser(parse: Any) -> None:
    """The first parse in a process builds the LaTeX parser's tables (~0.3 s): pay it while the
    reward is built, under the build budget, not in the first sample's time budget."""
    parse.parse_expression("\\frac{x^{2}+1}{2}")


@grpo_host.reference_cache
def parsed_reference(reference: str) -> Any:
    """The reference column parsed once per group (GRPO scores a group against one reference)."""
    from grpo_reward_math.parse import parse_math

    return parse_math(reference_text(reference))


@grpo_host.reward(name="math-equiv", timeout=5.0, score_range=(0.0, 1.0))
class MathEquiv:
    """1.0 when the completion's final expression is mathematically equivalent to the reference.

    The final expression is taken from the last answer tag, else the last ``\\boxed{}``, else the
    last LaTeX math span, else the math at the end of the last line. Equivalence is symbolic and
    numeric: ``2(x+1)`` and ``2x+2``; equations by solution set (``y=2x+1`` and ``2x-y+1=0``);
    intervals, unions and sets (``x > 3`` and ``(3, \\infty)``); numbers within ``tolerance``
    (``|a - b| <= tolerance * max(1, |b|)``; two exact numbers must be equal). 0.0 for a wrong,
    missing or unparsable answer, and for an expression copied from the prompt (``6*7`` for
    "What is 6*7?"; param ``reject_prompt_copy``); None when the reference cannot be parsed.

    Example: completion ``"... so \\boxed{\\frac{2}{4}}"``, answer ``"0.5"`` -> 1.0.
    """

    def __init__(
        self,
        answer_field: str = "answer",
        tolerance: float = 1e-6,
        answer_tag: str = "answer",
        reject_prompt_copy: bool = True,
    ):
        if not tolerance >= 0:
            raise ValueError(f"math-equiv: tolerance must be >= 0, not {tolerance}")
        from grpo_reward_math import compare, parse

        warm_up_parser(parse)
        self.answer_field, self.tolerance, self.answer_tag = answer_field, float(tolerance), answer_tag
        self.reject_prompt_copy = reject_prompt_copy
        self._equivalent = compare.equivalent

    def score(self, completion: str, **columns: Any) -> Score:
        from grpo_reward_math.parse import parse_math

        if self.answer_field not in columns:
            raise KeyError(
                f"math-equiv reads the reference from column {self.answer_field!r}, which this sample "
                f"lacks (it has: {', '.join(sorted(columns)) or 'none'}); set the param answer_field"
            )
        raw_reference = columns[self.answer_field]
        if raw_reference is None or not str(raw_reference).strip():
            return Score(None, reason="empty reference")
        reference = parsed_reference(str(raw_reference))
        if reference is None:
            return Score(None, reason="reference cannot be parsed", reference=str(raw_reference))
        extracted, source = final_answer(completion, self.answer_tag)
        shown = {"extracted": extracted if extracted is None else extracted[:_SHOWN], "reference": str(reference)}
        if extracted is None:
            return Score(0.0, **shown, method=source)
        if self.reject_prompt_copy and copied_from_prompt(extracted, columns.get("prompt"), str(raw_reference)):
            return Score(0.0, **shown, method="copied from the prompt", source=source)
        candidate = parse_math(extracted)
        if candidate is None:
            return Score(0.0, **shown, method="unparsable answer", source=source)
        same, method = self._equivalent(candidate, reference, self.tolerance)
        return Score(1.0 if same else 0.0, **shown, method=method, source=source)


def _squash(text: str) -> str:
    text = re.sub(r"\\(?:cdot|times)(?![A-Za-z])", "*", text)
    return re.sub(r"\s+|\$|\\left|\\right|\\[,;!]", "", text)


def copied_from_prompt(answer: str, prompt: Any, reference: str) -> bool:
    """An expression (not a plain number) that stands in the prompt: the question, not an answer.

    "What is 6*7?" answered ``6*7`` is equal to 42 and says nothing; "Simplify 2(x+1)"
    answered ``2(x+1)`` neither. A plain number, or the reference itself, is never a copy.
    """
    if not prompt:
        return False
    prompt = " ".join(prompt_texts(prompt, min_chars=1))  # a string, or chat messages' text
    squashed = _squash(answer)
    if not re.search(r"[-+*/^(!\\=]", squashed.lstrip("-")) or squashed == _squash(reference_text(reference)):
        return False
    return squashed in _squash(prompt)


_STEPS_ONLY = "math-steps scores the reasoning's steps, never the final answer: pair it with math-equiv or accuracy"


@grpo_host.reward(
    name="math-steps",
    timeout=10.0,
    score_range=(0.0, 1.0),
    intended_probes={
        "answer-repeated": _STEPS_ONLY,
        "answer-sprayed": _STEPS_ONLY,
        "every-candidate": _STEPS_ONLY,
        "prompt-copied": _STEPS_ONLY,
    },
)
class MathSteps:
    """The share of ``lhs = rhs`` steps in the reasoning that hold, checked with sympy.

    Looks inside the reasoning tag (default ``<think>``) when the completion has one, else at
    the whole completion. Arithmetic steps must be right (a decimal may be rounded to the places
    it shows); steps with variables must be identities, or, for equations being solved in one
    variable, consistent with the previous equation. Unparsable steps are skipped, never
    counted wrong; None when there is no checkable step.

    Example: ``"<think>3*4 = 12, 12+5 = 18</think>"`` -> 0.5.
    """

    def __init__(self, reasoning_tag: str = "think", tolerance: float = 1e-6, max_steps: int = 64):
        if not tolerance >= 0:
            raise ValueError(f"math-steps: tolerance must be >= 0, not {tolerance}")
        if max_steps < 1:
            raise ValueError(f"math-steps: max_steps must be at least 1, not {max_steps}")
        from grpo_reward_math import parse, steps

        warm_up_parser(parse)
        self.reasoning_tag, self.tolerance, self.max_steps = reasoning_tag, float(tolerance), int(max_steps)
        self._steps = steps

    def score(self, completion: str, **columns: Any) -> Score:
        blocks = tag_contents(completion or "", self.reasoning_tag, ignore_case=True)
        region = "\n".join(blocks) if blocks else (completion or "")
        found = self._steps.find_steps(region, self.max_steps)
        report = self._steps.check_steps(found, self.tolerance)
        details = {"checked": report.checked, "held": report.held, "skipped": report.skipped, "failed": report.failed}
        if report.checked == 0:
            return Score(None, reason="no checkable step", **details)
        return Score(report.share, **details)
