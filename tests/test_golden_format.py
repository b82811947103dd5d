"""Golden files: reading, the errors on bad files, finding a reward's file, rewriting scores."""

from __future__ import annotations

import importlib
import textwrap

import pytest
import yaml

from grpo_host.golden.loader import (
    GoldenFileError,
    find_golden_file,
    load_golden_file,
    load_golden_for,
    parse_golden_text,
)
from grpo_host.golden.update import GoldenUpdate, format_score, rewrite_golden_text
from grpo_host.rewards.spec import spec_of

GOOD = """\
reward: format            # the reward these cases are for
cases:
  - id: well-formed
    completion: |
      <think>2+2 is 4</think>
      <answer>4</answer>
    prompt: "What is 2+2?"
    columns: {answer: "4"}
    score: 1.0
    why: "one think block, then one answer block"
  - id: chat
    completion: [{role: assistant, content: "<answer>4</answer>"}]
    score: 0.5
    tolerance: 0.01
  - id: no-gold
    completion: "<answer>4</answer>"
    columns: {answer: "not math"}
    outcome: not_applicable
  - id: 7
    completion: ""
    params: {strict: true}
    outcome: error
"""


def test_a_good_file_reads_as_written():
    golden = parse_golden_text(GOOD, "format.yaml", reward="format")
    assert [c.id for c in golden.cases] == ["well-formed", "chat", "no-gold", "7"]
    first, chat, no_gold, numbered = golden.cases
    assert first.completion_text() == "<think>2+2 is 4</think>\n<answer>4</answer>\n"
    assert first.sample_columns() == {"answer": "4", "prompt": "What is 2+2?"}
    assert (first.expected_outcome, first.tolerance) == ("ok", 1e-6)
    assert chat.completion_value() == [{"role": "assistant", "content": "<answer>4</answer>"}]
    assert (chat.tolerance, no_gold.expected_outcome, numbered.params) == (0.01, "not_applicable", {"strict": True})


@pytest.mark.parametrize("text, message", [
    ("reward: r\ncases:\n  - id: a\n    score: 1\n",
     "case 'a' (#1), field 'completion': missing (required)"),
    ("reward: r\ncases:\n  - {id: a, completion: x}\n",
     "case 'a' (#1): needs an expectation: `score: <number>` or `outcome: not_applicable|error|timeout`"),
    ("reward: r\ncases:\n  - {id: a, completion: x, score: 1, outcome: error}\n",
     "case 'a' (#1): has both `score` and `outcome: error`; keep exactly one"),
    ("reward: r\ncases:\n  - {id: a, completion: x, score: 1}\n  - {id: a, completion: y, score: 0}\n",
     "case id 'a' is used twice"),
    ("reward: r\ncases:\n  - {id: a, completion: x, score: high}\n",
     "case 'a' (#1), field 'score': Input should be a valid number"),
    ("reward: r\ncases:\n  - {id: a, completion: x, score: .nan}\n",
     "case 'a' (#1), field 'score': must be a finite number"),
    ("reward: r\ncases:\n  - {id: a, completion: x, score: 1, tolerance: -1}\n",
     "case 'a' (#1), field 'tolerance': Input should be greater than or equal to 0"),
    ("reward: r\ncases:\n  - {id: a, completion: x, outcome: crashed}\n",
     "case 'a' (#1), field 'outcome': Input should be 'ok', 'not_applicable', 'error' or 'timeout'"),
    ("reward: r\ncases:\n  - {id: a, completion: x, score: 1, colums: {}}\n",
     "case 'a' (#1), field 'colums': unknown key; allowed: id, completion, prompt, columns, params"),
    ("reward: r\ncases:\n  - {id: a, completion: [{content: hi}], score: 1}\n",
     "case 'a' (#1), field 'completion.0.role': missing (required)"),
    ("reward: r\ncases:\n  - {completion: x, score: 1}\n", "case #1 (no id), field 'id': missing (required)"),
    ("reward: r\ncases: []\n", "field 'cases': List should have at least 1 item"),
    ("- id: a\n", "a golden file is a mapping with `reward:` and `cases:`"),
    ("reward: r\ncases:\n  - id: a\n    completion: [unclosed\n", "bad.yaml:5:1: not valid YAML (expected ',' or ']'"),
    ("reward: other\ncases:\n  - {id: a, completion: x, score: 1}\n", "this golden file is for reward 'other'"),
])
def test_a_bad_file_names_the_file_the_case_and_the_field(text, message):
    with pytest.raises(GoldenFileError) as error:
        parse_golden_text(text, "golden/bad.yaml", reward="r")
    assert str(error.value).startswith("golden/bad.yaml")
    assert message in str(error.value)


