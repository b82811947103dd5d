"""The `accuracy`, `exact-match` and `rouge` rewards: is the completion's answer the right one?

`accuracy` judges math answers. The gold and the completion's answer are first compared as
canonical strings, then as exact values (integers, decimals, fractions, and small expressions
with roots, pi and variables: ``exact``, ``algebra``), then by shape (letters, intervals, sets:
``shapes``). Those paths only decide what they decide exactly; the rest goes to math-verify,
and where the fast paths would call an answer wrong but the completion could be read another
way (several boxes, prose, unusual number formats, relations, a gold of several answers),
math-verify also reads the completion itself and has the last word. The gold is read once per
reference and worker (``grpo_host.reference_cache``), and math-verify's verdicts are cached
per (gold, answer), since a GRPO group often repeats one. `exact-match` compares normalized
strings; `rouge` scores ROUGE-L overlap. Every score carries what was compared, so
``grpo-host try-reward --explain`` shows it.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any, Literal

import grpo_host
from grpo_host import reference_cache
from grpo_host.answers import (
    MATH_WORDS,
    Found,
    answer_phrase,
    boxed_contents,
    find_answer,
    is_prose,
    last_expression,
    prompt_texts,
    remove_echo,
    strip_reasoning,
    tag_content,
)
from grpo_reward_accuracy.exact import Value, canonical, decide, equation_of, strip_delimiters, value_of
from grpo_reward_accuracy.extract import completion_plain, nesting_depth
from grpo_reward_accuracy.rouge import rouge_l, tokenize
from grpo_reward_accuracy.shapes import decide_structured, is_structured, letter

_SHOWN = 200  # characters of an answer kept in the details


@dataclass(frozen=True)
class Gold:
    text: str  # the answer part of the gold column, delimiters stripped
    canon: str
    value: Value | None  # its exact value, when it is a number or a small expression
    equation: tuple[str, Value] | None  # `y = ...`: the variable and the right side's value
    structured: bool  # a letter, an interval, a union or a set of values
    prose: bool  # read with math-verify's default extraction, as TRL does
    source: str  # what math-verify is given: `text`, or the whole column when it is prose
    words: bool = False  # `Monday`, `forty two`: no math to compare, so not applicable
    several: bool = False  # several answers (`\boxed{1}, \boxed{2}`, `1, 3`, `k = 45, n = 2`)
    relation: bool = False  # `-2 \le x \le 7`, `x \in [a, b]`: math-verify's to compare
    odd_number: bool = False  # `0,111`, `1 000`, `.4`: a format math-verify may read otherwise
    raw: str = ""  # the column as written, for math-verify's own reading of it

    @property
    def is_math(self) -> bool:
        """Whether the fast paths already show the gold is math (else math-verify must parse it)."""
        return self.value is not None or self.equation is not None or self.structured


# A word of a gold that is words, not math: `Monday`, `forty two`, `\text{Paris}`. Letters in
# math (`x`, `ab`, `\sin`) are not words; a gold with a digit or an operator is math.
_WORDS_ONLY = re.compile(r"[A-Za-z][A-Za-z\s,.;:'!?-]*")
_WORD_RUN = re.compile(r"[A-Za-z]{3,}")
_TEXT_WRAP = re.compile(r"\\(?:text|textbf|textit|mathrm|mbox)\s*\{([^{}]*)\}")
# Relations and membership: math-verify compares `-2 \le x \le 7` with `x \in [-2, 7]`.
_RELATION = re.compile(r"\\(?:in|le|ge|leq|geq|lt|gt|leqslant|geqslant|neq|ne|notin)\b|[<>\u2264\u2265]")
# Number formats the exact paths read one way and math-verify may read another: a space or a
# comma between digits (`1 000`, `0,5`, `2,74`), a decimal with no leading digit (`.4`), an
# escaped dollar (`\\$ 5`, currency in LaTeX, which also breaks `$...$` spans).
_NUMBER_FORMAT = re.compile(r"(?<![\d,])\d+,\d+(?!\d|,\d)|\d \d{3}(?!\d)|(?<![\w.])\.\d|\\\$")
# `32, 349`: a list to math-verify, one number to the exact paths once spaces go.
_SPACED_GROUP = re.compile(r"[-+]?\d{1,3}(?:,\s+\d{3})+(?:\.\d+)?")
# End-of-turn tokens a completion may carry (`<|im_end|>`, `<|im_start|>user`).
_END_TOKENS = re.compile(r"(?:\s*<\|[A-Za-z_]+\|>\s*(?:user|assistant|system)?)+\s*$")
# A completion that ends like a finished text, not cut off mid-sentence.
_FINISHED = re.compile(r"[.!?)\]}$]\s*$")

# A list of answers at the top level: a comma or semicolon that is no thousands separator, or
# a written "and" / "or".
_SEPARATOR = re.compile(r"(?<!\d),|,(?!\d{3}(?!\d))|;|(?<![A-Za-z\\])(?:and|or)(?![A-Za-z])")


def is_word_gold(text: str) -> bool:
    """Whether a gold is words rather than math (`Monday`, `forty two`, `\\text{yes}`)."""
    plain = text
    for _ in range(3):
        plain = _TEXT_WRAP.sub(r"\1", plain)
    plain = plain.strip().strip("$").strip()
    if not _WORDS_ONLY.fullmatch(plain):
        return False
    return any(w.lower() not in MATH_WORDS for w in _WORD_RUN.findall(plain))


def _top_level(text: str) -> str:
    """``text`` with what is inside brackets and braces blanked: `(1, 2), (3, 4)` -> `(    ), (    )`."""
    out, depth = [], 0
    for ch in text:
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        out.append(ch if depth == 0 or ch in "([{)]}" else " ")
    return "".join(out)


def is_several(canon: str) -> bool:
    """Whether an answer lists several answers at its top level (`1, 3`, `(2,1),(1,2)`, `k=45,n=2`)."""
    top = _top_level(canon.replace("\\{", "(").replace("\\}", ")"))
    return bool(_SEPARATOR.search(top))


@reference_cache
def read_gold(raw: str) -> Gold | None:
    """The gold answer from its column: a ``\\boxed{}`` in it, GSM8K's ``#### x``, the "answer
    is ..." of a gold written as a sentence, or all of it."""
    text = raw.strip()
    boxed = boxed_contents(text)
    if len({canonical(b) for b in boxed}) > 1:
        # `\boxed{1}, \boxed{2}`: several answers; only math-verify reads the column whole.
        # No canonical form either: whether boxes far apart make one answer is math-verify's rule.
        return Gold(", ".join(boxed), "\0several", None, None, False, True, raw, several=True, raw=raw)
    if boxed:
        text = boxed[-1]
    elif "####" in text or is_prose(text):
        text = answer_phrase(text) or text  # also GSM8K's "#### 72"
    text = strip_delimiters(text)
    if not text:
        return None
    canon = canonical(text)
    if is_word_gold(text):
        return Gold(text, canon, None, None, False, True, text, words=True)
    prose = is_prose(text)
    value = value_of(canon)
    equation = equation_of(canon) if value is None else None
    structured = value is None and equation is None and is_structured(canon)
    several = value is None and equation is None and is_several(canon)
    relation = bool(_RELATION.search(canon))
    odd_number = bool(_NUMBER_FORMAT.search(text))
    return Gold(text, canon, value, equation, structured, prose, raw if prose else text,
                several=several, relation=relation, odd_number=odd_number, raw=raw)


