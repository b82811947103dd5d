"""Finding the final answer in a completion, and the math in prose, with plain string work.

No sympy here: these helpers cut text into candidate expressions; ``parse`` turns a candidate
into sympy objects. The final answer is looked for in a fixed, documented order: the last
answer tag, then the last ``\\boxed{}``, then the last LaTeX math span, then the math at the end
of the last non-empty line. Brace matching, and every ``<think>`` block for math-steps, come
from the host's ``grpo_host.answers``; the last tag block and the last box are read here, the
way math-equiv documents them (they differ from ``grpo_host.answers.find_answer`` on stray
closing tags and nested boxes).
"""

from __future__ import annotations

import re
from collections import deque

from grpo_host.answers import balanced_group

# Words that may stand in math text; any other run of two or more letters that starts a word
# makes a token prose: "the answer is 2x+2" yields "2x+2", while "sin(x)", "2xy", "\\frac{a}{bc}"
# and "x_{ab}" stay math. A bare "xy" counts as a word.
MATH_WORDS = frozenset(
    """sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh asin acos atan log ln lg exp
    sqrt abs pi oo inf infty mod gcd lcm min max binom frac dfrac tfrac cdot times div pm mp le
    leq ge geq ne neq cup cap in left right text mathrm mathbf operatorname boxed circ
    alpha beta gamma delta epsilon varepsilon zeta eta theta vartheta iota kappa lambda mu nu xi
    rho sigma tau upsilon phi varphi chi psi omega emptyset varnothing quad qquad displaystyle
    or and""".split()
)
_WORD = re.compile(r"(?<![\\A-Za-z0-9{^_])[A-Za-z]{2,}")
_SPANS = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|\$(.+?)\$", re.S)
_TEXT_GROUP = re.compile(r"\\(?:text|textbf|textit|textrm|mbox)\s*\{[^{}]*\}")
_BOXED = re.compile(r"\\(?:boxed|fbox)\s*")
SCAN_CHARS = 8000  # the final answer is looked for in the last this-many characters
_ANSWER_MARK = re.compile(r"(?:final\s+answer|answer)\s*(?:is|:|=)?\s*:?", re.I)


def last_boxed(text: str) -> str | None:
    """The content of the last ``\\boxed{...}`` (or ``\\fbox{...}``) in ``text``.

    The last occurrence, even one nested in another box (``\\boxed{x = \\boxed{5}}`` is ``5``),
    and ``\\boxed5`` is ``5``: math-equiv's reading, which differs there from
    ``grpo_host.answers.boxed_contents`` (the last top-level box), so it stays its own. Only the
    last few occurrences are tried, each up to ``SCAN_CHARS`` long, so a completion made of a
    million unclosed ``\\boxed{`` costs linear time, not quadratic.
    """
    starts = [m for m in _BOXED.finditer(text)][-5:]
    for match in reversed(starts):
        group = balanced_group(text, match.end(), SCAN_CHARS)
        if group is not None:
            return group[0]
        if text[match.end() : match.end() + 1] != "{":  # `\boxed 5`: the next token
            bare = re.match(r"[^\s$]+", text[match.end() : match.end() + 200])
            if bare:
                return bare.group(0)
    return None


def _tag_patterns(tag: str) -> tuple[re.Pattern, re.Pattern]:
    name = re.escape(tag)
    return re.compile(f"<{name}>", re.I), re.compile(f"</{name}>", re.I)


def last_tag_content(text: str, tag: str) -> str | None:
    """The content of the last complete ``<tag>...</tag>`` block (linear time), any case.

    From the last closing tag back to the opening before it: with a stray closing tag after
    the block (``<answer>5</answer> x </answer>``) the content runs to that one, where
    ``grpo_host.answers.tag_content`` stops at the first; math-equiv's scores rest on this
    reading, so it stays its own.
    """
    if not tag:
        return None
    opening, closing = _tag_patterns(tag)
    end = _last(closing.finditer(text))
    start = None if end is None else _last(opening.finditer(text, 0, end.start()))
    return None if start is None else text[start.end() : end.start()]


def _last(matches) -> re.Match | None:
    kept = deque(matches, maxlen=1)
    return kept[0] if kept else None


