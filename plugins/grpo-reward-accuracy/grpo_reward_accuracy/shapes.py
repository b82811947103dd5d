"""Answers with a shape: letters, intervals and unions of them, sets, lists of alternatives.

math-verify parses these slowly (tens of milliseconds for an interval, more for a union), but
once their parts have exact values (``exact.value_of``) comparing them is plain. Only the cases
whose math-verify verdict is certain are decided here. The rest go to math-verify: an interval
against a set (it reads ``(1, 2)`` as either), a pair like ``(2, 1)`` (a tuple to it), unions
whose intervals touch or overlap (several spellings of one set), decimals close to each other.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from grpo_reward_accuracy.exact import Value, decide, value_of

_WRAPPED = re.compile(r"\\(?:text|textbf|mathrm|mathbf)\{(?P<inner>[^{}]*)\}")
# Not e or i: math-verify may read them as constants.
_LETTER = re.compile(r"\(?(?P<letter>[A-DF-HJ-Za-df-hj-z])\)?")
_INTERVAL = re.compile(r"(?P<left>[\[(])(?P<lo>[^,]+),(?P<hi>[^,]+)(?P<right>[\])])")
_INFINITY = {"\\infty": math.inf, "+\\infty": math.inf, "-\\infty": -math.inf}
MAX_ITEMS = 20

End = Value | float  # a float only for an infinite end


def letter(canon: str) -> str | None:
    """The answer as one letter (a choice, a variable): ``C``, ``(C)``, ``\\text{(C)}``.

    Lowercased: math-verify compares letters without case.
    """
    wrapped = _WRAPPED.fullmatch(canon)
    match = _LETTER.fullmatch(wrapped.group("inner") if wrapped else canon)
    return match.group("letter").lower() if match else None


@dataclass(frozen=True)
class Interval:
    lo: End
    hi: End
    left_closed: bool
    right_closed: bool


def _approx(end: End) -> float:
    return end if isinstance(end, float) else end.approx


def _order(lo: End, hi: End) -> str | None:
    """"<" when lo is certainly below hi, ">" when certainly above, else None."""
    a, b = _approx(lo), _approx(hi)
    if math.isnan(a) or math.isnan(b) or a == b:
        return None
    if math.isinf(a) or math.isinf(b):
        return "<" if a < b else ">"
    gap = 1e-9 * max(1.0, abs(a), abs(b))
    return "<" if a < b - gap else ">" if a > b + gap else None


def _ends(match: re.Match[str]) -> tuple[End, End] | None:
    ends = []
    for part in (match.group("lo"), match.group("hi")):
        end = _INFINITY.get(part) or value_of(part)
        if end is None:
            return None
        ends.append(end)
    return ends[0], ends[1]


def interval(canon: str) -> Interval | None:
    """``(a, b]`` and friends with a < b, ends in exact values or infinities."""
    match = _INTERVAL.fullmatch(canon)
    ends = _ends(match) if match else None
    if ends is None or _order(*ends) != "<":
        return None  # (2, 1) is a tuple to math-verify, (1, 1) a point: its call
    lo, hi = ends
    # sympy ignores the bracket at an infinite end: [-oo, 3] is (-oo, 3].
    left = match.group("left") == "[" and not isinstance(lo, float)
    right = match.group("right") == "]" and not isinstance(hi, float)
    return Interval(lo, hi, left, right)


def union(canon: str) -> list[Interval] | None:
    """``I1 \\cup I2 ...`` in its one canonical spelling: intervals in order, none touching.

    Intervals that touch or overlap could be merged, so the same set would have several
    spellings; those are left to math-verify.
    """
    parts = [interval(p) for p in canon.split("\\cup")]
    if any(p is None for p in parts):
        return None
    parts.sort(key=lambda p: _approx(p.lo))
    for a, b in zip(parts, parts[1:], strict=False):
        if _order(a.hi, b.lo) != "<":
            return None
    return parts


def reversed_pair(canon: str) -> bool:
    """``(b, a)`` with b > a: a tuple to math-verify, which no interval equals."""
    match = _INTERVAL.fullmatch(canon)
    if match is None or (match.group("left"), match.group("right")) != ("(", ")"):
        return False
    ends = _ends(match)
    return ends is not None and not any(isinstance(e, float) for e in ends) and _order(*ends) == ">"


def values(canon: str) -> list[Value] | None:
    """``\\{a, b\\}`` or a bare list ``a, b``: the exact values of its items, else None."""
    braced = canon.startswith("\\{") and canon.endswith("\\}")
    if braced:
        canon = canon[2:-2]
    parts = canon.split(",")
    if not (1 if braced else 2) <= len(parts) <= MAX_ITEMS or any(len(p) == 3 and p.isdigit() for p in parts[1:]):
        return None  # a bare single item, or maybe a thousands separator (1,000)
    items = [value_of(p) for p in parts]
    if any(v is None or v.decimal or v.exact.key is None for v in items):
        return None
    return items


def decide_structured(gold_canon: str, gold_value: Value | None, canon: str) -> bool | None:
    """True or False for intervals, unions and sets, and for several different answers against
    one gold value, when math-verify's verdict is certain; else None. (Letters: ``letter``.)"""
    if gold_value is not None:
        items = values(canon)
        if items is not None and len({v.exact.key for v in items}) >= 2:
            return False  # several different answers (1, 2 or 3) are not one value
        return None
    gold_union = union(gold_canon)
    if gold_union is not None:
        pred_union = union(canon)
        if pred_union is not None:
            return _same_union(gold_union, pred_union)
        if reversed_pair(canon):
            return False
        return None
    if gold_canon.startswith("\\{") and canon.startswith("\\{"):
        gold_items, pred_items = values(gold_canon), values(canon)
        if gold_items is not None and pred_items is not None:
            return {v.exact.key for v in gold_items} == {v.exact.key for v in pred_items}
    return None


def _same_union(gold: list[Interval], pred: list[Interval]) -> bool | None:
    if len(gold) != len(pred):
        return False
    verdicts = [_same_interval(g, p) for g, p in zip(gold, pred, strict=True)]
    if False in verdicts:
        return False
    return None if None in verdicts else True


def _same_interval(gold: Interval, pred: Interval) -> bool | None:
    if (gold.left_closed, gold.right_closed) != (pred.left_closed, pred.right_closed):
        return False
    verdicts = []
    for a, b in ((gold.lo, pred.lo), (gold.hi, pred.hi)):
        if isinstance(a, float) or isinstance(b, float):
            verdicts.append(a == b)
        else:
            verdicts.append(decide(a, b))
    if False in verdicts:
        return False
    return None if None in verdicts else True


def is_structured(canon: str) -> bool:
    """Whether the gold is a letter, an interval, a union or a set of values: math, without parsing."""
    if letter(canon) is not None or union(canon) is not None:
        return True
    return canon.startswith("\\{") and values(canon) is not None