def _column(columns: dict[str, Any], field: str, reward: str) -> Any:
    if field not in columns:
        have = ", ".join(sorted(k for k in columns if k != "prompt")) or "(none)"
        raise KeyError(
            f"reward {reward!r} reads its reference from column {field!r}, which this sample lacks "
            f"(columns: {have}); set the param answer_field to the column that holds it"
        )
    value = columns[field]
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _shown(text: str | None) -> str | None:
    if text is None or len(text) <= _SHOWN:
        return text
    return text[: _SHOWN - 3] + "..."


# -- accuracy --------------------------------------------------------------------------------
@grpo_host.reward(name="accuracy", timeout=5.0, score_range=(0.0, 1.0))
class Accuracy:
    """1.0 when the completion's final answer equals the gold mathematically, else 0.0.

    The answer is the last ``<answer_tag>`` block, else the last ``\\boxed{}``, else the last
    "answer is ..." phrase, else (``last_expression``) the last math span or number that ends
    the text. With ``answer_in_reasoning=False`` (the default) the ``<think>`` block is not
    read: an answer only inside the reasoning is no answer. Where the exact paths would score
    0 but the completion could be read another way (several boxes, prose, number formats such
    as ``1 000`` or ``0,5``, relations, a gold of several answers), math-verify reads the
    completion itself and has the last word. With several different ``\\boxed{}`` answers and
    ``multiple_answers="reject"``, the completion scores 0. Not applicable (None) when the gold
    is words or not math. An answer longer than ``max_answer_chars`` or nested deeper than
    ``max_nesting`` is refused as an error: it is built to stall the parser, not an answer.

    A class so that building it (in each worker, under the host's build budget rather than a
    sample's timeout) can import math-verify and warm sympy up.

    >>> Accuracy().score("so the answer is \\\\boxed{\\\\frac{1}{2}}", answer="0.5").value
    1.0
    """

    def __init__(
        self,
        answer_field: str = "answer",
        answer_tag: str = "answer",
        last_expression: bool = True,
        multiple_answers: Literal["last", "reject"] = "last",
        answer_in_reasoning: bool = False,
        reasoning_tag: str = "think",
        max_answer_chars: int = 2000,
        max_nesting: int = 20,
    ):
        self.answer_field, self.answer_tag = answer_field, answer_tag
        self.last_expression, self.multiple_answers = last_expression, multiple_answers
        self.answer_in_reasoning, self.reasoning_tag = answer_in_reasoning, reasoning_tag
        self.max_answer_chars, self.max_nesting = max_answer_chars, max_nesting
        from grpo_reward_accuracy import mathverify

        mathverify.warm_up()

    def score(self, completion: Any, **columns: Any) -> grpo_host.Score:
        raw_gold = _column(columns, self.answer_field, "accuracy")
        gold = read_gold(raw_gold) if raw_gold is not None else None
        if gold is None:
            return grpo_host.Score(None, gold=_shown(raw_gold), reason="the gold answer is empty")
        if gold.words:
            return grpo_host.Score(None, gold=_shown(gold.text),
                                   reason="the gold answer is words, not math (exact-match or rouge score those)")
        if not gold.is_math:
            from grpo_reward_accuracy import mathverify

            if mathverify.parse_gold(gold.source, gold.prose) is None:
                return grpo_host.Score(None, gold=_shown(gold.text), reason="the gold answer does not parse as math")

        text = completion_plain(completion)
        if not self.answer_in_reasoning:
            text = outside_reasoning(text, self.reasoning_tag)
        prompt = columns.get("prompt")
        text = remove_echo(text, prompt) if prompt else text
        text = _END_TOKENS.sub("", text)
        found = find_answer(text, answer_tag=self.answer_tag, fallback=self.last_expression)
        if self.last_expression and (found is None or found.source == "last-expression") and is_one_expression(text):
            found = Found(text.strip(), "whole-completion")  # `\frac{10}{9}`, `1 000`: the answer, bare
        if found is None:
            if self.last_expression and _FINISHED.search(text):
                # A finished text whose answer we cannot place: math-verify may still read one.
                return self._second_look(gold, text, {"extracted": None, "gold": _shown(gold.text)}, "no answer found")
            return grpo_host.Score(0.0, extracted=None, gold=_shown(gold.text), path="fast", reason="no answer found")
        answer = found.text.strip()
        if found.source == "answer-phrase" and is_prose(answer):
            # "Final Answer: The largest $n$ is 34.": the expression the sentence ends with.
            answer = (last_expression(answer) or answer).strip()
        details: dict[str, Any] = {"extracted": _shown(answer), "gold": _shown(gold.text), "source": found.source}
        self._refuse_hostile(answer)
        if self.multiple_answers == "reject" and found.candidates > 1:
            return grpo_host.Score(0.0, details, path="fast", reason=f"{found.candidates} different boxed answers")

        canon = canonical(answer)
        if not canon:
            return grpo_host.Score(0.0, details, path="fast", reason="empty answer")
        if canon != gold.canon and copies_prompt_expression(canon, prompt):
            # "What is 12*3+6?" answered \boxed{12*3+6}: equal to 42, and a restated question.
            return grpo_host.Score(0.0, details, path="fast", reason="the answer is an expression copied from the prompt")
        # `32, 349` loses its space in the canonical form: a list to math-verify, so not ours to decide.
        verdict = fast_verdict(gold, canon) if not _SPACED_GROUP.fullmatch(answer) else None
        if verdict is True:
            return grpo_host.Score(1.0, details, path="fast")
        second_look = may_read_otherwise(gold, found, answer, text)
        if verdict is False and not second_look:
            return grpo_host.Score(0.0, details, path="fast")

        from grpo_reward_accuracy import mathverify

        if verdict is None:
            equal, parsed = mathverify.equal(gold.source, gold.prose, answer)
            if equal or not second_look:
                return grpo_host.Score(float(equal), details, path="math-verify", parsed=parsed)
        return self._second_look(gold, text, details, "not equal")

    def _second_look(self, gold: Gold, text: str, details: dict[str, Any], why_not: str) -> grpo_host.Score:
        """The last word: math-verify reads the completion itself, as graders configure it.

        Not on a tail nested past ``max_nesting``: the parser is exponential in nesting, and the
        answer we found (or its absence) already scored 0.
        """
        from grpo_reward_accuracy import mathverify

        tail = _tail(text)
        if nesting_depth(tail) > self.max_nesting:
            return grpo_host.Score(0.0, details, path="fast", reason=f"{why_not}; too deeply nested for a second look")
        equal, read = mathverify.equal_completion(gold.source, gold.prose, gold.raw or gold.source, tail)
        return grpo_host.Score(float(equal), details, path="math-verify-completion", parsed=read)

    def _refuse_hostile(self, answer: str) -> None:
        if len(answer) > self.max_answer_chars:
            raise ValueError(
                f"the extracted answer is {len(answer):,} characters, over max_answer_chars="
                f"{self.max_answer_chars}; raise the param if answers that long are real"
            )
        depth = nesting_depth(answer)
        if depth > self.max_nesting:
            raise ValueError(
                f"the extracted answer nests brackets {depth} deep, over max_nesting={self.max_nesting}; "
                "raise the param if answers that deep are real"
            )


