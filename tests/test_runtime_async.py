"""Async rewards in the runtime: waits that overlap, per-sample budgets, hostile coroutines.

The rewards are built in the test as a plugin author would write them and scored through the
real worker pool (and inline, where said). Timings have wide margins for a loaded 2-core
machine, yet each would fail if the samples were awaited one after another.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time

import pytest

from grpo_host.errors import GrpoHostError
from grpo_host.plugins.manager import PluginManager
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples

from .conftest import run_cli, write_distribution

ASYNC_REWARDS = """
    import asyncio, math, os, sys, time
    import grpo_host

    @grpo_host.reward(name="wait", timeout=5.0)
    async def wait(completion: str, **columns):
        '''"VALUE:SECONDS": awaits, then scores VALUE; other words misbehave.'''
        if columns.get("log"):  # who was scored how often
            with open(columns["log"], "a") as f:
                print(completion, file=f)
        if completion == "raise":
            await asyncio.sleep(0.01)
            raise ValueError("no score for you")
        if completion == "never":
            await asyncio.Event().wait()
        if completion == "stubborn":  # swallows its cancellation and goes on waiting
            while True:
                try:
                    await asyncio.sleep(3600)
                except asyncio.CancelledError:
                    pass
        if completion == "block":  # blocks the event loop itself
            time.sleep(600)
        if completion == "spawnblock":  # a task it spawns blocks the loop
            async def later():
                await asyncio.sleep(0.2)
                time.sleep(600)

            asyncio.ensure_future(later())
            await asyncio.sleep(1.0)
            return 0.5
        if completion == "lateblock":  # awaits a while, then blocks the loop
            await asyncio.sleep(1.5)
            time.sleep(600)
        if completion == "nan":
            return math.nan
        if completion == "none":
            return None
        if completion == "text":
            return "ten"
        if completion == "spawn":  # tasks left pending, one of them forever
            asyncio.get_running_loop().create_task(asyncio.sleep(3600))
            asyncio.ensure_future(asyncio.Event().wait())
            return 0.5
        if completion == "exit":
            await asyncio.sleep(0)
            sys.exit(3)
        if completion == "os_exit":
            await asyncio.sleep(0.05)
            os._exit(7)
        if completion == "setloop":
            asyncio.set_event_loop(asyncio.get_running_loop())
            return 0.25
        value, _, seconds = completion.partition(":")
        await asyncio.sleep(float(seconds or 0))
        return float(value)

    @grpo_host.reward(name="loopless", timeout=5.0)
    def loopless(completion: str, **columns):
        '''A sync reward: 1.0 when it finds no event loop in its thread, else 0.0.'''
        try:
            asyncio.get_running_loop()
            return 0.0
        except RuntimeError:
            pass
        policy = asyncio.get_event_loop_policy()
        return 0.0 if getattr(policy._local, "_loop", None) is not None else 1.0

    @grpo_host.reward(name="judge-like", timeout=5.0)
    class JudgeLike:
        '''A class whose score is a coroutine, with a param.'''

        def __init__(self, scale: float = 1.0):
            self.scale = scale

        async def score(self, completion: str, answer: str = "", **columns):
            await asyncio.sleep(0.05)
            return self.scale * float(completion == answer)

    @grpo_host.reward(name="batch-wait", timeout=2.0)
    class BatchWait:
        '''An async score_batch.'''

        async def score_batch(self, completions, **columns):
            if "hang" in completions:
                await asyncio.sleep(3600)
            await asyncio.sleep(0.05)
            return [float(len(c)) for c in completions]

    @grpo_host.hookimpl
    def grpo_rewards():
        return [wait, loopless, JudgeLike, BatchWait]
