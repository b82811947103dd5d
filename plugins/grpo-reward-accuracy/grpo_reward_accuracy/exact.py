"""Exact comparison of answers, with no sympy: the fast paths in front of math-verify.

Most GRPO math answers are plain numbers (``42``, ``-3``, ``0.75``, ``\\frac{3}{4}``, ``1,000``)
or small expressions of them (``6\\sqrt{2}``, ``2\\pi``, ``x^2 + 1``). Reading those into exact
values (``fractions.Fraction``; ``algebra`` for roots, pi and variables) and comparing costs
microseconds, where a math-verify parse and verify costs milliseconds to a tenth of a second.
Each fast path decides only where its verdict is certain and is math-verify's own verdict
(``decide`` says how decimals are handled); anything else returns ``None`` and goes to
math-verify, so the fast paths never guess.

``canonical`` is the string form both sides are compared in before any parsing: two answers
that are the same string up to LaTeX spacing are the same answer, whatever they mean.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fractions import Fraction

from grpo_reward_accuracy.algebra import Ratio, Surd, Unsupported, evaluate

# Longer strings are never "plain numbers" worth a fast path, and int() on thousands of
# digits is slow (and refused past 4300 digits): leave them to the guarded slow path.
MAX_FAST_CHARS = 64

_SPACING = re.compile(r"\\[,;:! ]|\\(?:left|right|displaystyle|textstyle)\b")
# Whitespace goes, except after a command followed by a letter: `\pi r` must not become `\pir`.
_COMMAND_SPACE = re.compile(r"(\\[A-Za-z]+)\s+(?=[A-Za-z])")
_WHITESPACE = re.compile(r"\s+")
_FRAC_NAME = re.compile(r"\\[dt]frac\b")
_DELIMITERS = (("$$", "$$"), ("\\[", "\\]"), ("\\(", "\\)"), ("$", "$"))

# An unsigned number: digits with optional thousands groups (1,000 / 1{,}000 / 1\,000 have been
# reduced to 1,000 by `canonical`), an optional decimal part, or a bare decimal (.5). A group
# never follows a leading 0: `0,111` is a decimal comma (math-verify reads 0.111), not 111.
_NUMBER = r"(?:(?:[1-9]\d{0,2}(?:,\d{3})+|\d+)(?:\.\d+)?|\.\d+)"
_FAST = re.compile(
    rf"(?P<sign>[+-]?)(?:"
    rf"(?P<num>{_NUMBER})"
    rf"|\\frac\{{(?P<fn>-?{_NUMBER})\}}\{{(?P<fd>-?{_NUMBER})\}}"
    rf"|\\frac(?P<sn>\d)(?P<sd>\d)"  # \frac12, a common shorthand
    rf"|(?P<sl>{_NUMBER})/(?P<sld>{_NUMBER})"
    rf")"
)


@dataclass(frozen=True)
class ExactNumber:
    value: Fraction
    decimal: bool  # written with a decimal point: math-verify compares those rounded


def strip_delimiters(text: str) -> str:
    """``$x$``, ``$$x$$``, ``\\(x\\)``, ``\\[x\\]`` -> ``x`` (repeatedly), and surrounding space."""
    text = text.strip()
    changed = True
    while changed and text:
        changed = False
        for left, right in _DELIMITERS:
            if len(text) >= len(left) + len(right) and text.startswith(left) and text.endswith(right):
                inner = text[len(left) : len(text) - len(right)].strip()
                if left == "$" and "$" in inner:  # `$a$ and $b$` is two spans, not one
                    continue
                text, changed = inner, True
                break
    return text


def canonical(text: str) -> str:
    """The answer with delimiters, LaTeX spacing, sizing and a closing period taken out."""
    text = strip_delimiters(text)
    text = text.replace("{,}", ",").replace("\u2212", "-")
    text = _FRAC_NAME.sub(r"\\frac", text)
    text = text.replace("\\\\", "\1")  # a row break `\\` is no `\ ` space: keep it apart
    text = _COMMAND_SPACE.sub("\\1\0", _SPACING.sub(" ", text))
    text = _WHITESPACE.sub("", text).replace("\0", " ").replace("\1", "\\\\")
    if text.endswith(".") and not text.endswith(".."):
        text = text[:-1]  # the sentence's period: "so x is 3."
    if text.startswith("{") and text.endswith("}") and _balanced(text[1:-1]):
        text = text[1:-1]
    return text


def _balanced(text: str) -> bool:
    depth = 0
    for ch in text:
        if ch == "{":
            depth += 1
        elif ch == "}":
            depth -= 1
            if depth < 0:
                return False
    return depth == 0


def exact_number(canon: str) -> ExactNumber | None:
    """The exact value of a canonical answer in the fast grammar, else ``None``."""
    if not canon or len(canon) > MAX_FAST_CHARS:
        return None
    match = _FAST.fullmatch(canon)
    if match is None:
        return None
    groups = match.groupdict()
    try:
        if groups["num"] is not None:
            value, decimal = _decimal(groups["num"])
        elif groups["fn"] is not None:
            value, decimal = _ratio(groups["fn"], groups["fd"])
        elif groups["sn"] is not None:
            value, decimal = _ratio(groups["sn"], groups["sd"])
        else:
            value, decimal = _ratio(groups["sl"], groups["sld"])
    except ZeroDivisionError:
        return None  # 1/0: let math-verify say what it means
    if groups["sign"] == "-":
        value = -value
    return ExactNumber(value, decimal)


def _decimal(text: str) -> tuple[Fraction, bool]:
    return Fraction(text.replace(",", "")), "." in text


def _ratio(numerator: str, denominator: str) -> tuple[Fraction, bool]:
    top, top_decimal = _decimal(numerator)
    bottom, bottom_decimal = _decimal(denominator)
    return top / bottom, top_decimal or bottom_decimal


# -- values -----------------------------------------------------------------------------------
MAX_EVAL_CHARS = 160

_UNIT_SUFFIX = re.compile(r"\\(?:text|mbox|mathrm)\{(?P<unit>[^{}\d]*)\}$")
_DEGREES = re.compile(r"\^\{?\\circ\}?$")
_ASSIGNMENT = re.compile(r"(?P<var>[A-Za-z])=(?P<rhs>[^=<>]+)")


@dataclass(frozen=True)
class Value:
    """An answer's exact value, a float for closeness, and whether a decimal point was written."""

    exact: Ratio
    approx: float
    decimal: bool