def outside_reasoning(text: str, tag: str = "think") -> str:
    """The completion without its reasoning: closed ``<think>`` blocks, what precedes a lone
    ``</think>``, and everything after a ``<think>`` that never closes (the reasoning was cut off,
    so no final answer was given)."""
    text = strip_reasoning(text, tag)
    opening = f"<{tag}>"
    at = text.find(opening)
    return text[:at] if at >= 0 else text


_TAIL_CHARS = 3000  # what math-verify reads of a completion: its end, where the answer is


def is_one_expression(text: str) -> bool:
    """Whether the whole completion is one bare expression (`\\frac{10}{9}`, `1 000`, `x = 5`):
    short, one line, no math delimiters (those the other steps read) and no word of two or more
    letters outside LaTeX commands (`It is 1 or 2` is a sentence)."""
    text = text.strip()
    if not 0 < len(text) <= 200 or "\n" in text or "$" in text or "\\(" in text or "\\[" in text:
        return False
    return not _LETTERS.search(_COMMAND.sub(" ", _TEXT_COMMAND.sub(" ", text)))


_TEXT_COMMAND = re.compile(r"\\(?:text|mathrm|textbf|mbox|operatorname)\s*\{[^{}]*\}")
_COMMAND = re.compile(r"\\[A-Za-z]+")
_LETTERS = re.compile(r"[A-Za-z]{2,}")