"""


@pytest.fixture
def manager(plugin_dir):
    write_distribution(
        plugin_dir, "grpo-reward-asyncs", {"async_rewards": ASYNC_REWARDS}, {"a": "async_rewards"}
    )
    return PluginManager()


def bound(manager, name, **params):
    return bind_reward(manager.get_reward(name), params)


def run(manager, completions, *names, workers=2, **params):
    rewards = [bound(manager, n, **params) for n in (names or ("wait",))]
    with RewardRuntime(rewards, workers=workers) as runtime:
        results = runtime.score(prepare_samples(completions))
        return results, runtime.replaced_workers, runtime.stale_replies


def outcomes(rows):
    return [r.score if r.outcome == "ok" else r.outcome for r in rows]


# -- the spec -----------------------------------------------------------------------------------
def test_async_rewards_are_recognised_and_take_concurrency(manager):
    assert manager.get_reward("wait").is_async and manager.get_reward("judge-like").is_async
    assert manager.get_reward("batch-wait").is_async and not manager.get_reward("loopless").is_async
    assert bound(manager, "wait", concurrency="4").concurrency == 4
    assert bound(manager, "wait").concurrency == 32
    for bad in (0, -1, 2.5, "many", True, None.__class__):
        with pytest.raises(GrpoHostError, match="concurrency must be a whole number"):
            bound(manager, "wait", concurrency=bad)
    with pytest.raises(GrpoHostError, match="not async.*remove it"):
        bound(manager, "loopless", concurrency=4)
    data = manager.get_reward("wait").to_json()
    assert data["async"] is True and data["host_params"]["concurrency"] == 32
    assert "concurrency" not in manager.get_reward("loopless").to_json()["host_params"]
    assert bound(manager, "wait", concurrency=3).provenance()["concurrency"] == 3


def test_rewards_json_and_try_reward_set_concurrency(manager):
    listed = json.loads(run_cli("rewards", "--json").stdout)["rewards"]
    wait = next(r for r in listed if r["name"] == "wait")
    assert wait["async"] and wait["host_params"]["concurrency"] == 32
    out = run_cli("try-reward", "wait", "--completion", "0.5:0.01", "--set", "wait.concurrency=2", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rewards"]["wait"]["score"] == 0.5
    out = run_cli("try-reward", "loopless", "--completion", "x", "--set", "loopless.concurrency=2")
    assert out.returncode != 0 and "not async" in out.stderr


# -- overlap ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_sixty_four_half_second_waits_overlap_in_the_pool(manager):
    """The issue's case: 0.5 s per sample, 64 samples, under 6 s (one after another: 32 s)."""
    completions = [f"{i / 64}:0.5" for i in range(64)]
    start = time.monotonic()
    results, replaced, stale = run(manager, completions, workers=2)
    elapsed = time.monotonic() - start
    assert outcomes(results["wait"]) == [i / 64 for i in range(64)]
    assert elapsed < 6.0, elapsed
    assert replaced == 0 and stale == 0
    # Each sample's own time is its wait, not the wait of its chunk.
    assert all(0.45 < r.seconds < 3.0 for r in results["wait"])


def test_concurrency_bounds_the_waits_in_flight(manager):
    """concurrency 2 over any number of workers: 8 waits of 0.3 s take 4 waves (>= 1.2 s)."""
    start = time.monotonic()
    results, _, _ = run(manager, ["1:0.3"] * 8, workers=2, concurrency=2)
    elapsed = time.monotonic() - start
    assert outcomes(results["wait"]) == [1.0] * 8
    assert 1.15 < elapsed < 8.0, elapsed


def test_async_class_and_batched_rewards(manager):
    results, _, _ = run(manager, ["4", "5", "hang"], "batch-wait", workers=1, timeout=0.3)
    assert outcomes(results["batch-wait"]) == ["timeout"] * 3  # one batch, one budget
    rewards = [bind_reward(manager.get_reward("judge-like"), {"scale": 2.0})]
    with RewardRuntime(rewards, workers=1) as runtime:
        rows = runtime.score(prepare_samples(["4", "5"], {"answer": ["4", "4"]}))["judge-like"]
    assert outcomes(rows) == [2.0, 0.0]
    results, _, _ = run(manager, ["ab", "abc"], "batch-wait", workers=1)
    assert outcomes(results["batch-wait"]) == [2.0, 3.0]


