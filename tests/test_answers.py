"""grpo_host.answers: the documented order of find_answer, each step on its own (tags, boxes
with brace matching, the answer phrase, the last expression, prompt echo), linear time on
megabytes of hostile text, the module's examples, and that it imports nothing but the stdlib.
"""

from __future__ import annotations

import ast
import doctest
import subprocess
import sys
import time

import pytest

from grpo_host import answers
from grpo_host.answers import (
    answer_phrase,
    balanced_group,
    boxed_contents,
    find_answer,
    is_prose,
    last_boxed,
    last_expression,
    prompt_texts,
    remove_echo,
    strip_reasoning,
    tag_content,
    tag_contents,
)


def found(text, **kwargs):
    result = find_answer(text, **kwargs)
    return None if result is None else (result.text, result.source)


# -- the order -------------------------------------------------------------------------------
def test_order_tag_then_boxed_then_phrase_then_last_expression():
    text = r"The answer is 3. Then \boxed{4}. <answer>5</answer> Finally 6."
    assert found(text) == ("5", "answer-tag")
    text = text.replace("<answer>5</answer>", "")
    assert found(text) == ("4", "boxed")
    text = text.replace(r"\boxed{4}", "")
    assert found(text) == ("3", "answer-phrase")
    assert found("So we get 6 apples.") == ("6", "last-expression")
    assert found("So we get 6 apples.", fallback=False) is None
    assert found("We get $x = 5$. Now we check the other") is None  # cut off mid-reasoning


def test_inside_the_answer_tag():
    assert found(r"<answer>so it is \boxed{7}</answer>") == ("7", "answer-tag")
    assert found("<answer>The answer is 8.</answer>") == ("8", "answer-tag")
    assert found("<answer>We get 5 apples</answer>") == ("5", "answer-tag")  # prose: its last expression
    assert found(r"<answer>\frac{1}{2}</answer>") == (r"\frac{1}{2}", "answer-tag")
    assert found("<answer>Paris</answer>") == ("Paris", "answer-tag")  # no expression: the content
    assert found(r"\boxed{1} <answer>2</answer>", answer_tag="") == ("1", "boxed")  # "" skips the tag step
    assert found(r"<sol>3</sol> \boxed{1}", answer_tag="sol") == ("3", "answer-tag")


def test_candidates_count_different_boxed_answers():
    assert find_answer(r"\boxed{1} or \boxed{2}").candidates == 2
    assert find_answer(r"\boxed{1} so \boxed{ 1 }").candidates == 1


def test_prompt_echo_is_removed_first():
    prompt = [{"role": "user", "content": r"What is 6*7? Put the final answer in \boxed{}."}]
    echoed = r"What is 6*7? Put the final answer in \boxed{}. Let me think."
    assert found(echoed) == ("", "boxed")
    assert found(echoed, prompt=prompt) is None
    assert found(echoed + r" \boxed{42}", prompt=prompt) == ("42", "boxed")
    assert remove_echo("short 2", "short 2") == "short 2"  # under MIN_ECHO_CHARS: kept
    assert prompt_texts([{"content": [{"type": "text", "text": " a "}]}, "b", {"content": None}], min_chars=1) == ["a", "b"]
    assert prompt_texts(None) == [] and prompt_texts("tiny") == []


# -- tags ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    ("<answer>1</answer>", "1"),
    ("<answer>1</answer><answer>2</answer>", "2"),
    ("<answer>1</answer><answer>2", "1"),  # an unclosed block at the end is skipped
    ("<answer>1<answer>2</answer>", "2"),
    ("<answer>1</answer> x </answer>", "1"),  # up to the first closing tag after the opening
    ("<answer></answer>", ""),
    ("<answer>1", None),
    ("1</answer>", None),
    ("<ANSWER>1</ANSWER>", None),  # case matters unless ignore_case
])
def test_tag_content(text, expected):
    assert tag_content(text, "answer") == expected
    assert tag_content(text, "<answer>") == expected


def test_tag_options():
    assert tag_content("<ANSWER>1</Answer>", "answer", ignore_case=True) == "1"
    assert tag_content("<answer>1</answer>", "") is None
    assert tag_content("<a.b>1</a.b> <aXb>2</aXb>", "a.b") == "1"  # the name is literal, not a pattern
    assert tag_contents("<think>a</think> <THINK>b</THINK> <think>c", "think") == ["a"]
    assert tag_contents("<think>a</think> <THINK>b</THINK> <think>c", "think", ignore_case=True) == ["a", "b"]
    assert tag_contents("x", "") == []


def test_strip_reasoning():
    assert strip_reasoning("<think>a</think>b<think>c</think>d") == "bd"
    assert strip_reasoning("<think>a</think>b<think>unclosed") == "b<think>unclosed"
    assert strip_reasoning("reasoning begun in the prompt</think>answer") == "answer"
    assert strip_reasoning("<r>x</r>y", tag="r") == "y"