def may_read_otherwise(gold: Gold, found: Found, answer: str, text: str) -> bool:
    """Whether math-verify could read this completion differently from the answer we found.

    Several answers count only against a gold that is not one value: against one value, several
    different boxes are a correction (the last counts) or a spray, which no reading makes right.
    """
    if gold.several or gold.relation or gold.odd_number or is_prose(answer) or _RELATION.search(answer):
        return True
    if gold.value is None and gold.equation is None:
        if found.candidates > 1 or len(boxed_contents(text[-_TAIL_CHARS:])) > 1 or is_several(canonical(answer)):
            return True
    return bool(_NUMBER_FORMAT.search(text[-400:]))


def _tail(text: str) -> str:
    if len(text) <= _TAIL_CHARS:
        return text
    start = len(text) - _TAIL_CHARS
    line = text.find("\n", start)
    return text[line + 1 :] if 0 <= line < start + 500 else text[start:]


# An operation still to carry out. \frac{3}{2}, \sqrt{2} and 2\pi are values as written: an
# answer may name one of several the prompt lists.
_OPERATION = re.compile(r"[+*/^=!]|(?<=[\w})\]])-|\\(?:cdot|times|div|binom|sum|prod|int)\b")


def copies_prompt_expression(canon: str, prompt: Any) -> bool:
    """Whether the answer is a computation written in the prompt ("What is 12*3+6?" answered
    ``\\boxed{12*3+6}``): equal to the gold, and a restated question."""
    if not _OPERATION.search(canon.lstrip("+-")):
        return False
    text = " ".join(prompt_texts(prompt, min_chars=1))
    return bool(text) and canon in canonical(text)