# -- hostile coroutines ----------------------------------------------------------------------------
def test_hostile_coroutines_end_as_their_own_outcomes(manager):
    completions = ["1:0.05", "raise", "never", "nan", "none", "text", "spawn", "exit", "stubborn", "0.5:0.05"]
    start = time.monotonic()
    results, replaced, stale = run(manager, completions, "wait", workers=1, timeout=1.0)
    elapsed = time.monotonic() - start
    rows = results["wait"]
    assert outcomes(rows) == [
        1.0,
        "error",
        "timeout",
        "error",
        "not_applicable",
        "error",
        0.5,
        "error",
        "timeout",
        0.5,
    ]
    assert "no score for you" in rows[1].details["error"]
    assert "budget" in rows[2].details["error"] and "cancelled" in rows[2].details["error"]
    assert "non-finite" in rows[3].details["error"] and "str" in rows[5].details["error"]
    assert "SystemExit" in rows[7].details["error"]
    # Cancelled inside the worker: no worker was killed for the never-ending ones.
    assert replaced == 0 and stale == 0
    assert elapsed < 8, elapsed


def test_a_worker_whose_loop_was_thrown_away_scores_the_next_chunk(manager):
    """`stubborn` swallows every cancellation, so its loop is discarded at the chunk's end; the
    same worker's next chunks get a fresh loop and exact scores."""
    with RewardRuntime([bound(manager, "wait", timeout=0.5)], workers=1) as runtime:
        first = runtime.score(prepare_samples(["stubborn", "spawn", "1:0.01"]))["wait"]
        again = runtime.score(prepare_samples(["0.5:0.01", "spawn", "0.25:0.2"]))["wait"]
        assert outcomes(first) == ["timeout", 0.5, 1.0]
        assert outcomes(again) == [0.5, 0.5, 0.25]
        assert runtime.replaced_workers == 0 and len(runtime._all) == 1


def test_run_config_takes_concurrency():
    from pydantic import ValidationError

    from grpo_host.config import RewardEntry

    assert RewardEntry(name="llm-judge", concurrency=8).to_item().concurrency == 8
    assert RewardEntry(name="llm-judge").to_item().concurrency is None  # the default: 32
    with pytest.raises(ValidationError):
        RewardEntry(name="llm-judge", concurrency=0)


def test_a_coroutine_that_blocks_the_loop_gets_its_worker_killed(manager):
    completions = ["1:0.1", "block", "0.5:0.1", "0.25:0.2"]
    start = time.monotonic()
    results, replaced, _ = run(manager, completions, "wait", workers=1, timeout=1.0)
    elapsed = time.monotonic() - start
    rows = results["wait"]
    assert outcomes(rows) == [1.0, "timeout", 0.5, 0.25]  # the blame is exact: the blocker's
    assert "worker was killed" in rows[1].details["error"]
    assert replaced == 1
    assert elapsed < 15, elapsed


def test_a_task_spawned_by_a_sample_is_blamed_on_that_sample(manager):
    """The blocker is a task the sample spawned: it is traced as the sample's work, so the
    sample is blamed, not the oldest one in flight (sample 0)."""
    results, replaced, _ = run(manager, ["1:0.5", "spawnblock", "0.25:0.1"], "wait", workers=1, timeout=1.0)
    assert outcomes(results["wait"]) == [1.0, "timeout", 0.25]
    assert replaced == 1


