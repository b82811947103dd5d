"""The reward runtime: outcomes, timeouts, crashes, memory caps, caching, TRL form, try-reward."""

from __future__ import annotations

import json
import time

import pytest

from grpo_host.errors import RewardHealthError, RewardParamError
from grpo_host.plugins.installed import load_rewards
from grpo_host.plugins.manager import PluginManager
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples

from .conftest import run_cli, write_distribution

MISCHIEF = """
    import math, os, time
    import grpo_host

    @grpo_host.reward(name="mischief", timeout=1.0)
    def mischief(completion: str, scale: float = 1.0, **columns):
        '''Misbehaves on cue; otherwise scores the completion's number times scale.'''
        if completion == "hang":
            time.sleep(60)
        if completion == "spin":
            while True:
                pass
        if completion == "raise":
            raise ValueError("no number here")
        if completion == "nan":
            return math.nan
        if completion == "inf":
            return -math.inf
        if completion == "none":
            return None
        if completion == "text":
            return "1.0"
        if completion == "die":
            os._exit(3)
        if completion == "hog":
            return len(bytearray(1 << 31))
        return float(completion) * scale

    @grpo_host.reward(name="chatty")
    def chatty(completion: str, messages=None, **columns):
        print("rewards may print; the protocol does not care")
        roles = [m["role"] for m in messages] if messages else []
        return grpo_host.Score(float(completion == columns.get("answer")), roles=roles, prompt=columns.get("prompt"))

    PARSES = []

    @grpo_host.reference_cache
    def parse_gold(answer):
        PARSES.append(answer)
        return int(answer)

    @grpo_host.reward(name="cached")
    def cached(completion: str, answer: str, **columns):
        gold = parse_gold(answer)
        return grpo_host.Score(float(int(completion) == gold), parses=len(PARSES))

    @grpo_host.reward(name="batchy", isolation="inline")
    class Batchy:
        '''A batched, stateful reward that stays in the calling process.'''
        def __init__(self, offset: float = 0.0):
            self.offset = offset
            self.calls = 0

        def score_batch(self, completions, answer=None, **columns):
            self.calls += 1
            if completions and completions[0] == "short":
                return [1.0]
            return [len(c) + self.offset for c in completions]

    @grpo_host.hookimpl
    def grpo_rewards():
        return [mischief, chatty, cached, Batchy]
"""


@pytest.fixture
def manager(plugin_dir):
    write_distribution(plugin_dir, "grpo-reward-mischief", {"mischief_plugin": MISCHIEF}, {"m": "mischief_plugin"}, "2.0.0")
    return PluginManager()


def score(manager, name, completions, params=None, workers=2, **columns):
    bound = bind_reward(manager.get_reward(name), params or {})
    with RewardRuntime([bound], workers=workers) as runtime:
        return runtime.score(prepare_samples(completions, columns))[name], runtime


def test_forty_rows_with_two_hangs_finish_in_seconds_with_honest_outcomes(manager):
    completions = [str(i) for i in range(40)]
    completions[5], completions[30] = "hang", "spin"
    completions[7], completions[11], completions[13], completions[17] = "raise", "nan", "none", "text"
    completions[19] = "inf"
    start = time.monotonic()
    rows, runtime = score(manager, "mischief", completions, {"scale": 0.5, "timeout": 1})
    elapsed = time.monotonic() - start
    assert elapsed < 6, elapsed
    expected = {5: "timeout", 30: "timeout", 7: "error", 11: "error", 13: "not_applicable", 17: "error", 19: "error"}
    for i, row in enumerate(rows):
        assert row.outcome == expected.get(i, "ok"), (i, row)
        if row.outcome == "ok":
            assert row.score == i * 0.5  # exact, not approximately
        else:
            assert row.score is None
    assert "ValueError: no number here" in rows[7].details["error"]
    assert "non-finite" in rows[11].details["error"] and "str" in rows[17].details["error"]
    assert "1 s budget" in rows[5].details["error"]
    assert runtime.replaced_workers == 2
    assert runtime.totals["mischief"] == {"ok": 33, "not_applicable": 1, "error": 4, "timeout": 2}