def fast_verdict(gold: Gold, canon: str) -> bool | None:
    """The verdict of the exact paths, when they are certain of math-verify's; else None."""
    if canon == gold.canon:
        return True
    gold_letter, pred_letter = letter(gold.canon), letter(canon)
    if gold_letter is not None and pred_letter is not None:
        return gold_letter == pred_letter  # choices and variables: math-verify ignores case
    # math-verify compares an assignment `y = ...` by its right side, unless both sides are
    # equations of another kind (those it may compare up to a factor).
    equation = equation_of(canon)
    if gold.equation is not None:
        if equation is not None:
            return decide(gold.equation[1], equation[1]) if equation[0] == gold.equation[0] else None
        value = value_of(canon) if "=" not in canon else None
        return decide(gold.equation[1], value) if value is not None else None
    if gold.value is not None:
        value = equation[1] if equation is not None else value_of(canon)
        if value is not None:
            return decide(gold.value, value)
    return decide_structured(gold.canon, gold.value, canon)


# -- exact-match -----------------------------------------------------------------------------
_TEXT_WRAPPER = re.compile(r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}")


def normalize_text(text: str, ignore_case: bool, ignore_punctuation: bool, whitespace: str) -> str:
    text = unicodedata.normalize("NFKC", strip_delimiters(text))
    for _ in range(3):  # \textbf{\text{x}}
        text = _TEXT_WRAPPER.sub(r"\1", text)
    if ignore_case:
        text = text.casefold()
    if ignore_punctuation:
        text = _drop_punctuation(text)
    if whitespace == "collapse":
        text = " ".join(text.split())
    elif whitespace == "remove":
        text = "".join(text.split())
    return text


