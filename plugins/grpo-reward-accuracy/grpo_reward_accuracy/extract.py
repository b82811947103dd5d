"""Finding the answer a completion gives, with plain string work that stays linear in its length.

The order is fixed and documented in the plugin's README:
1. the last ``<answer>...</answer>`` block (tag name is a param; a ``\\boxed{}`` inside it wins
   over the rest of its text);
2. the last top-level ``\\boxed{...}`` / ``\\fbox{...}`` (braces matched, nested ones unwrapped);
3. the last "answer is ..." / "answer: ..." phrase, or GSM8K's ``#### ...``;
4. the last expression: the last math span or number, when the text ends with it (a unit or a
   few words may follow, not another sentence: a completion cut off mid-reasoning has none),
   taken with any ``X or Y`` alternatives it belongs to, so spraying answers gains nothing.
Text copied from the prompt is removed first, so echoing the question (or its "put your answer
in \\boxed{}" instruction) finds nothing. Completions can be megabytes of hostile text: every
step here is one pass over the text or looks at a bounded window at its end.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# The last-expression step looks at this much of the end of the text.
TAIL_CHARS = 600
# The last expression must close the text: at most this many characters may follow it.
MAX_AFTER_CHARS = 60
# Prompt text shorter than this is not removed from completions (it could be a bare "2").
MIN_ECHO_CHARS = 16

_BOX = re.compile(r"\\(?:boxed|fbox)\b\s*")
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
    text: str  # the answer as written (delimiters stripped later)
    source: str  # answer-tag | boxed | answer-phrase | last-expression
    candidates: int = 1  # how many distinct answers that step saw (several \boxed{} differing)


def completion_plain(completion: Any) -> str:
    """The completion as text, whether it came as text or as chat messages."""
    from grpo_host.rewards.spec import completion_text

    return completion_text(completion)[0]


def prompt_texts(prompt: Any, min_chars: int = MIN_ECHO_CHARS) -> list[str]:
    """The prompt's text pieces (string, or chat messages' contents) of at least ``min_chars``."""
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
    for piece in prompt_texts(prompt):
        if piece in text:
            text = text.replace(piece, " ")
    return text


# -- step 1: the answer tag ------------------------------------------------------------------
def tag_content(text: str, tag: str) -> str | None:
    """The content of the last closed ``<tag>...</tag>`` block, or None."""
    tag = tag.strip().removeprefix("<").removesuffix(">").strip()
    if not tag:
        return None
    opening, closing = f"<{tag}>", f"</{tag}>"
    end = len(text)
    while True:
        start = text.rfind(opening, 0, end)
        if start < 0:
            return None
        stop = text.find(closing, start + len(opening))
        if stop >= 0:
            return text[start + len(opening) : stop]
        end = start  # an unclosed block at the end: look for an earlier, closed one


# -- step 2: \boxed{} ------------------------------------------------------------------------
def boxed_contents(text: str) -> list[str]:
    """Contents of the top-level ``\\boxed{...}`` groups, in order; ``\\boxed{\\boxed{x}}`` is x."""
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


def _skip_space(text: str, at: int) -> int:
    while at < len(text) and text[at].isspace():
        at += 1
    return at


def _matching_braces(text: str, start: int) -> dict[int, int]:
    """Opening-brace index -> its closing brace, for unescaped braces from ``start`` on. One pass."""
    closes: dict[int, int] = {}
    stack: list[int] = []
    index = text.find("{", start) if start < len(text) else -1
    # Jumping from brace to brace with str.find keeps this fast on long plain text.
    while index >= 0:
        ch = text[index]
        if index == 0 or text[index - 1] != "\\":
            if ch == "{":
                stack.append(index)
            elif stack:
                closes[stack.pop()] = index
        index = _next_brace(text, index + 1)
    return closes


_BRACE = re.compile(r"[{}]")


def _next_brace(text: str, start: int) -> int:
    match = _BRACE.search(text, start)
    return match.start() if match else -1


# -- step 3: "the answer is ..." -------------------------------------------------------------
def answer_phrase(text: str) -> str | None:
    """What follows the last "answer is" / "answer:" / "####", up to the end of its sentence."""
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
    """The last math span or number near the end, with the ``X or Y`` run it belongs to."""
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
    # "1, 2 or 3": the alternatives are taken together (math-verify reads them as a set, which
    # a single gold is not); a plain list "3, 4" without an "or" keeps only its last item.
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


# -- the order -------------------------------------------------------------------------------
def find_answer(text: str, *, answer_tag: str = "answer", prompt: Any = None, fallback: bool = True) -> Found | None:
    """The completion's answer by the documented order, or None when it gives none."""
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


def strip_reasoning(text: str, tag: str = "think") -> str:
    """The text with ``<think>...</think>`` blocks (and an unclosed one at the start) removed."""
    opening, closing = f"<{tag}>", f"</{tag}>"
    out, at = [], 0
    while True:
        start = text.find(opening, at)
        if start < 0:
            break
        stop = text.find(closing, start)
        if stop < 0:
            break
        out.append(text[at:start])
        at = stop + len(closing)
    out.append(text[at:])
    text = "".join(out)
    # Some chat templates open the reasoning block in the prompt: the completion starts inside it.
    if closing in text and opening not in text:
        text = text.split(closing)[-1]
    return text


def is_prose(text: str) -> bool:
    """Whether ``text`` reads as words rather than one expression ("5 apples" is prose)."""
    plain = _TEXT_COMMAND.sub(" ", text)
    return any(w.lower() not in MATH_WORDS for w in _WORD.findall(plain))


def nesting_depth(text: str) -> int:
    """The deepest nesting of (), [] and {} in ``text``."""
    depth = deepest = 0
    for ch in re.findall(r"[()\[\]{}]", text):
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest
