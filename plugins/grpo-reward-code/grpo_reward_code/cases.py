"""Reading a sample: the program in the completion, its test cases, and whether an output passes.

Test cases come in the field's three shapes (``verification_info`` from open-r1,
``input_output`` from APPS / TACO / PRIME / verl, ``test`` from HumanEval / MBPP) and are turned
into one form, :class:`Tests`: a kind (``stdin``, ``call`` or ``assert``), the inputs that go
into the sandbox, and the expected outputs that stay outside it.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

TEST_FIELDS = ("verification_info", "input_output", "test")
# Fence tags taken as Python, besides a bare fence.
PYTHON_TAGS = frozenset({"python", "py", "python3", "py3"})


@dataclass
class Tests:
    kind: str  # stdin | call | assert
    inputs: list[dict[str, Any]]  # what goes into the sandbox, one per case
    expected: list[Any] = field(default_factory=list)  # stdin: text; call: a JSON value; assert: unused
    fn_name: str | None = None
    entry_point: str | None = None
    source: str = ""  # the column they came from

    def key(self) -> str:
        return json.dumps(
            [self.kind, self.inputs, self.expected, self.fn_name, self.entry_point],
            sort_keys=True,
            default=repr,
        )


class NotApplicable(Exception):
    """The sample's tests are for something this reward does not run (another language)."""


# -- the program ------------------------------------------------------------------------------------
def last_code_block(text: str, language: str = "python") -> str | None:
    """The body of the last closed fenced block tagged ``language`` (or bare), else None.

    As the field's extractors read fences (open-r1's ```` ```python\n(.*?)``` ````), a fence
    may open anywhere, also mid-line (``<answer>```python``): three or more backticks, a tag
    (the first word up to the line's end; none for a bare fence), a newline; it closes at the
    next run of three backticks. One forward pass. An unclosed fence (a completion cut off
    mid-program) is no block; a block tagged with another language is skipped.
    """
    wanted = PYTHON_TAGS if language == "python" else frozenset({language.lower()})
    found: str | None = None
    pos = 0
    while True:
        start = text.find("```", pos)
        if start < 0:
            break
        after = start + 3
        while after < len(text) and text[after] == "`":
            after += 1
        eol = text.find("\n", after)
        if eol < 0:
            break
        words = text[after:eol].split()
        end = text.find("```", eol + 1)
        if end < 0:
            break  # unclosed
        tag = words[0].lower() if words else ""
        if tag == "" or tag in wanted:
            found = text[eol + 1 : end]
        pos = end + 3
        while pos < len(text) and text[pos] == "`":
            pos += 1
    return found


# -- the tests ---------------------------------------------------------------------------------------
def tests_of(
    columns: Mapping[str, Any], field_name: str | None = None, language: str = "python"
) -> Tests | None:
    """The sample's tests from ``field_name`` or the first of TEST_FIELDS it has, else None."""
    if field_name:
        if field_name not in columns or columns[field_name] is None:
            raise KeyError(
                f"tests_field is {field_name!r}, but this sample has no such column; it has "
                f"{', '.join(k for k in columns if k != 'prompt') or '(none)'}"
            )
        return parse_tests(field_name, columns[field_name], columns, language)
    for name in TEST_FIELDS:
        if columns.get(name) is not None:
            return parse_tests(name, columns[name], columns, language)
    return None


def parse_tests(name: str, value: Any, columns: Mapping[str, Any], language: str = "python") -> Tests:
    """Tests from one column: its format is told by its shape, whatever the column is called."""
    if isinstance(value, (bytes, bytearray)):
        value = value.decode("utf-8")
    if isinstance(value, str) and value.lstrip()[:1] in ("{", "["):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            if name != "test":
                raise ValueError(
                    f"column {name!r} is not valid JSON ({exc}); give the test cases as JSON or a dict"
                )
    if isinstance(value, Mapping) and "test_cases" in value:
        return _verification_info(name, value, language)
    if isinstance(value, Mapping) and ("inputs" in value or "outputs" in value):
        return _input_output(name, value)
    if (
        isinstance(value, Mapping) and "input" in value and "output" in value
    ):  # code_contests' public/private_tests
        return _input_output(name, {"inputs": value["input"], "outputs": value["output"]})
    if isinstance(value, str) or (isinstance(value, list) and all(isinstance(t, str) for t in value)):
        return _asserts(name, value, columns)
    raise ValueError(
        f"column {name!r} holds no test cases this reward reads: expected {{'test_cases': [...]}} "
        "(verification_info), {'inputs': [...], 'outputs': [...]} (input_output), or assert code (test); "
        f"got {type(value).__name__} {str(value)[:80]!r}"
    )