def _drop_punctuation(text: str) -> str:
    """Remove punctuation, except what belongs to a number: the sign of -3, the point of 3.5."""
    out = []
    for i, ch in enumerate(text):
        if unicodedata.category(ch).startswith("P"):
            prev = text[i - 1] if i else " "
            nxt = text[i + 1] if i + 1 < len(text) else " "
            if ch == "-" and nxt.isdigit() and not prev.isalnum():
                out.append(ch)
            elif ch in ".," and prev.isdigit() and nxt.isdigit():
                out.append(ch)
            else:
                out.append(" ")
            continue
        out.append(ch)
    return "".join(out)


@grpo_host.reward(name="exact-match", timeout=2.0, score_range=(0.0, 1.0))
def exact_match(
    completion: Any,
    answer_field: str = "answer",
    answer_tag: str = "answer",
    ignore_case: bool = True,
    ignore_punctuation: bool = True,
    whitespace: Literal["collapse", "remove", "keep"] = "collapse",
    **columns: Any,
) -> grpo_host.Score:
    """1.0 when the completion's answer equals the reference column after normalization.

    The answer is the last ``<answer_tag>`` block, else the last ``\\boxed{}``, else the last
    "answer is ..." phrase, else the whole completion without its ``<think>`` block. Both sides
    lose math delimiters and ``\\text{}`` wrappers, then case (``ignore_case``), punctuation
    other than a number's sign and decimal point (``ignore_punctuation``) and whitespace
    (``whitespace``: collapse runs to one space, remove all, or keep as is).

    >>> exact_match("<answer> Paris. </answer>", answer="paris").value
    1.0
    """
    reference = _column(columns, answer_field, "exact-match")
    if reference is None or not reference.strip():
        return grpo_host.Score(None, reason="the reference is empty")
    text = strip_reasoning(completion_plain(completion))
    found = find_answer(text, answer_tag=answer_tag, fallback=False)
    answer, source = (found.text, found.source) if found else (text, "completion")
    norm = (ignore_case, ignore_punctuation, whitespace)
    got, want = normalize_text(answer, *norm), normalize_text(reference, *norm)
    return grpo_host.Score(float(got == want), extracted=_shown(got), reference=_shown(want), source=source)


# -- rouge -----------------------------------------------------------------------------------
@grpo_host.reward(name="rouge", timeout=5.0, score_range=(0.0, 1.0))
def rouge(
    completion: Any,
    answer_field: str = "answer",
    answer_tag: str = "answer",
    measure: Literal["f1", "precision", "recall"] = "f1",
    **columns: Any,
) -> grpo_host.Score:
    """ROUGE-L of the completion's answer against the reference column: F1 by default.

    The answer is the last ``<answer_tag>`` block, else the completion without its ``<think>``
    block. ``measure="precision"`` (the share of the answer's words in the common subsequence)
    is what the reference scripts used; it rewards a one-word answer that appears in the
    reference, which F1 does not. Tokens are lowercased runs of letters and digits.

    >>> round(rouge("the cat sat on the mat", answer="the cat is on the mat").value, 3)
    0.833
    """
    reference = _column(columns, answer_field, "rouge")
    if reference is None or not tokenize(reference):
        return grpo_host.Score(None, reason="the reference has no words")
    text = strip_reasoning(completion_plain(completion))
    content = tag_content(text, answer_tag) if answer_tag else None
    prediction, source = (content, "answer-tag") if content is not None else (text, "completion")
    precision, recall, f1 = rouge_l(prediction, reference)
    value = {"f1": f1, "precision": precision, "recall": recall}[measure]
    return grpo_host.Score(value, precision=round(precision, 6), recall=round(recall, 6), f1=round(f1, 6), source=source)