def test_jsonl_golden_files(tmp_path):
    path = tmp_path / "r.jsonl"
    path.write_text('{"reward": "r"}\n{"id": "a", "completion": "x", "score": 0.5}\n\n'
                    '{"id": "b", "completion": "y", "outcome": "not_applicable"}\n')
    golden = load_golden_file(path, reward="r")
    assert [c.id for c in golden.cases] == ["a", "b"]
    new = rewrite_golden_text(path.read_text(), str(path), [GoldenUpdate(str(path), "a", "score 0.5", "ok", 0.75)])
    assert '{"id": "a", "completion": "x", "score": 0.75}' in new and new.startswith('{"reward": "r"}\n')
    (tmp_path / "broken.jsonl").write_text('{"id": "a"\n')
    with pytest.raises(GoldenFileError, match=r"broken.jsonl:1: not a JSON line"):
        load_golden_file(tmp_path / "broken.jsonl")


def test_finding_a_rewards_golden_file(plugin_dir):
    package = plugin_dir / "golden_finding"
    (package / "golden").mkdir(parents=True)
    (package / "data").mkdir()
    (package / "__init__.py").write_text("")
    (package / "rewards.py").write_text(textwrap.dedent('''
        import grpo_host

        @grpo_host.reward(name="plain")
        def plain(completion: str, **columns):
            return 1.0

        @grpo_host.reward(name="elsewhere", golden="data/cases.yaml")
        def elsewhere(completion: str, **columns):
            return 1.0

        @grpo_host.reward(name="none-yet")
        def none_yet(completion: str, **columns):
            return 1.0
    '''))
    case = "cases:\n  - {id: a, completion: x, score: 1.0}\n"
    (package / "golden" / "plain.yaml").write_text("reward: plain\n" + case)
    (package / "data" / "cases.yaml").write_text("reward: elsewhere\n" + case)
    module = importlib.import_module("golden_finding.rewards")
    plain, elsewhere, none_yet = (spec_of(getattr(module, n)) for n in ("plain", "elsewhere", "none_yet"))
    # Relative to the package of the reward's module, through importlib.resources.
    assert str(find_golden_file(plain)) == str(package / "golden" / "plain.yaml")
    assert load_golden_for(elsewhere).cases[0].id == "a"
    assert find_golden_file(none_yet) is None and load_golden_for(none_yet) is None


def test_update_rewrites_only_the_expectation():
    text = textwrap.dedent("""\
        # keep me
        reward: r
        cases:
          - id: a   # and me
            completion: "x"
            score: 0.5
            tolerance: 0.001
          - {id: b, completion: "y", outcome: not_applicable}
          - id: c
            completion: |
              multi
              line
            score: 1.0
    """)
    updates = [GoldenUpdate("r.yaml", "a", "score 0.5", "ok", 2 / 3),
               GoldenUpdate("r.yaml", "b", "outcome not_applicable", "ok", 1e-7),
               GoldenUpdate("r.yaml", "c", "score 1.0", "not_applicable")]
    new = rewrite_golden_text(text, "r.yaml", updates)
    assert new == (text.replace("score: 0.5", "score: 0.666666666667")
                   .replace("outcome: not_applicable}", "score: 1.0e-07}")
                   .replace("    score: 1.0\n", "    outcome: not_applicable\n"))
    golden = parse_golden_text(new, "r.yaml")
    assert golden.case("b").score == 1e-7 and golden.case("c").outcome == "not_applicable"


@pytest.mark.parametrize("value", [0.0, 1.0, -2.5, 1 / 3, 1e-7, 123456789.125, 2.5e20])
def test_scores_are_written_so_yaml_reads_them_back(value):
    text = format_score(value)
    assert isinstance(yaml.safe_load(f"x: {text}")["x"], float)
    assert abs(yaml.safe_load(f"x: {text}")["x"] - value) <= 1e-9 * max(1.0, abs(value))