# In reasoning, "and", "or" and "in" join sentences rather than answers ("3*4 = 12 and 12+5 = 17").
STEP_WORDS = MATH_WORDS - {"or", "and", "in", "text", "boxed"}


def is_prose_token(token: str, words: frozenset = MATH_WORDS) -> bool:
    return any(w.group(0).lower() not in words for w in _WORD.finditer(token))


def math_suffix(text: str, words: frozenset = MATH_WORDS) -> str:
    """The longest run of math tokens at the end of ``text`` ("so it is 2x+2" -> "2x+2")."""
    tokens = text.split()
    keep: list[str] = []
    for token in reversed(tokens):
        if is_prose_token(token, words):
            break
        keep.append(token)
    return " ".join(reversed(keep))


def math_prefix(text: str, words: frozenset = MATH_WORDS) -> str:
    """The longest run of math tokens at the start of ``text`` ("12 apples" -> "12")."""
    keep: list[str] = []
    for token in text.split():
        if is_prose_token(token, words):
            break
        keep.append(token)
    return " ".join(keep)


def strip_end_punctuation(text: str) -> str:
    text = text.strip()
    text = re.sub(r"^[*_`\s]+|[*_`\s]+$", "", text)  # markdown emphasis around an answer
    while text and text[-1] in ".;:!?" and not (text[-1] == "!" and len(text) > 1 and text[-2].isalnum()):
        text = text[:-1].rstrip()
    return text


def final_answer(completion: str, answer_tag: str = "answer") -> tuple[str | None, str]:
    """The completion's final expression as text, and where it was found.

    Order: the last ``<answer>`` block (inside it, a ``\\boxed{}`` or math span wins over the
    surrounding words); else the last ``\\boxed{}``; else the last ``$...$``/``\\(...\\)``/
    ``\\[...\\]`` span; else the math at the end of the last non-empty line (after "answer is"
    when that phrase is there). Only the last ``SCAN_CHARS`` characters of the completion (or
    of the answer block) are searched. Returns ``(None, reason)`` when there is nothing to take.
    """
    text = completion or ""
    block = last_tag_content(text, answer_tag)
    if block is not None:
        inner = _from_region(block[-SCAN_CHARS:], whole=True)
        return (without_words(inner), "answer-tag") if inner else (None, "empty answer tag")
    tail = text[-SCAN_CHARS:]
    boxed = last_boxed(tail)
    if boxed is not None:
        return (without_words(boxed.strip()) or None, "boxed" if boxed.strip() else "empty boxed")
    found = _from_region(tail, whole=False)
    if found:
        return found, "math-span" if _SPANS.search(tail) else "last-line"
    return None, "no final expression found"


def without_words(text: str) -> str:
    """Drop words around an answer: "is 5" -> "5", "5 apples" -> "5" (kept as is when all words)."""
    bare = _TEXT_GROUP.sub(" ", text)  # \\text{ cm} is cleaned away later, not a word here
    if not any(is_prose_token(t) for t in bare.split()):
        return text
    return math_suffix(bare) or math_prefix(bare) or text


def _from_region(region: str, whole: bool) -> str | None:
    if whole:
        boxed = last_boxed(region)
        if boxed is not None:
            return boxed.strip() or None
    spans = [next(g for g in m.groups() if g is not None) for m in _SPANS.finditer(region)]
    spans = [s for s in spans if s.strip()]
    if spans:
        return spans[-1].strip()
    stripped = strip_end_punctuation(region)
    if whole and stripped and not any(is_prose_token(t) for t in stripped.split()):
        return stripped
    return _last_line_math(region)


def _last_line_math(text: str) -> str | None:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return None
    line = lines[-1]
    marks = list(_ANSWER_MARK.finditer(line))
    if marks:
        line = line[marks[-1].end() :]
    found = math_suffix(strip_end_punctuation(line))
    return found or None


def reference_text(reference: str) -> str:
    """The answer inside a reference column: after GSM8K's ``####``, or its last ``\\boxed{}``."""
    text = str(reference).strip()
    if "####" in text:
        return text.rsplit("####", 1)[1].strip()
    boxed = last_boxed(text)
    if boxed is not None:
        return boxed.strip()
    return text
