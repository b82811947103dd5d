"""Finding ``lhs = rhs`` steps in reasoning text and checking each one with sympy.

A clause (text between line breaks, ``;``, ``, `` and sentence ends) is cut at its ``=`` signs;
each side keeps only its math tokens, so "so 3 * 4 = 12 apples" yields the step ``3 * 4 = 12``.
``a = b = c`` is a chain of two steps. How a step is judged:

- no variables: an arithmetic fact; it holds when both sides agree (exact numbers exactly,
  others within the tolerance, and a decimal written with k places may be rounded to k places:
  ``22/7 = 3.14`` holds, ``7/2 = 3`` does not);
- with variables, both sides the same expression: an identity that holds;
- with variables, in a chain: each link is a rewrite and must be an identity (a first link
  like ``f(x) = ...`` or ``y = ...`` is a definition and is skipped);
- with variables, two-sided, not an identity: an equation. In one variable, it must be
  consistent with the previous equation in that variable (each of its solutions solves the
  previous one: ``2x = 10`` then ``x = 4`` fails, ``x^2 = 4`` then ``x = 2`` holds); the first
  equation of a derivation is its premise and is skipped, as is anything in two variables.

Steps whose sides do not parse are skipped, never counted as wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import sympy

from grpo_reward_math.compare import close, expr_equal, solutions
from grpo_reward_math.extract import (
    STEP_WORDS,
    is_prose_token,
    math_prefix,
    math_suffix,
    strip_end_punctuation,
)
from grpo_reward_math.parse import MAX_CHARS, parse_expression


@dataclass
class Step:
    lhs: str
    rhs: str
    in_chain: bool = False  # shares a side with a neighbouring step: a = b = c
    first_link: bool = True


@dataclass
class StepReport:
    checked: int = 0
    held: int = 0
    skipped: int = 0
    failed: list[str] = field(default_factory=list)

    @property
    def share(self) -> float | None:
        return self.held / self.checked if self.checked else None


_ENVIRONMENT = re.compile(r"\\(?:begin|end)\{[A-Za-z*]+\}")
_CLAUSE = re.compile(r"\n|\\\\|;|,\s|\.\s|\.$|:\s|\\quad|\\qquad|\\text\{\s*(?:and|so|then|thus)\s*\}")
_EQ = re.compile(r"(?<![<>!=:\\])=(?![=>])")
_NOT_EQUAL = re.compile(r"\\approx|≈|\\sim|\\neq?(?![A-Za-z])|≠|<|>|\\le|\\ge|≤|≥|\\Rightarrow|\\implies|\\to")
_THOUSANDS = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+)(?![\d,])")
_DECIMAL = re.compile(r"\s*-?\d*\.(\d+)\s*")


def find_steps(text: str, max_steps: int = 64) -> list[Step]:
    """The ``lhs = rhs`` steps in ``text``, in order (at most ``max_steps``)."""
    text = _ENVIRONMENT.sub("\n", text).replace("&", " ")
    text = re.sub(r"\$\$|\$|\\\[|\\\]|\\\(|\\\)", " ", text)
    text = _THOUSANDS.sub(lambda m: m.group(1).replace(",", ""), text)
    steps: list[Step] = []
    for clause in _CLAUSE.split(text):
        if "=" not in clause:
            continue
        sides = _EQ.split(clause)
        if len(sides) < 2:
            continue
        last = len(sides) - 1
        whole = [k not in (0, last) and _all_math(sides[k]) for k in range(len(sides))]
        for k in range(last):
            lhs = sides[k] if whole[k] else math_suffix(sides[k], STEP_WORDS)
            rhs = sides[k + 1] if whole[k + 1] else math_prefix(sides[k + 1], STEP_WORDS)
            lhs = _NOT_EQUAL.split(lhs)[-1].strip()
            rhs = strip_end_punctuation(_NOT_EQUAL.split(rhs)[0])
            if not lhs or not rhs:
                continue
            steps.append(Step(lhs, rhs, in_chain=whole[k] or whole[k + 1], first_link=not whole[k]))
            if len(steps) >= max_steps:
                return steps
    return steps


def _all_math(side: str) -> bool:
    tokens = side.split()
    return bool(tokens) and not any(is_prose_token(t, STEP_WORDS) for t in tokens)


def check_steps(steps: list[Step], tol: float) -> StepReport:
    report = StepReport()
    previous: tuple[Any, Any, Any] | None = None  # (lhs, rhs, variable) of the last equation

    def count(step: Step, holds: bool) -> None:
        report.checked += 1
        if holds:
            report.held += 1
        elif len(report.failed) < 8:
            report.failed.append(f"{step.lhs} = {step.rhs}")

    for step in steps:
        if len(step.lhs) > MAX_CHARS or len(step.rhs) > MAX_CHARS:
            report.skipped += 1
            continue
        a, b = parse_expression(step.lhs), parse_expression(step.rhs)
        if a is None or b is None:
            report.skipped += 1
            continue
        if _squash(step.lhs) == _squash(step.rhs):
            report.skipped += 1  # "12 = 12", "x = x": restating is not a step
            continue
        symbols = a.free_symbols | b.free_symbols
        if not symbols:
            holds = _arithmetic_holds(a, b, step, tol)
            if holds is None:
                report.skipped += 1
            else:
                count(step, holds)
            continue
        if expr_equal(a, b, tol)[0]:
            count(step, True)
            continue
        if step.in_chain:
            if step.first_link and _looks_defined(step.lhs, a):
                report.skipped += 1
            else:
                count(step, False)
            continue
        if len(symbols) != 1:
            previous = None
            report.skipped += 1
            continue
        (var,) = symbols
        if previous is not None and previous[2] == var:
            roots = solutions(a - b, var)
            if roots:
                count(step, all(_satisfies(previous, var, r, tol) for r in roots))
                previous = (a, b, var)
                continue
        previous = (a, b, var)
        report.skipped += 1
    return report


def _squash(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _looks_defined(text: str, parsed: Any) -> bool:
    """``y`` or ``f(x)`` on the left of a chain: a name being defined, not a claim."""
    return isinstance(parsed, sympy.Symbol) or bool(re.fullmatch(r"\s*[A-Za-z]\s*\([^()]*\)\s*", text))


def _satisfies(previous: tuple, var: Any, root: Any, tol: float) -> bool:
    lhs, rhs, _ = previous
    try:
        lv = complex(lhs.evalf(30, subs={var: root}))
        rv = complex(rhs.evalf(30, subs={var: root}))
    except (TypeError, ValueError, ZeroDivisionError):
        return False
    return close(lv, rv, max(tol, 1e-9))


def _arithmetic_holds(a: Any, b: Any, step: Step, tol: float) -> bool | None:
    if a.is_Rational and b.is_Rational:
        return bool(a == b)
    try:
        va, vb = complex(a.evalf(30)), complex(b.evalf(30))
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    if va != va or vb != vb or abs(va) == float("inf") or abs(vb) == float("inf"):
        return None
    allowance = max(_rounding(step.lhs), _rounding(step.rhs))
    return abs(va - vb) <= max(tol * max(1.0, abs(vb)), allowance)


def _rounding(text: str) -> float:
    """Half a unit in the last place of a decimal literal: 3.14 may stand for 3.1428..."""
    match = _DECIMAL.fullmatch(text)
    return 0.5 * 10.0 ** -len(match.group(1)) * (1 + 1e-9) if match else 0.0