def _verification_info(name: str, info: Mapping[str, Any], language: str) -> Tests:
    lang = str(info.get("language") or language).lower()
    if lang not in (PYTHON_TAGS if language == "python" else {language}):
        raise NotApplicable(f"the tests are for {lang}; this reward runs {language}")
    inputs, expected = [], []
    for number, case in enumerate(info["test_cases"] or []):
        kind = case.get("type", "stdin_stdout")
        if kind != "stdin_stdout":
            raise ValueError(
                f"column {name!r} case {number}: type {kind!r} is not supported (only stdin_stdout)"
            )
        inputs.append({"stdin": _text(case.get("input", ""))})
        expected.append(_text(case.get("output", "")))
    return Tests("stdin", inputs, expected, source=name)


def _input_output(name: str, data: Mapping[str, Any]) -> Tests:
    ins, outs = list(data.get("inputs") or []), list(data.get("outputs") or [])
    if len(ins) != len(outs):
        raise ValueError(f"column {name!r} has {len(ins)} inputs but {len(outs)} outputs; they must pair up")
    fn_name = data.get("fn_name")
    if fn_name:
        inputs = [{"args": args if isinstance(args, list) else [args]} for args in ins]
        return Tests("call", inputs, outs, fn_name=str(fn_name), source=name)
    return Tests("stdin", [{"stdin": _text(i)} for i in ins], [_text(o) for o in outs], source=name)


def _asserts(name: str, value: str | list[str], columns: Mapping[str, Any]) -> Tests:
    tests = [value] if isinstance(value, str) else list(value)
    entry = columns.get("entry_point")
    return Tests(
        "assert",
        [{"test": t} for t in tests],
        [None] * len(tests),
        entry_point=str(entry) if entry else None,
        source=name,
    )


def _text(value: Any) -> str:
    if isinstance(value, list):  # some sets give stdin as a list of lines
        return "\n".join(str(v) for v in value)
    return "" if value is None else str(value)


# -- comparing -----------------------------------------------------------------------------------------
def normalized_lines(text: str) -> list[str]:
    """Lines with trailing whitespace dropped, and trailing blank lines dropped."""
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def outputs_match(actual: str, expected: str, float_tolerance: float = 0.0) -> bool:
    """The field's rule: equal up to trailing whitespace per line and trailing blank lines; with
    a tolerance, numbers token by token within it (absolute or relative)."""
    got, want = normalized_lines(actual), normalized_lines(expected)
    if got == want:
        return True
    if float_tolerance <= 0 or len(got) != len(want):
        return False
    for a_line, b_line in zip(got, want, strict=True):
        a_tokens, b_tokens = a_line.split(), b_line.split()
        if len(a_tokens) != len(b_tokens):
            return False
        for a, b in zip(a_tokens, b_tokens, strict=True):
            if a != b and not _close(a, b, float_tolerance):
                return False
    return True


def values_match(actual: Any, expected: Any, float_tolerance: float = 0.0) -> bool:
    """A call's result against the expected JSON value. APPS and TACO wrap each expected result
    in a one-element list, so that wrapping is accepted too."""
    if _equal(actual, expected, float_tolerance):
        return True
    return isinstance(expected, list) and len(expected) == 1 and _equal(actual, expected[0], float_tolerance)


def _equal(a: Any, b: Any, tol: float) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b if isinstance(a, bool) and isinstance(b, bool) else False
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if a == b:
            return True
        return (
            tol > 0 and math.isfinite(a) and math.isfinite(b) and math.isclose(a, b, rel_tol=tol, abs_tol=tol)
        )
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_equal(a[k], b[k], tol) for k in a)
    return a == b


def _close(a: str, b: str, tol: float) -> bool:
    try:
        x, y = float(a), float(b)
    except ValueError:
        return False
    return math.isfinite(x) and math.isfinite(y) and math.isclose(x, y, rel_tol=tol, abs_tol=tol)
