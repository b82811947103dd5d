"""The math-verify path: parse and compare answers the exact fast paths cannot settle.

math-verify (with sympy under it) is imported on first use, inside the worker process, so
loading the plugin stays cheap. Its own timeouts are switched off on purpose: they use
``signal.alarm`` (main thread only) and, when they fire, math-verify swallows the timeout and
returns "no parse" or "not equal", which would turn a hung comparison into a silent 0. The host's
per-sample budget is the guard instead: a sample that runs past it has its worker killed and is
recorded as ``timeout``.

Answers are handed over wrapped in ``$...$`` so bare LaTeX (``6\\sqrt{2}``, as most data sets
write their answer column) is read as LaTeX; TRL's own reward reads such a gold as ``6``. Where
the reward's own reading of a completion may be the wrong one (several boxes, prose, unusual
number formats, relations), ``equal_completion`` lets math-verify read the completion itself,
with the extraction graders use: LaTeX with ``\\boxed{}`` first, then plain expressions.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

from grpo_host import reference_cache


@lru_cache(maxsize=1)
def _math_verify() -> Any:
    import math_verify

    # With timeouts off, math-verify warns once that we must guard the time ourselves: we do.
    for name in ("math_verify.parser", "math_verify.grader", "math_verify.utils"):
        logging.getLogger(name).setLevel(logging.ERROR)
    return math_verify


@lru_cache(maxsize=1)
def _latex_config() -> tuple[Any, ...]:
    mv = _math_verify()
    return (mv.LatexExtractionConfig(boxed_match_priority=0),)


@lru_cache(maxsize=1)
def _grading_config() -> tuple[Any, ...]:
    # math-verify's default targets, with \boxed{} first: what lighteval and open-r1 grade with.
    mv = _math_verify()
    return (mv.LatexExtractionConfig(boxed_match_priority=0), mv.ExprExtractionConfig())


def _as_latex(answer: str) -> str:
    # Inline `$...$` may not hold `$` or a line break: drop the one, flatten the other.
    return "$" + answer.replace("\\$", " ").replace("$", " ").replace("\n", " ") + "$"


def _sympy_items(parsed: list[Any]) -> list[Any]:
    """The parsed objects without math-verify's string fallbacks (what failed to parse)."""
    return [p for p in parsed if not isinstance(p, str)]


def parse_answer(answer: str) -> list[Any]:
    """A completion's extracted answer as math-verify objects ([] when it does not parse)."""
    mv = _math_verify()
    return mv.parse(_as_latex(answer), extraction_config=_latex_config(), parsing_timeout=None)


@reference_cache
def parse_gold(text: str, prose: bool) -> tuple[Any, ...] | None:
    """The gold as math-verify objects, parsed once per worker and reference; None if it is not math.

    A gold written as prose ("The answer is 5.") is read the way TRL reads golds, with
    math-verify's default extraction; anything else is read as LaTeX.
    """
    mv = _math_verify()
    if prose:
        parsed = mv.parse(text, parsing_timeout=None)
    else:
        parsed = parse_answer(text)
        if not _sympy_items(parsed):
            parsed = mv.parse(text, parsing_timeout=None)
    return tuple(parsed) if _sympy_items(parsed) else None


@reference_cache(maxsize=16384)
def equal(gold_text: str, gold_prose: bool, answer: str) -> tuple[bool, str]:
    """Whether ``answer`` matches the gold by math-verify, and what the answer parsed to.

    Cached per (gold, answer): the completions of a GRPO group often give the same answer.
    """
    gold = parse_gold(gold_text, gold_prose)
    if gold is None:
        return False, "[gold unparseable]"
    parsed = parse_answer(answer)
    if not parsed:
        return False, "[unparseable]"
    mv = _math_verify()
    verdict = mv.verify(list(gold), parsed, timeout_seconds=None)
    return bool(verdict), _short(parsed[0])


@reference_cache
def gold_readings(text: str, prose: bool, raw: str) -> tuple[Any, ...] | None:
    """The gold as ``parse_gold`` reads it, and as math-verify's default extraction reads the
    column as written (`1,22` is 1.22 to it, `\\boxed{1} and \\boxed{2}` the set of both), where
    that reading is sound: the column is delimited (``$``, ``\\boxed``) or has no LaTeX. A bare
    ``8 + 4\\sqrt{3}`` is left out, since the default reading of it is ``4``."""
    ours = parse_gold(text, prose) or ()
    theirs: tuple[Any, ...] = ()
    if "\\" not in raw or any(mark in raw for mark in ("$", "\\boxed", "\\(", "\\[")):
        theirs = tuple(p for p in _math_verify().parse(raw, parsing_timeout=None) if not isinstance(p, str))
    readings = ours + tuple(t for t in theirs if t not in ours)
    return readings or None


@reference_cache(maxsize=4096)
def equal_completion(gold_text: str, gold_prose: bool, raw_gold: str, text: str) -> tuple[bool, str]:
    """Whether math-verify, reading the completion ``text`` itself with the grading extraction,
    finds the gold's answer in it (the gold read as ``gold_readings`` reads it); and what it read.
    Cached per (gold, text)."""
    gold = gold_readings(gold_text, gold_prose, raw_gold)
    if gold is None:
        return False, "[gold unparseable]"
    mv = _math_verify()
    parsed = mv.parse(text, extraction_config=_grading_config(), parsing_timeout=None)
    if not parsed:
        return False, "[unparseable]"
    return bool(mv.verify(list(gold), parsed, timeout_seconds=None)), _short(parsed[0])


@lru_cache(maxsize=1)
def warm_up() -> None:
    """Import math-verify and run one comparison, so a worker's first sample does not pay for
    loading sympy and building the LaTeX parser (about a second) inside its timeout."""
    mv = _math_verify()
    mv.verify(list(parse_answer("2\\sqrt{2}")), parse_answer("\\sqrt{8}"), timeout_seconds=None)


def _short(value: Any, limit: int = 120) -> str:
    try:
        text = str(value)
    except Exception:  # noqa: BLE001 - printing a huge sympy object can itself fail
        return "[unprintable]"
    return text if len(text) <= limit else text[: limit - 3] + "..."
