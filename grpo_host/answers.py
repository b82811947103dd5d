"""Finding the final answer a completion gives, for reward authors: plain string work, stdlib only.

``find_answer`` takes the first of these that the completion has:
1. the last closed ``<answer>...</answer>`` block (``tag_content``; a ``\\boxed{}`` or "answer is"
   phrase inside it wins over the rest of its text, and prose keeps only its last expression);
2. the last top-level ``\\boxed{...}`` / ``\\fbox{...}`` (``boxed_contents``: braces matched,
   ``\\boxed{\\boxed{x}}`` unwrapped, ``\\boxed 5`` read as ``5``; an unbalanced one holds nothing);
3. the last "answer is ..." / "answer: ..." phrase, or GSM8K's ``#### ...`` (``answer_phrase``);
4. the last expression (``last_expression``): the last math span or number, only when the text
   ends with it (a unit or a few words may follow, not another sentence), taken with any
   ``X or Y`` alternatives it belongs to, so spraying answers gains nothing.
Text copied from the prompt is removed first (``remove_echo``), so echoing the question, or its
"put your answer in \\boxed{}" instruction, finds nothing. Completions can be megabytes of
hostile text: every function here is one pass over the text or looks at a bounded window at its
end. The pieces are public so that a reward with its own order can reuse them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

__all__ = [
    "Found", "find_answer", "tag_content", "tag_contents", "strip_reasoning", "boxed_contents",
    "last_boxed", "balanced_group", "answer_phrase", "last_expression", "is_prose", "prompt_texts",
    "remove_echo", "MATH_WORDS", "TAIL_CHARS", "MAX_AFTER_CHARS", "MIN_ECHO_CHARS",
]

# The last-expression step looks at this much of the end of the text.
TAIL_CHARS = 600
# The last expression must close the text: at most this many characters may follow it.
MAX_AFTER_CHARS = 60
# Prompt text shorter than this is not removed from completions (it could be a bare "2").
MIN_ECHO_CHARS = 16

_BOX = re.compile(r"\\(?:boxed|fbox)\b\s*")
_BRACE = re.compile(r"[{}]")
_PHRASE = re.compile(r"(?:\banswer\b\s*(?:is\b\s*:?|:|=)|####)[ \t]*", re.I)
_SPANS = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|(?<!\\)\$([^$]+?)(?<!\\)\$", re.S)
_NUMBER = re.compile(r"(?<![\w.])[-\u2212+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?(?:\s*\\?%)?")
_OR = re.compile(r"\s*,?\s*(?:\bor\b|\\text\{\s*or\s*\})\s*", re.I)
_COMMA = re.compile(r"\s*,\s*")
_DIGIT = re.compile(r"\d")
_NEXT_SENTENCE = re.compile(r"[.!?:]\s+\S")
_SENTENCE_END = re.compile(r"\.(?=\s|$)|;|\n")
# A run of three or more letters that is not a LaTeX command; `\text{...}` and environment
# names (`\begin{pmatrix}`) are dropped first.
_WORD = re.compile(r"(?<![\\A-Za-z])[A-Za-z]{3,}")
_TEXT_COMMAND = re.compile(r"\\(?:text|mathrm|textbf|mbox|operatorname|begin|end)\s*\{[^{}]*\}")
MATH_WORDS = frozenset(
    "sin cos tan cot sec csc arcsin arccos arctan sinh cosh tanh log exp sqrt abs inf infty "
    "mod gcd lcm min max det deg".split()
)


@dataclass(frozen=True)
class Found:
    """An answer ``find_answer`` found: its text as written (delimiters such as ``$`` kept),
    the step that found it (``answer-tag``, ``boxed``, ``answer-phrase``, ``last-expression``),
    and how many different answers that step saw (several ``\\boxed{}`` that differ)."""

    text: str
    source: str
    candidates: int = 1


# -- the order -------------------------------------------------------------------------------
def find_answer(text: str, *, answer_tag: str = "answer", prompt: Any = None, fallback: bool = True) -> Found | None:
    """The completion's answer by the order in this module's opening paragraph, or None.

    ``answer_tag=""`` skips the tag step; ``prompt`` (text or chat messages) is removed from the
    text first; ``fallback=False`` skips the last-expression step.

    >>> find_answer(r"so 2+2 = \\boxed{4}. Done")
    Found(text='4', source='boxed', candidates=1)
    >>> find_answer("It is 5 apples.").text
    '5'
    """
    text = remove_echo(text, prompt) if prompt else text
    content = tag_content(text, answer_tag) if answer_tag else None
    if content is not None:
        # Inside the tag: a \boxed{} or an "answer is" phrase, else the whole content when it
        # is one expression, else its last expression ("<answer>We get 5 apples</answer>").
        inside = find_answer(content, answer_tag="", fallback=False)
        if inside is not None:
            return Found(inside.text, "answer-tag", inside.candidates)
        if is_prose(content):
            content = last_expression(content) or content
        return Found(content, "answer-tag")
    boxed = boxed_contents(text)
    if boxed:
        distinct = {re.sub(r"\s+", "", b) for b in boxed}
        return Found(boxed[-1], "boxed", len(distinct))
    phrase = answer_phrase(text)
    if phrase is not None:
        return Found(phrase, "answer-phrase")
    if fallback:
        expression = last_expression(text)
        if expression is not None:
            return Found(expression, "last-expression")
    return None


# -- step 1: tags ----------------------------------------------------------------------------
def _tag_name(tag: str) -> str:
    # "answer" and "<answer>" both mean the pair <answer>...</answer>.
    return (tag or "").strip().removeprefix("<").removesuffix(">").strip()


@lru_cache(maxsize=64)
def _tag_patterns(tag: str, ignore_case: bool) -> tuple[re.Pattern[str], ...] | None:
    """Opening and closing patterns for a tag, and two anchored ones whose greedy ``.*`` lands
    on the last opening / closing tag in one pass (no search from every position)."""
    name = _tag_name(tag)
    if not name:
        return None
    flags = re.I if ignore_case else 0
    opening, closing = f"<{re.escape(name)}>", f"</{re.escape(name)}>"
    return tuple(re.compile(p, flags) for p in (opening, closing, f"(?s:.*)({opening})", f"(?s:.*)({closing})"))


def tag_content(text: str, tag: str, *, ignore_case: bool = False) -> str | None:
    """The content of the last closed ``<tag>...</tag>`` block, or None when there is none.

    An unclosed block at the end is skipped for an earlier, closed one; the content ends at the
    first closing tag after its opening. ``tag`` may be written ``answer`` or ``<answer>``.

    >>> tag_content("<answer>1</answer> then <answer>2</answer> <answer>3", "answer")
    '2'
    """
    patterns = _tag_patterns(tag, ignore_case)
    if patterns is None:
        return None
    _, closing, last_opening, last_closing = patterns
    last_close = last_closing.match(text)
    if last_close is None:
        return None
    # The last opening that has a closing tag after it is the last one before the last closing.
    opened = last_opening.match(text, 0, last_close.start(1))
    if opened is None:
        return None
    stop = closing.search(text, opened.end(1))
    return text[opened.end(1) : stop.start()] if stop else None


def tag_contents(text: str, tag: str, *, ignore_case: bool = False) -> list[str]:
    """The contents of every closed ``<tag>...</tag>`` block, in order.

    >>> tag_contents("<think>a</think> x <think>b</think>", "think")
    ['a', 'b']
    """
    return [text[start:stop] for _, start, stop, _ in _blocks(text, tag, ignore_case)]


def strip_reasoning(text: str, tag: str = "think") -> str:
    """The text without its ``<think>...</think>`` blocks, nor the reasoning before a lone ``</think>``.

    Some chat templates open the reasoning block in the prompt, so the completion starts inside
    it: with a ``</think>`` and no ``<think>``, what precedes the last ``</think>`` goes too.

    >>> strip_reasoning("<think>2+2 is 4</think> The answer is 4.")
    ' The answer is 4.'
    >>> strip_reasoning("so 4</think>4")
    '4'
    """
    out, at = [], 0
    for opened, _, _, closed in _blocks(text, tag, False):
        out.append(text[at:opened])
        at = closed
    out.append(text[at:])
    text = "".join(out)
    name = _tag_name(tag)
    if name and f"</{name}>" in text and f"<{name}>" not in text:
        text = text.split(f"</{name}>")[-1]
    return text


def _blocks(text: str, tag: str, ignore_case: bool) -> Iterator[tuple[int, int, int, int]]:
    """(block start, content start, content end, block end) of each closed block, left to
    right; an unclosed opening ends the scan (no closing follows any later opening either)."""
    patterns = _tag_patterns(tag, ignore_case)
    if patterns is None:
        return
    opening, closing = patterns[0], patterns[1]
    at = 0
    while True:
        start = opening.search(text, at)
        if start is None:
            return
        stop = closing.search(text, start.end())
        if stop is None:
            return
        yield start.start(), start.end(), stop.start(), stop.end()
        at = stop.end()


# -- step 2: \boxed{} ------------------------------------------------------------------------
def boxed_contents(text: str) -> list[str]:
    """Contents of the top-level ``\\boxed{...}`` / ``\\fbox{...}`` groups, in order.

    Braces are matched (escaped ``\\{`` ``\\}`` do not count), ``\\boxed{\\boxed{x}}`` is ``x``,
    a box inside another box's content is part of that content, ``\\boxed 5`` is ``5`` and an
    unbalanced ``\\boxed{`` holds nothing. One pass, however many boxes.

    >>> boxed_contents(r"\\boxed{\\frac{1}{2}} or \\boxed{\\boxed{3}} \\boxed{")
    ['\\\\frac{1}{2}', '3']
    """
    first = _BOX.search(text)
    if first is None:
        return []
    closes = _matching_braces(text, first.end())
    found: list[str] = []
    covered = -1  # end of the last boxed group taken: boxes inside it are not top level
    for match in _BOX.finditer(text, first.start()):
        if match.start() < covered:
            continue
        at = match.end()
        if at < len(text) and text[at] == "{":
            close = closes.get(at)
            if close is None:
                continue  # unbalanced: no answer here
            covered = close + 1
            # Unwrap \boxed{\boxed{x}} with the braces already matched: no re-scan, no recursion.
            while True:
                inner = _BOX.match(text, _skip_space(text, at + 1))
                brace = inner.end() if inner else -1
                if brace < 0 or text[brace] != "{" or closes.get(brace) is None or text[closes[brace] + 1 : close].strip():
                    break
                at, close = brace, closes[brace]
            found.append(text[at + 1 : close])
        else:  # `\boxed 5`: the next token
            token = re.match(r"[^\s$]+", text[at : at + 200])
            if token is None:
                continue
            found.append(token.group(0))
            covered = at + token.end()
    return found


def last_boxed(text: str) -> str | None:
    """The content of the last top-level ``\\boxed{}`` (see ``boxed_contents``), or None.

    >>> last_boxed(r"first \\boxed{1}, then \\boxed{x^{2}}")
    'x^{2}'
    """
    boxed = boxed_contents(text)
    return boxed[-1] if boxed else None


def balanced_group(text: str, start: int, limit: int | None = None) -> tuple[str, int] | None:
    """The content of the ``{...}`` group opening at ``text[start]``, and the index after it.

    None when ``text[start]`` is not an (unescaped) ``{``, when the group never closes, or when
    it does not close within ``limit`` characters. Escaped ``\\{`` ``\\}`` do not count. For one
    group; to find many, ``boxed_contents`` matches every brace in a single pass instead.

    >>> balanced_group(r"\\frac{a{b}}{c}", 5)
    ('a{b}', 11)
    """
    if start >= len(text) or text[start] != "{" or (start and text[start - 1] == "\\"):
        return None
    stop = len(text) if limit is None else min(len(text), start + limit)
    depth = 0
    for index, ch in _unescaped_braces(text, start, stop):
        depth += 1 if ch == "{" else -1
        if depth == 0:
            return text[start + 1 : index], index + 1
    return None


def _matching_braces(text: str, start: int) -> dict[int, int]:
    """Opening-brace index -> its closing brace, for unescaped braces from ``start`` on. One pass."""
    closes: dict[int, int] = {}
    stack: list[int] = []
    for index, ch in _unescaped_braces(text, start, len(text)):
        if ch == "{":
            stack.append(index)
        elif stack:
            closes[stack.pop()] = index
    return closes


def _unescaped_braces(text: str, start: int, stop: int) -> Iterator[tuple[int, str]]:
    # Jumping from brace to brace with a regex keeps this fast on long plain text.
    for match in _BRACE.finditer(text, start, stop):
        index = match.start()
        if index == 0 or text[index - 1] != "\\":
            yield index, match.group(0)


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


# -- step 3: "the answer is ..." -------------------------------------------------------------
def answer_phrase(text: str) -> str | None:
    """What follows the last "answer is" / "answer:" / "answer =" / "####", or None.

    A math span right after the phrase is taken whole; otherwise the rest of its sentence.

    >>> answer_phrase("First 3. So the final answer is 42 apples. Great.")
    '42 apples'
    """
    last = None
    for last in _PHRASE.finditer(text):  # noqa: B007 - we want the last one
        pass
    if last is None:
        return None
    rest = text[last.end() : last.end() + 400]
    span = _SPANS.match(rest)
    if span:
        return next(g for g in span.groups() if g is not None)
    clause = _SENTENCE_END.split(rest, maxsplit=1)[0].strip()
    return clause or None


# -- step 4: the last expression -------------------------------------------------------------
def last_expression(text: str) -> str | None:
    """The last math span or number that ends the text, with the ``X or Y`` run it belongs to.

    Only the last ``TAIL_CHARS`` characters are read. None when the text goes on after it
    (another line, sentence or number: a completion cut off mid-reasoning has no answer).

    >>> last_expression("We add them and get $x = 7$ in total.")
    'x = 7'
    >>> last_expression("so it is 1, 2 or 3.")
    '1, 2, 3'
    >>> last_expression("We have 12 apples. Then we add")
    """
    start = max(0, len(text) - TAIL_CHARS)
    if start:
        # Start at a line break so the window does not open inside a `$...$` span.
        line = text.rfind("\n", max(0, start - TAIL_CHARS), start)
        start = line + 1 if line >= 0 else start
    tail = text[start:]
    tokens: list[tuple[int, int, str]] = []
    covered = 0
    for span in _SPANS.finditer(tail):
        tokens.extend((m.start(), m.end(), m.group(0)) for m in _NUMBER.finditer(tail, covered, span.start()))
        content = next(g for g in span.groups() if g is not None)
        tokens.append((span.start(), span.end(), content))
        covered = span.end()
    tokens.extend((m.start(), m.end(), m.group(0)) for m in _NUMBER.finditer(tail, covered))
    if not tokens:
        return None
    # "1, 2 or 3": the alternatives are taken together (a checker reads them as a set, which a
    # single gold is not); a plain list "3, 4" without an "or" keeps only its last item.
    run, has_or = [tokens[-1]], False
    for token in reversed(tokens[:-1]):
        between = tail[token[1] : run[0][0]]
        if _OR.fullmatch(between):
            has_or = True
        elif not _COMMA.fullmatch(between):
            break
        run.insert(0, token)
    if not _ends_text(tail[run[-1][1] :]):
        return None
    if not has_or:
        return tokens[-1][2]
    return ", ".join(t[2].strip() for t in run)


def _ends_text(rest: str) -> bool:
    """Whether the text after an expression still belongs to its closing sentence.

    A unit or a few words may follow ("42 apples in total."); another line, another sentence or
    another number may not: a completion cut off mid-reasoning has no final expression.
    """
    rest = rest.strip()
    return len(rest) <= MAX_AFTER_CHARS and not _DIGIT.search(rest) and "\n" not in rest and not _NEXT_SENTENCE.search(rest)


def is_prose(text: str) -> bool:
    """Whether ``text`` reads as words rather than one expression: a word of three or more
    letters that is neither a LaTeX command nor in ``MATH_WORDS`` (``\\text{}`` is ignored).

    >>> is_prose("5 apples"), is_prose(r"\\sin x + \\text{cm}")
    (True, False)
    """
    plain = _TEXT_COMMAND.sub(" ", text)
    return any(w.lower() not in MATH_WORDS for w in _WORD.findall(plain))


# -- the prompt ------------------------------------------------------------------------------
def prompt_texts(prompt: Any, min_chars: int = MIN_ECHO_CHARS) -> list[str]:
    """The prompt's text pieces (a string, or chat messages' contents), stripped, of at least
    ``min_chars`` characters.

    >>> prompt_texts([{"role": "user", "content": "What is 6*7?"}], min_chars=1)
    ['What is 6*7?']
    """
    if isinstance(prompt, str):
        pieces = [prompt]
    elif isinstance(prompt, Sequence):
        pieces = []
        for message in prompt:
            content = message.get("content") if isinstance(message, dict) else message
            if isinstance(content, str):
                pieces.append(content)
            elif isinstance(content, list):
                pieces.extend(p.get("text", "") for p in content if isinstance(p, dict))
    else:
        pieces = []
    return [p.strip() for p in pieces if isinstance(p, str) and len(p.strip()) >= min_chars]


def remove_echo(text: str, prompt: Any) -> str:
    """The text with every prompt piece of ``MIN_ECHO_CHARS`` or more that it copies blanked out.

    >>> remove_echo(r"Put the answer in \\boxed{}. It is 4", r"Put the answer in \\boxed{}.")
    '  It is 4'
    """
    for piece in prompt_texts(prompt):
        if piece in text:
            text = text.replace(piece, " ")
    return text