@pytest.mark.slow
def test_a_late_blocker_after_results_streamed_back(manager, tmp_path):
    """The front of the chunk is sent back while the rest waits (after 1 s); then a sample
    blocks the loop: it alone is blamed, what was sent stands, the rest is scored again."""
    completions = ["1:1.2", "0.5:0.1", "lateblock", "0.25:0.1", "0.75:2.0"]
    log = tmp_path / "scored.txt"
    with RewardRuntime([bound(manager, "wait", timeout=2.5)], workers=1) as runtime:
        rows = runtime.score(prepare_samples(completions, {"log": [str(log)] * 5}))["wait"]
        replaced, stale = runtime.replaced_workers, runtime.stale_replies
    assert outcomes(rows) == [1.0, 0.5, "timeout", 0.25, 0.75]
    assert "worker was killed" in rows[2].details["error"]
    assert replaced == 1 and stale == 0
    scored = log.read_text().splitlines()
    # Sent before the kill: not scored again. The blocker: not again either. The rest: twice.
    assert [scored.count(c) for c in completions] == [1, 1, 1, 2, 2], scored


def test_exits_kill_only_their_sample(manager):
    completions = ["1:0.2", "os_exit", "0.5:0.3", "exit"]
    results, replaced, _ = run(manager, completions, "wait", workers=1, timeout=3.0)
    rows = results["wait"]
    assert outcomes(rows) == [1.0, "error", 0.5, "error"]
    assert "exit code 7" in rows[1].details["error"] and "SystemExit" in rows[3].details["error"]
    assert replaced == 1


def test_no_event_loop_leaks_into_a_sync_reward_in_the_same_worker(manager):
    """One worker scores the async chunk (which even installs its loop as the thread's), then
    the sync reward's chunk: it must find no loop, running or set."""
    rewards = [bound(manager, "wait"), bound(manager, "loopless")]
    with RewardRuntime(rewards, workers=1) as runtime:
        for _ in range(2):
            results = runtime.score(prepare_samples(["setloop", "spawn", "1:0.01"]))
            assert outcomes(results["wait"]) == [0.25, 0.5, 1.0]
            assert outcomes(results["loopless"]) == [1.0, 1.0, 1.0]
        assert len(runtime._all) == 1 and runtime.replaced_workers == 0


def test_inline_async_rewards_overlap_and_keep_their_budgets(manager):
    rewards = [bound(manager, "wait", timeout=1.0), bound(manager, "loopless")]
    with RewardRuntime(rewards, workers=0) as runtime:
        start = time.monotonic()
        results = runtime.score(prepare_samples(["1:0.3"] * 16 + ["never", "raise", "exit"]))
        elapsed = time.monotonic() - start
        assert outcomes(results["wait"]) == [1.0] * 16 + ["timeout", "error", "error"]
        assert outcomes(results["loopless"]) == [1.0] * 19
        assert elapsed < 4.0, elapsed  # one after another: 4.8 s plus the timeout
    assert asyncio._get_running_loop() is None


def test_inline_async_inside_a_running_event_loop(manager):
    """A notebook or an async server calling the runtime from its own loop."""
    rewards = [bound(manager, "wait")]

    async def from_a_loop():
        with RewardRuntime(rewards, workers=0) as runtime:
            return runtime.score(prepare_samples(["1:0.05", "0.5:0.05"]))["wait"]

    assert outcomes(asyncio.run(from_a_loop())) == [1.0, 0.5]


def test_build_awaits_async_rewards_one_by_one(manager):
    score = manager.get_reward("wait").build({})
    raws = score([{"completion": "1:0"}, {"completion": "raise"}])
    assert raws[0] == 1.0 and isinstance(raws[1], ValueError)


BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@pytest.mark.slow
def test_overlap_holds_under_cpu_contention(manager):
    """A busy process per core: the waits still overlap (64 x 0.5 s in well under the 32 s of
    one after another) and every sample is scored."""
    hogs = [
        subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=30)]) for _ in range(os.cpu_count() or 2)
    ]
    try:
        completions = [f"{i / 64}:0.5" for i in range(64)]
        start = time.monotonic()
        results, replaced, _ = run(manager, completions, workers=2)
        elapsed = time.monotonic() - start
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert outcomes(results["wait"]) == [i / 64 for i in range(64)]
    assert replaced == 0
    assert elapsed < 12.0, elapsed
    assert not math.isnan(elapsed)
