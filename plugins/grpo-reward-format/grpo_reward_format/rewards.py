"""The `format` and `tag-count` rewards: is the completion shaped as reasoning, then answer?

Both find the four tags (``<think>``, ``</think>``, ``<answer>``, ``</answer>`` by default) with
one linear scan and then reason about their positions, instead of matching the whole text with
regexes: a pair of whole-string regexes is how the reference scripts came to score correct
completions 0, and a backtracking pattern is how a long hostile completion eats a timeout.
Tags match exactly as written (case-sensitive, no attributes, no inner spaces); anything else
that looks like a tag is ordinary text.
"""

from __future__ import annotations

import re
from functools import lru_cache
from itertools import combinations, pairwise
from typing import Any

import grpo_host
from grpo_host import completion_text

_PREVIEW = 40  # characters of offending text shown in details
# Why the reward-hacking probes that put other text in a well-shaped answer are not flagged here.
_SHAPE_ONLY = "this reward checks the shape only; whether the answer is right is an accuracy reward's job"


@lru_cache(maxsize=64)
def _tags(think_tag: str, answer_tag: str) -> tuple[tuple[str, str, str, str], re.Pattern[str]]:
    """The four tags in their required order, and a pattern that finds any of them."""
    think, answer = _tag_name("think_tag", think_tag), _tag_name("answer_tag", answer_tag)
    if think == answer:
        raise ValueError(f"think_tag and answer_tag are both {think!r}; give two different tag names")
    names = "|".join(re.escape(n) for n in (think, answer))
    return (f"<{think}>", f"</{think}>", f"<{answer}>", f"</{answer}>"), re.compile(rf"</?(?:{names})>")


def _tag_name(param: str, value: str) -> str:
    # "think" and "<think>" both mean the tag pair <think>...</think>.
    name = str(value).strip().removeprefix("<").removesuffix(">").strip()
    if not name or any(c in name for c in "<>/") or any(c.isspace() for c in name):
        raise ValueError(f"param {param} must be a tag name such as 'think' (no spaces, '<', '>' or '/'), got {value!r}")
    return name


def _preview(text: str) -> str:
    text = text.strip()
    return repr(text if len(text) <= _PREVIEW else text[:_PREVIEW] + "...")


@grpo_host.reward(
    name="format",
    timeout=5.0,
    score_range=(0.0, 1.0),
    intended_probes={"prompt-copied": _SHAPE_ONLY},
)
def format_reward(completion: Any, think_tag: str = "think", answer_tag: str = "answer") -> grpo_host.Score:
    """1.0 when the completion is exactly one reasoning block then one answer block, else 0.0.

    Whitespace (any Unicode whitespace) may surround and separate the two blocks; nothing else
    may. Each tag must appear exactly once, so nested or repeated blocks score 0, and so does a
    block with nothing but whitespace inside (an empty block is the cheapest way to fake the
    shape). The details name the rule that failed.

    >>> format_reward("<think>2+2=4</think>\\n<answer>4</answer>").value
    1.0
    """
    text, _ = completion_text(completion)
    expected, pattern = _tags(think_tag, answer_tag)
    found = []
    for match in pattern.finditer(text):
        found.append(match)
        if len(found) > len(expected):  # enough to know the shape is wrong; stay linear
            break
    if [m.group(0) for m in found] != list(expected):
        return grpo_host.Score(0.0, rule=_tag_problem(text, expected, [m.group(0) for m in found]))
    open_think, close_think, open_answer, close_answer = found
    segments = (
        (text[: open_think.start()], f"text before {expected[0]}"),
        (text[open_think.end() : close_think.start()], f"empty {expected[0]} block"),
        (text[close_think.end() : open_answer.start()], f"text between {expected[1]} and {expected[2]}"),
        (text[open_answer.end() : close_answer.start()], f"empty {expected[2]} block"),
        (text[close_answer.end() :], f"text after {expected[3]}"),
    )
    for index, (segment, rule) in enumerate(segments):
        is_block = index in (1, 3)
        if is_block and not segment.strip():
            return grpo_host.Score(0.0, rule=rule)
        if not is_block and segment.strip():
            return grpo_host.Score(0.0, rule=f"{rule}: {_preview(segment)}")
    return grpo_host.Score(1.0, rule="ok")


def _tag_problem(text: str, expected: tuple[str, ...], found: list[str]) -> str:
    if not text.strip():
        return "empty completion"
    for tag in expected:
        count = text.count(tag)
        if count == 0:
            return f"no {tag} tag"
        if count > 1:
            return f"{tag} appears {count} times (nested or repeated blocks)"
    return f"tags out of order: {' '.join(found)}; expected {expected[0]}...{expected[1]} then {expected[2]}...{expected[3]}"


@grpo_host.reward(
    name="tag-count",
    timeout=5.0,
    score_range=(0.0, 1.0),
    intended_probes={
        "empty-tags": "tag-count pays for the tags alone by design (a shaping signal); "
        "`format` rejects empty blocks and an accuracy reward pays for content",
        "prompt-copied": _SHAPE_ONLY,
    },
)
def tag_count(completion: Any, think_tag: str = "think", answer_tag: str = "answer") -> grpo_host.Score:
    """Partial credit, 0.25 per tag, for each of the four tags used exactly once and in order.

    A tag earns its quarter when it appears exactly once and belongs to the longest run of such
    tags that appears in the required order (``<think>``, ``</think>``, ``<answer>``,
    ``</answer>``). Text around the tags and empty blocks do not matter here: this is a shaping
    signal to pair with `format`, not a check of the shape. The details give each tag's status.

    >>> tag_count("<think>hmm</think> 4").value
    0.5
    """
    text, _ = completion_text(completion)
    expected, _pattern = _tags(think_tag, answer_tag)
    counts = [text.count(tag) for tag in expected]
    # Required-order indices of the tags used once, in the order they appear in the text.
    once = [i for _, i in sorted((text.find(tag), i) for i, tag in enumerate(expected) if counts[i] == 1)]
    in_order = _longest_increasing(once)
    status = {}
    for i, tag in enumerate(expected):
        if counts[i] == 0:
            status[tag] = "missing"
        elif counts[i] > 1:
            status[tag] = f"appears {counts[i]} times"
        else:
            status[tag] = "ok" if i in in_order else "out of order"
    return grpo_host.Score(len(in_order) / len(expected), tags=status)


def _longest_increasing(sequence: list[int]) -> set[int]:
    """The values of the longest increasing subsequence (at most four items: brute force)."""
    for size in range(len(sequence), 0, -1):
        for picked in combinations(sequence, size):
            if all(a < b for a, b in pairwise(picked)):
                return set(picked)
    return set()