def value_of(canon: str) -> Value | None:
    """The exact value of a canonical answer: a fast-grammar number, or a small expression of
    numbers, fractions, square roots, pi, single-letter variables, + - * / and integer powers.
    ``None`` for anything else. A trailing ``\\text{unit}`` or ``^\\circ`` is dropped:
    math-verify drops them too (it does not convert degrees).
    """
    unit = _UNIT_SUFFIX.search(canon)
    if unit and unit.group("unit").strip().lower() not in ("", "or", "and"):
        canon = canon[: unit.start()]
    canon = _DEGREES.sub("", canon)
    number = exact_number(canon)
    if number is not None:
        return Value(Ratio(Surd.rational(number.value)), _float(number.value), number.decimal)
    if not canon or len(canon) > MAX_EVAL_CHARS or "%" in canon or "," in canon or "=" in canon:
        return None
    try:
        exact, decimal = evaluate(canon)
        return Value(exact, exact.approx(), decimal)
    except (Unsupported, ZeroDivisionError, OverflowError, ValueError):
        return None


def equation_of(canon: str) -> tuple[str, Value] | None:
    """``y = 2x + 3`` -> ("y", value of 2x + 3), when the left side is one variable not on the right.

    math-verify compares such an assignment by its right side: against a gold that is no
    equation, and against another assignment to the same variable.
    """
    match = _ASSIGNMENT.fullmatch(canon)
    if match is None:
        return None
    value = value_of(match.group("rhs"))
    var = match.group("var").lower()
    if value is None or var in value.exact.num.variables | value.exact.den.variables:
        return None
    return var, value


def _float(value: Fraction) -> float:
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


def decide(gold: Value, pred: Value) -> bool | None:
    """True or False when exact values settle it the way math-verify would, else None.

    Equal values are equal. Unequal values written without decimals are unequal. With a
    decimal involved, values further apart than any rounding could explain are unequal; closer
    ones (math-verify accepts 0.333333 for 1/3, and compares floats at 15 digits) are left to
    math-verify.
    """
    try:
        if gold.exact.equals(pred.exact):
            return True
    except Unsupported:
        return None
    if not (gold.decimal or pred.decimal):
        return False
    if not (math.isfinite(gold.approx) and math.isfinite(pred.approx)):
        return None
    if abs(gold.approx - pred.approx) > 2e-6 * max(abs(gold.approx), abs(pred.approx), 1.0):
        return False
    return None