def test_a_dead_worker_is_replaced_and_the_rest_of_its_chunk_still_scores(manager):
    completions = ["1", "2", "die", "4", "5", "6"]
    rows, runtime = score(manager, "mischief", completions, workers=1)
    assert [r.outcome for r in rows] == ["ok", "ok", "error", "ok", "ok", "ok"]
    assert "exit code 3" in rows[2].details["error"]
    assert [r.score for r in rows if r.outcome == "ok"] == [1.0, 2.0, 4.0, 5.0, 6.0]


def test_memory_per_worker_can_be_capped(manager):
    bound = bind_reward(manager.get_reward("mischief"))
    with RewardRuntime([bound], workers=1, memory_mb=1024) as runtime:
        rows = runtime.score(prepare_samples(["hog", "3"]))["mischief"]
    assert rows[0].outcome == "error" and "MemoryError" in rows[0].details["error"]
    assert rows[1].score == 3.0


def test_pool_lives_across_batches(manager):
    bound = bind_reward(manager.get_reward("mischief"))
    with RewardRuntime([bound], workers=2) as runtime:
        runtime.score(prepare_samples(["1", "2", "3", "4"]))
        pids = {w.proc.pid for w in runtime._all}
        runtime.score(prepare_samples(["5", "6", "7", "8"]))
        workers = set(runtime._all)
        assert {w.proc.pid for w in workers} == pids and len(pids) == 2
    assert all(w.proc.poll() is not None for w in workers)  # close() stopped them


def test_chat_completions_arrive_as_text_with_messages_on_request(manager):
    chat = [[{"role": "assistant", "content": "4"}], [{"role": "assistant", "content": [{"type": "text", "text": "5"}]}]]
    rows, _ = score(manager, "chatty", chat, answer=["4", "4"], prompt=[[{"role": "user", "content": "2+2?"}]] * 2)
    assert [r.score for r in rows] == [1.0, 0.0]
    assert rows[0].details["roles"] == ["assistant"]
    assert rows[0].details["prompt"] == [{"role": "user", "content": "2+2?"}]


def test_reference_work_is_cached_per_group(manager):
    # 4 groups of 8 completions, one worker: the gold of each group is parsed once.
    answers = [str(g) for g in range(4) for _ in range(8)]
    completions = [str(g if i % 2 else g + 1) for g in range(4) for i in range(8)]
    rows, _ = score(manager, "cached", completions, workers=1, answer=answers)
    assert [r.score for r in rows] == [float(i % 2) for i in range(32)]
    assert rows[-1].details["parses"] == 4


def test_missing_column_is_an_error_that_names_it(manager):
    rows, _ = score(manager, "cached", ["1"])
    assert rows[0].outcome == "error" and "needs column(s) answer" in rows[0].details["error"]


def test_inline_batched_class_reward_and_wrong_batch_length(manager):
    rows, _ = score(manager, "batchy", ["ab", "abcd"], {"offset": 0.5})
    assert [r.score for r in rows] == [2.5, 4.5]
    rows, _ = score(manager, "batchy", ["short", "abcd"])
    assert [r.outcome for r in rows] == ["error", "error"]
    assert "returned 1 scores for 2 samples" in rows[0].details["error"]


def test_in_process_mode_scores_without_a_pool(manager):
    rows, runtime = score(manager, "mischief", ["1", "raise"], workers=0)
    assert [r.outcome for r in rows] == ["ok", "error"] and not runtime._all


def test_params_are_validated_with_types_and_suggestions(manager):
    spec = manager.get_reward("mischief")
    assert bind_reward(spec, {"scale": "2.5"}).params == {"scale": 2.5}
    with pytest.raises(RewardParamError, match="'scale': 'lots' is not a valid float"):
        bind_reward(spec, {"scale": "lots"})
    with pytest.raises(RewardParamError, match="did you mean 'scale'"):
        bind_reward(spec, {"scael": 2})
    bound = bind_reward(spec, {"timeout": 3, "weight": 0.5})
    assert (bound.timeout, bound.weight, bound.params) == (3.0, 0.5, {"scale": 1.0})


def test_provenance_names_plugin_version_params_and_hash(manager):
    a = bind_reward(manager.get_reward("mischief"), {"scale": 2}).provenance()
    b = bind_reward(manager.get_reward("mischief"), {"scale": 3}).provenance()
    assert (a["plugin"], a["version"], a["params"]) == ("grpo-reward-mischief", "2.0.0", {"scale": 2.0})
    assert a["import_path"] == "mischief_plugin:mischief"
    assert len(a["params_hash"]) == 16 and a["params_hash"] != b["params_hash"]