# -- boxes and braces ------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "expected"), [
    (r"\boxed{\frac{\sqrt{3}}{2}}", [r"\frac{\sqrt{3}}{2}"]),
    (r"\boxed{1} then \fbox{2}", ["1", "2"]),
    (r"\boxed{\boxed{ \boxed{x} }}", ["x"]),
    (r"\boxed{x = \boxed{5}}", [r"x = \boxed{5}"]),  # a box inside other content is content
    (r"\boxed{\{1, 2\}}", [r"\{1, 2\}"]),  # escaped braces do not count
    (r"\boxed 5 and \boxed {6}", ["5", "6"]),
    (r"\boxed{unclosed \boxed{3}", ["3"]),
    (r"\boxed{", []),
    (r"\boxedx{1}", []),  # another command
])
def test_boxed_contents(text, expected):
    assert boxed_contents(text) == expected
    assert last_boxed(text) == (expected[-1] if expected else None)


def test_balanced_group():
    text = r"\frac{a{b}}{c\}}"
    assert balanced_group(text, 5) == ("a{b}", 11)
    assert balanced_group(text, 11) == (r"c\}", 16)
    assert balanced_group(text, 0) is None  # not a brace
    assert balanced_group("{{}", 0) is None  # never closes
    assert balanced_group(r"\{x}", 1) is None  # an escaped brace opens nothing
    assert balanced_group("{abc}", 0, limit=4) is None and balanced_group("{abc}", 0, limit=5) == ("abc", 5)


# -- the phrase and the last expression ------------------------------------------------------
def test_answer_phrase():
    assert answer_phrase("The answer is 4. Then the answer: $x+1$ done") == "x+1"
    assert answer_phrase("Natalia sold 72 clips.\n#### 72") == "72"
    assert answer_phrase("Final Answer = 12; so") == "12"
    assert answer_phrase("answers are here") is None and answer_phrase("the answer is .") is None


def test_last_expression_must_end_the_text():
    assert last_expression("so it is 42 apples in total.") == "42"
    assert last_expression(r"which gives \(x^2\)") == "x^2"
    assert last_expression("it is 1 or 2 or 3") == "1, 2, 3"  # alternatives together
    assert last_expression("the pairs 3, 4") == "4"  # a list without "or": its last item
    assert last_expression("42. Next we look at the other case") is None
    assert last_expression("42\nthen two\nmore lines") is None
    assert last_expression("no numbers") is None
    assert last_expression("x" * 5_000 + " 7") == "7"  # only the tail is read


def test_is_prose():
    assert is_prose("We get 5 apples") and not is_prose(r"\sin x + \log 2")
    assert not is_prose(r"\text{cm} 5") and not is_prose(r"\begin{pmatrix}1\end{pmatrix}")


# -- hostile input ---------------------------------------------------------------------------
MEGABYTE = 1_000_000


@pytest.mark.parametrize("name", ["unbalanced-boxed", "unclosed-tags", "closing-tags", "braces", "dollars", "phrases"])
def test_a_megabyte_of_hostile_text_stays_linear(name):
    hostile = {
        "unbalanced-boxed": "\\boxed{" * (MEGABYTE // 7),
        "unclosed-tags": "<answer>" * (MEGABYTE // 8),
        "closing-tags": "</answer>" * (MEGABYTE // 9),
        "braces": "{" * (MEGABYTE // 2) + "}" * (MEGABYTE // 2),
        "dollars": "$" * MEGABYTE,
        "phrases": "answer is " * (MEGABYTE // 10),
    }[name]
    # CPU time, not wall time: a loaded CI box stretches the wall clock, not the work done.
    start = time.process_time()
    find_answer(hostile, prompt="x" * 100)
    tag_content(hostile, "answer", ignore_case=True)
    tag_contents(hostile, "answer")
    strip_reasoning(hostile)
    balanced_group(hostile, hostile.find("{")) if "{" in hostile else None
    assert time.process_time() - start < 1.0, f"{name}: {time.process_time() - start:.2f} s CPU"


# -- the module ------------------------------------------------------------------------------
def test_every_public_function_has_a_working_example():
    for name in answers.__all__:
        obj = getattr(answers, name)
        if callable(obj) and not isinstance(obj, type):
            assert obj.__doc__ and ">>> " in obj.__doc__, f"{name} has no example in its docstring"
    assert answers.__doc__.splitlines()[0]
    result = doctest.testmod(answers, optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def test_imports_only_the_standard_library():
    tree = ast.parse(open(answers.__file__, encoding="utf-8").read())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert imported - {"__future__"} <= set(sys.stdlib_module_names), imported
    code = "import sys, grpo_host.answers; print(sorted(m for m in ('torch', 'sympy', 'math_verify', 'transformers') if m in sys.modules))"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
