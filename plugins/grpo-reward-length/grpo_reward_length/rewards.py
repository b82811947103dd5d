"""The `length`, `overlong` and `repetition` rewards: how long a completion is, and how loopy.

Token counts come from the completion's token ids when the trainer passes them (TRL does, as
``completion_ids``), so they are exact during training. Without ids (``try-reward``, golden
cases, a plain text batch) the count is an approximation: one token per run of letters or
digits, one per punctuation mark or symbol, and one per CJK character (scripts written
without spaces). It is close to a word count, so it runs below a BPE tokenizer's count on
English; the details say which count was used.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal

import grpo_host
from grpo_host import completion_text

# Han, kana and the CJK compatibility block: one character is about one token.
_CJK = "\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_APPROX_TOKEN = re.compile(rf"[{_CJK}]|[^\W{_CJK}]+|[^\w\s]")


def approx_token_count(text: str) -> int:
    """Tokens in ``text`` by the approximation above (words, punctuation marks, CJK characters)."""
    return sum(1 for _ in _APPROX_TOKEN.finditer(text))


def token_count(text: str, completion_ids: Sequence[int] | None) -> tuple[int, str]:
    """``(count, how)``: the ids' length when given, else the approximation."""
    if completion_ids is not None:
        return len(completion_ids), "completion_ids"
    return approx_token_count(text), "approximation"


@grpo_host.reward(
    name="length",
    timeout=5.0,
    score_range=(0.0, 1.0),
    intended_probes={"padding": "length measures length only; pair it with a reward for content"},
)
def length(
    completion: Any,
    target: int = 200,
    unit: Literal["chars", "tokens"] = "chars",
    completion_ids: Sequence[int] | None = None,
) -> grpo_host.Score:
    """Closeness to a target length: 1.0 at the target, falling linearly to 0.0 at 0 and at twice it.

    ``score = max(0, 1 - |length - target| / target)``, in [0, 1]. ``unit="chars"`` counts
    Unicode code points of the completion's text; ``unit="tokens"`` counts ``completion_ids``
    when the trainer passes them, else approximates (see the module notes).

    >>> length("x" * 150, target=100).value
    0.5
    """
    if target <= 0:
        raise ValueError(f"param target must be a positive length, got {target}")
    text, _ = completion_text(completion)
    if unit == "chars":
        size, counted_by = len(text), "chars"
    else:
        size, counted_by = token_count(text, completion_ids)
    score = max(0.0, 1.0 - abs(size - target) / target)
    return grpo_host.Score(score, length=size, target=target, counted_by=counted_by)


@grpo_host.reward(
    name="overlong",
    timeout=5.0,
    score_range=(-1.0, 0.0),
    intended_probes=dict.fromkeys(
        ("empty-completion", "empty-tags", "padding"),
        "overlong only punishes running past max_length; a short completion, empty or not, is never punished",
    ),
)
def overlong(
    completion: Any,
    max_length: int = 1024,
    buffer: int = 256,
    completion_ids: Sequence[int] | None = None,
) -> grpo_host.Score:
    """DAPO's soft overlong punishment: 0 up to max_length - buffer tokens, then down to -1.

    With ``L`` the completion's token count: ``0`` when ``L <= max_length - buffer``;
    ``(max_length - buffer - L) / buffer`` when ``max_length - buffer < L <= max_length``
    (linear, reaching -1 at ``max_length``); ``-1`` beyond. Set ``max_length`` to the trainer's
    ``max_completion_length``. ``buffer=0`` punishes only completions longer than max_length.

    >>> overlong("", max_length=20, buffer=5, completion_ids=list(range(18))).value
    -0.6
    """
    if max_length <= 0:
        raise ValueError(f"param max_length must be a positive token count, got {max_length}")
    if not 0 <= buffer <= max_length:
        raise ValueError(f"param buffer must be between 0 and max_length ({max_length}), got {buffer}")
    text, _ = completion_text(completion)
    size, counted_by = token_count(text, completion_ids)
    free = max_length - buffer
    if size <= free:
        score = 0.0
    elif size <= max_length:
        score = (free - size) / buffer
    else:
        score = -1.0
    return grpo_host.Score(score, tokens=size, counted_by=counted_by, punished_above=free)


@grpo_host.reward(
    name="repetition",
    timeout=5.0,
    intended_probes=dict.fromkeys(
        ("empty-completion", "empty-tags", "padding"),
        "repetition only punishes repeated n-grams; a text without repeats is never punished, whatever it says",
    ),
)
def repetition(completion: Any, n: int = 3, max_penalty: float = -1.0) -> grpo_host.Score:
    """n-gram repetition penalty: ``max_penalty * (1 - distinct n-grams / all n-grams)``.

    Words are the completion's text lowercased and split on whitespace, as in open-r1's
    repetition penalty. A text with fewer than ``n`` words scores 0. The score lies in
    [max_penalty, 0]: 0 when no word n-gram repeats, approaching max_penalty as one n-gram
    fills the text.

    >>> round(repetition("go go go go go", n=2).value, 4)
    -0.75
    """
    if n < 1:
        raise ValueError(f"param n must be at least 1, got {n}")
    if max_penalty > 0:
        raise ValueError(f"param max_penalty must be 0 or negative (it is the worst score), got {max_penalty}")
    text, _ = completion_text(completion)
    words = text.lower().split()
    total = len(words) - n + 1
    if total <= 0:
        return grpo_host.Score(0.0, ngrams=0, distinct=0)
    distinct = len(set(zip(*(words[i:] for i in range(n)), strict=False)))  # n-grams: shorter tails end it
    # `+ 0.0` turns -0.0 (max_penalty times no repetition) into a plain 0.0.
    score = max_penalty * (1.0 - distinct / total) + 0.0
    return grpo_host.Score(score, ngrams=total, distinct=distinct)