def test_trl_form_scores_every_reward_of_the_set_once_per_batch(manager):
    funcs = load_rewards(["mischief", {"name": "cached", "weight": 2.0}], workers=2, manager=manager)
    assert [f.__name__ for f in funcs] == ["mischief", "cached"] and [f.weight for f in funcs] == [1.0, 2.0]
    completions, prompts = ["1", "raise", "3", "none"], ["p"] * 4
    extras = {"trainer_state": object(), "log_extra": print, "log_metric": print, "answer": ["1", "1", "1", "1"]}
    first = funcs[0](prompts=prompts, completions=completions, completion_ids=[[1]] * 4, **extras)
    second = funcs[1](prompts=prompts, completions=completions, completion_ids=[[1]] * 4, **extras)
    assert first == [1.0, None, 3.0, None]
    assert second == [1.0, None, 0.0, None]
    reward_set = funcs[0].reward_set
    assert len(reward_set.step_log) == 1  # the second call read the shared batch
    metrics = reward_set.step_log[0]
    assert metrics["rewards/mischief/error"] == 1 and metrics["rewards/mischief/not_applicable"] == 1
    assert metrics["rewards/mischief/mean"] == 2.0 and metrics["rewards/cached/error"] == 2
    reward_set.close()


def test_a_run_stops_when_a_reward_fails_too_often(manager):
    funcs = load_rewards(["mischief"], workers=1, manager=manager)
    funcs[0].reward_set.min_samples = 9
    funcs[0](prompts=["p"] * 8, completions=["1"] * 7 + ["raise"])  # 12.5%, but only 8 seen
    with pytest.raises(RewardHealthError) as err:
        funcs[0](prompts=["p"] * 8, completions=["1"] * 6 + ["raise"] * 2)
    message = str(err.value)
    assert "reward 'mischief' failed on 3 of 16 samples" in message
    assert "ValueError: no number here" in message and "threshold" in message
    funcs[0].reward_set.close()


def test_try_reward_json_rows_and_single_sample(manager, tmp_path):
    rows = tmp_path / "rows.jsonl"
    rows.write_text("\n".join(json.dumps(r) for r in [
        {"completion": "2", "answer": "2"}, {"completion": "raise", "answer": "2"}, {"completion": "3", "answer": "2"},
    ]) + "\n")
    result = run_cli("try-reward", "mischief,cached", "--input", str(rows), "--json", "--set", "mischief.scale=2")
    assert result.returncode == 0, result.stderr
    out = [json.loads(line) for line in result.stdout.splitlines()]
    assert [o["row"] for o in out] == [0, 1, 2]
    assert out[0]["rewards"]["mischief"]["score"] == 4.0 and out[0]["rewards"]["cached"]["score"] == 1.0
    assert out[0]["total"] == 5.0
    assert out[1]["rewards"]["mischief"]["outcome"] == "error" and out[1]["total"] is None
    assert set(out[2]["rewards"]["cached"]) == {"score", "outcome", "seconds", "details"}
    assert out[2]["total"] == 6.0

    piped = run_cli("try-reward", "mischief", "--input", "-", "--json", input='{"completion": "7"}\n')
    assert json.loads(piped.stdout)["rewards"]["mischief"]["score"] == 7.0
    single = run_cli("try-reward", "chatty", "--completion", "4", "--column", "answer=4", "--explain")
    assert single.returncode == 0 and "chatty" in single.stdout and "roles" in single.stdout
    bad = run_cli("try-reward", "mischief", "--input", str(rows), "--set", "mischief.scale=lots")
    assert bad.returncode == 2 and "is not a valid float" in bad.stderr


def test_a_lone_hanging_sample_is_stopped_at_its_timeout(manager):
    # One sample on a fresh pool: the hang starts while the host still waits on the build budget.
    start = time.monotonic()
    rows, _ = score(manager, "mischief", ["hang"], {"timeout": 1}, workers=1)
    assert rows[0].outcome == "timeout"
    assert time.monotonic() - start < 4
