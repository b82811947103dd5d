"""The reward runtime against hostile rewards: slow, forking, crashing, memory-hungry, stateful.

Each reward here is built in the test as a careless or hostile plugin author would write it.
Every test checks the outcome of the bad sample, that the other samples' scores are exact,
that the next batch is exact, and (where processes are involved) that none is left behind.
"""

from __future__ import annotations

import json
import os
import time

import pytest

from grpo_host.plugins.installed import load_rewards
from grpo_host.plugins.manager import PluginManager
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, default_memory_mb, prepare_samples

from .conftest import run_cli, write_distribution

HOSTILE = """
    import ctypes, gc, math, os, signal, subprocess, sys, time
    from multiprocessing.connection import Connection
    import grpo_host

    def _note(pid_dir, pid):
        if pid_dir:
            with open(os.path.join(pid_dir, f"{pid}.pid"), "w") as f:
                f.write(str(pid))

    def _linger():
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        time.sleep(600)

    @grpo_host.reward(name="slow", timeout=5.0)
    def slow(completion: str, **columns):
        '''"VALUE:SECONDS" sleeps, then scores VALUE; "hang", "die", "segv", "raise" misbehave.'''
        if completion == "hang":
            time.sleep(600)
        if completion == "die":
            os._exit(3)
        if completion == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if completion == "raise":
            raise ValueError("no score")
        value, _, seconds = completion.partition(":")
        time.sleep(float(seconds or 0))
        return float(value)

    @grpo_host.reward(name="forky", timeout=5.0)
    def forky(completion: str, pid_dir: str = "", **columns):
        '''Forks in many careless ways, then scores the completion's number.'''
        if completion == "lingerhang":  # a lingering child, then the sample hangs
            pid = os.fork()
            if pid == 0:
                _linger()
            _note(pid_dir, pid)
            time.sleep(600)
        if completion.startswith("return"):  # a sandbox whose child returns instead of exiting
            pid = os.fork()
            if pid == 0:
                return 999.0
            _note(pid_dir, pid)
        elif completion.startswith("linger"):  # a child that ignores SIGTERM, left running
            pid = os.fork()
            if pid == 0:
                _linger()
                os._exit(0)
            _note(pid_dir, pid)
        elif completion.startswith("daemon"):  # double fork + setsid: escapes the process group
            r, w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.setsid()
                if os.fork() == 0:
                    os.write(w, str(os.getpid()).encode())
                    _linger()
                os._exit(0)
            os.waitpid(pid, 0)
            os.close(w)
            _note(pid_dir, int(os.read(r, 32)))
            os.close(r)
        elif completion.startswith("popen"):  # a program started and never waited for
            proc = subprocess.Popen(["sleep", "600"])
            _note(pid_dir, proc.pid)
        elif completion.startswith("cfork"):  # fork() from C: no Python fork hooks run
            pid = ctypes.CDLL(None).fork()
            if pid == 0:
                _linger()
                os._exit(0)
            _note(pid_dir, pid)
        elif completion.startswith("crash"):  # a lingering child, then the worker segfaults
            pid = os.fork()
            if pid == 0:
                _linger()
                os._exit(0)
            _note(pid_dir, pid)
            os.kill(os.getpid(), signal.SIGSEGV)
        return float(completion.split(":")[-1])

    @grpo_host.reward(name="forger")
    def forger(completion: str, **columns):
        '''On "forge", sends replies on the worker's own stream: one for an earlier task, one
        for rows the host has not asked for yet. The host must drop both.'''
        if completion == "forge":
            frame = sys._getframe()
            while frame is not None and "task" not in frame.f_locals:
                frame = frame.f_back
            task = frame.f_locals["task"]
            for conn in [o for o in gc.get_objects() if isinstance(o, Connection)]:
                if conn.writable and not conn.closed:
                    conn.send(("results", task - 1, 0, [("ok", 999.0, None, 0.0)] * 4))
                    conn.send(("results", task, 3, [("ok", 999.0, None, 0.0)]))
                    conn.send("garbage")
            return 0.5
        return float(completion)

    @grpo_host.reward(name="hog")
    def hog(completion: str, **columns):
        '''Allocates COMPLETION megabytes: "lazy:N" maps them without touching a page (quick on a
        loaded machine), "N" as a bytearray (refused at once when over the cap).'''
        import mmap
        if completion.startswith("lazy:"):
            size = int(completion[5:]) << 20
            block = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            return float(len(block) >> 20)
        return float(len(bytearray(int(completion) << 20)) >> 20)

    @grpo_host.reward(name="wanderer")
    def wanderer(completion: str, **columns):
        '''Moves the worker elsewhere and changes its environment, then scores.'''
        if completion == "move":
            os.chdir("/")
            os.environ["GRPO_LEAK"] = "1"
            os.environ.pop("HOME", None)
        return 1.0

    @grpo_host.reward(name="observer")
    def observer(completion: str, **columns):
        '''Reports the cwd and environment it sees.'''
        return grpo_host.Score(1.0, cwd=os.getcwd(), leak=os.environ.get("GRPO_LEAK"), home=os.environ.get("HOME"))

    @grpo_host.reward(name="mutator")
    def mutator(completion: str, tags: list, **columns):
        '''Mutates its input lists; scores how many tags it saw.'''
        seen = len(tags)
        tags.append("mine")
        columns.get("meta", {}).clear() if isinstance(columns.get("meta"), dict) else None
        return float(seen)

    class BadRepr:
        def __repr__(self):
            raise RuntimeError("repr refused")

    class BadStr(Exception):
        def __str__(self):
            raise RuntimeError("str refused")

    class BadScore(grpo_host.Score):
        @property
        def details(self):
            raise RuntimeError("details refused")

        @details.setter
        def details(self, value):
            pass

    @grpo_host.reward(name="weird")
    def weird(completion: str, **columns):
        '''Returns results that are hard to convert.'''
        if completion == "huge":
            return 10**400
        if completion == "badrepr":
            return grpo_host.Score(1.0, thing=BadRepr())
        if completion == "badstr":
            raise BadStr()
        if completion == "badscore":
            return BadScore(1.0)
        if completion == "exit":
            sys.exit(4)
        if completion == "interrupt":
            raise KeyboardInterrupt
        return float(completion)

    @grpo_host.reward(name="weird-inline", isolation="inline")
    def weird_inline(completion: str, **columns):
        '''The same, in the calling process.'''
        if completion == "exit":
            raise SystemExit(4)
        if completion == "interrupt":
            raise KeyboardInterrupt
        if completion == "genexit":
            raise GeneratorExit
        if completion == "move":
            os.chdir("/")
            os.environ["GRPO_LEAK"] = "inline"
            return 1.0
        return weird(completion)

    @grpo_host.reward(name="exit-at-build", isolation="inline")
    class ExitAtBuild:
        def __init__(self):
            raise SystemExit(2)

        def score(self, completion, **columns):
            return 1.0

    @grpo_host.hookimpl
    def grpo_rewards():
        return [slow, forky, forger, hog, wanderer, observer, mutator, weird, weird_inline, ExitAtBuild]
"""


@pytest.fixture
def manager(plugin_dir):
    write_distribution(
        plugin_dir, "grpo-reward-hostile", {"hostile_plugin": HOSTILE}, {"h": "hostile_plugin"}
    )
    return PluginManager()


def runtime_for(manager, *items, workers=2, memory_mb=None):
    bound = []
    for item in items:
        name, params = item if isinstance(item, tuple) else (item, {})
        alias = params.pop("alias", "")
        bound.append(bind_reward(manager.get_reward(name), params, alias))
    return RewardRuntime(bound, workers=workers, memory_mb=memory_mb)


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


def noted_pids(pid_dir) -> list[int]:
    return [int(p.read_text()) for p in pid_dir.glob("*.pid")]


def wait_gone(pids, within=5.0) -> list[int]:
    deadline = time.monotonic() + within
    left = [p for p in pids if alive(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if alive(p)]
    return left


# -- item 0: slow samples ------------------------------------------------------------------------
def test_samples_slower_than_the_flush_interval_score_exactly_batch_after_batch(manager):
    # The reported crash: 1.5 s samples, three at a time, through load_reward. 1.1 s crosses the
    # worker's one-second flush as well; the second batch must not see the first one's replies.
    # The test's own manager: the process-wide one may predate this test's plugin folder.
    reward = load_rewards([("slow", {"timeout": 20})], manager=manager)[0]
    try:
        for batch in (["1:1.1", "2:1.1", "3:1.1"], ["4:0", "5:1.1", "6:0"], ["7:0"] * 3):
            assert reward(prompts=["p"] * 3, completions=batch) == [float(c.split(":")[0]) for c in batch]
        assert reward.reward_set.runtime.stale_replies == 0
    finally:
        reward.reward_set.close()


# Around the host's poll interval (0.05 s) and the worker's flush interval (1 s), and longer.
SWEEP_DELAYS = [0.01, 0.049, 0.051, 0.1, 0.3, 0.95, 1.0, 1.05, 1.5, 2.2, 3.1]
BAD = {"hang": "timeout", "die": "error", "segv": "error", "raise": "error"}


def sweep_batch(size: int, seed: int) -> tuple[list[str], list[str | float]]:
    """Slow samples (every delay above, shifted by seed), fast ones between them, and from 8
    samples up one hanging, one exiting, one segfaulting and one raising sample."""
    completions, expected = [], []
    bad = {size // 5 + k * (size // 4): kind for k, kind in enumerate(BAD)} if size >= 8 else {}
    for i in range(size):
        if i in bad:
            completions.append(bad[i])
            expected.append(BAD[bad[i]])
        elif size <= 3 or i % 4 == 1:
            completions.append(f"{i}.25:{SWEEP_DELAYS[(i + seed) % len(SWEEP_DELAYS)]}")
            expected.append(i + 0.25)
        else:
            completions.append(f"{i}.5:0")
            expected.append(i + 0.5)
    return completions, expected


@pytest.mark.slow
def test_sweep_of_slow_fast_hanging_and_crashing_samples_in_batches_of_1_to_64(manager):
    import threading

    # A 9.5 s sample inside a 12 s budget, beside fast ones, scored meanwhile by a second pool.
    long = bind_reward(manager.get_reward("slow"), {"timeout": 12})
    long_rows: list = []
    with RewardRuntime([long], workers=2) as long_runtime:
        side = threading.Thread(
            target=lambda: long_rows.extend(
                long_runtime.score(prepare_samples(["1:9.5", "2:0", "3:0.2"]))["slow"]
            )
        )
        side.start()
        with runtime_for(manager, ("slow", {"timeout": 4}), workers=4) as runtime:
            for size, seed in [(1, 7), (2, 8), (3, 5), (5, 0), (8, 3), (16, 6), (64, 0), (33, 4)]:
                completions, expected = sweep_batch(size, seed)
                rows = runtime.score(prepare_samples(completions))["slow"]
                for completion, want, row in zip(completions, expected, rows, strict=True):
                    if isinstance(want, float):
                        assert (row.outcome, row.score) == ("ok", want), (size, completion, row)
                    else:
                        assert (row.outcome, row.score) == (want, None), (size, completion, row)
            assert runtime.stale_replies == 0
            pids = [w.proc.pid for w in runtime._all]
        side.join()
        assert [(r.outcome, r.score) for r in long_rows] == [("ok", 1.0), ("ok", 2.0), ("ok", 3.0)]
        pids += [w.proc.pid for w in long_runtime._all]
    assert wait_gone(pids) == []


# -- item 2: stale replies -----------------------------------------------------------------------
def test_a_forked_child_that_returns_never_answers_for_its_parent(manager, tmp_path):
    pid_dir = str(tmp_path)
    with runtime_for(manager, ("forky", {"pid_dir": pid_dir}), workers=1) as runtime:
        first = runtime.score(prepare_samples(["1", "2", "return:3", "4", "5", "6"]))["forky"]
        assert [(r.outcome, r.score) for r in first] == [("ok", float(i)) for i in range(1, 7)]
        again = runtime.score(prepare_samples(["7", "8", "9"]))["forky"]
        assert [r.score for r in again] == [7.0, 8.0, 9.0]
        assert runtime.replaced_workers == 0
    assert wait_gone(noted_pids(tmp_path)) == []


def test_stale_duplicate_and_malformed_replies_are_dropped_and_counted(manager):
    with runtime_for(manager, "forger", workers=1) as runtime:
        rows = runtime.score(prepare_samples(["1", "2", "forge", "4", "5"]))["forger"]
        assert [(r.outcome, r.score) for r in rows] == [
            ("ok", 1.0),
            ("ok", 2.0),
            ("ok", 0.5),
            ("ok", 4.0),
            ("ok", 5.0),
        ]
        assert runtime.stale_replies == 3
        assert [r.score for r in runtime.score(prepare_samples(["6", "7"]))["forger"]] == [6.0, 7.0]


# -- item 3: children ----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["linger", "daemon", "popen", "cfork"])
def test_processes_a_sample_starts_die_with_the_sample(manager, tmp_path, kind):
    with runtime_for(manager, ("forky", {"pid_dir": str(tmp_path)}), workers=1) as runtime:
        rows = runtime.score(prepare_samples(["1", f"{kind}:2", "3"]))["forky"]
        assert [(r.outcome, r.score) for r in rows] == [("ok", 1.0), ("ok", 2.0), ("ok", 3.0)]
        pids = noted_pids(tmp_path)
        assert len(pids) == 1
        assert wait_gone(pids) == []  # gone before the pool closes: the next sample starts clean
        assert [r.score for r in runtime.score(prepare_samples(["4"]))["forky"]] == [4.0]
        worker = next(iter(runtime._all)).proc.pid
    assert wait_gone([worker]) == []


def test_a_crash_is_an_error_whatever_its_children_hold_open(manager, tmp_path):
    start = time.monotonic()
    with runtime_for(manager, ("forky", {"pid_dir": str(tmp_path), "timeout": 5}), workers=1) as runtime:
        rows = runtime.score(prepare_samples(["1", "crash:2", "3"]))["forky"]
        elapsed = time.monotonic() - start
        assert [r.outcome for r in rows] == ["ok", "error", "ok"]
        assert "SIGSEGV" in rows[1].details["error"]
        assert elapsed < 4, elapsed  # seen as a death at once, not waited out as a timeout
        assert [r.score for r in runtime.score(prepare_samples(["4", "5"]))["forky"]] == [4.0, 5.0]
    assert wait_gone(noted_pids(tmp_path)) == []


def test_a_timed_out_sample_takes_its_children_with_it(manager, tmp_path):
    with runtime_for(manager, ("forky", {"pid_dir": str(tmp_path), "timeout": 1}), workers=1) as runtime:
        pids = [w.proc.pid for w in runtime._all]
        rows = runtime.score(prepare_samples(["1", "lingerhang", "3"]))["forky"]
        assert [(r.outcome, r.score) for r in rows] == [("ok", 1.0), ("timeout", None), ("ok", 3.0)]
        assert len(noted_pids(tmp_path)) == 1 and wait_gone(noted_pids(tmp_path)) == []
        assert [r.score for r in runtime.score(prepare_samples(["4"]))["forky"]] == [4.0]
        pids += [w.proc.pid for w in runtime._all]
    assert wait_gone(pids) == []


# -- item 4: memory ------------------------------------------------------------------------------
def test_a_reward_over_its_memory_cap_is_an_error_that_says_how_to_raise_it(manager):
    with runtime_for(manager, ("hog", {"memory_mb": 600}), workers=1) as runtime:
        rows = runtime.score(prepare_samples(["lazy:400", "1200", "lazy:500", "lazy:700", "5"]))["hog"]
        outcomes = [(r.outcome, r.score) for r in rows]
        assert outcomes == [("ok", 400.0), ("error", None), ("ok", 500.0), ("error", None), ("ok", 5.0)]
        message = rows[1].details["error"]
        assert "memory cap of 600 MB" in message and "hog.memory_mb" in message
        assert "memory cap of 600 MB" in rows[3].details["error"]  # mmap's ENOMEM, told the same way
        assert [r.score for r in runtime.score(prepare_samples(["lazy:300"]))["hog"]] == [300.0]


def test_a_default_memory_cap_applies_and_is_sized_from_the_machine(manager):
    total_mb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") >> 20
    assert default_memory_mb(1) == max(1024, min(4096, total_mb // 2))
    assert default_memory_mb(10_000) == 1024
    with runtime_for(manager, "hog", workers=1) as runtime:
        rows = runtime.score(prepare_samples(["4096", "10"]))["hog"]
        assert (
            rows[0].outcome == "error"
            and f"memory cap of {runtime.pool.memory_mb} MB" in rows[0].details["error"]
        )
        assert rows[1].score == 10.0
    # 0 lifts the cap for one reward; the other keeps the default
    with runtime_for(manager, ("hog", {"memory_mb": 0}), workers=1) as runtime:
        assert runtime.score(prepare_samples(["lazy:5000"]))["hog"][0].score == 5000.0


def test_memory_mb_is_a_host_param_in_the_run_config_and_on_the_command_line(manager):
    from grpo_host.config import RewardEntry

    entry = RewardEntry(name="hog", memory_mb=700)
    assert entry.to_item().memory_mb == 700
    funcs = load_rewards([entry.to_item()], workers=1, manager=manager)
    try:
        assert funcs[0].reward_set.rewards[0].memory_mb == 700
        assert funcs[0](prompts=["p", "p"], completions=["900", "lazy:300"]) == [None, 300.0]
        assert "memory cap of 700 MB" in funcs[0].reward_set._batch["hog"][0].details["error"]
    finally:
        funcs[0].reward_set.close()
    with pytest.raises(Exception, match="memory_mb must be a whole number"):
        bind_reward(manager.get_reward("hog"), {"memory_mb": "lots"})
    result = run_cli("try-reward", "hog", "--completion", "900", "--json", "--set", "hog.memory_mb=650")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)["rewards"]["hog"]
    assert out["outcome"] == "error" and "memory cap of 650 MB" in out["details"]["error"]


def test_set_reaches_memory_mb_of_a_run_config_reward():
    from grpo_host.config import _merge_rewards

    merged = _merge_rewards(["length", {"name": "format"}], {"length": {"memory_mb": 512}})
    assert merged[0] == {"name": "length", "memory_mb": 512}


# -- item 5: state between samples ---------------------------------------------------------------
def test_cwd_and_environment_are_restored_after_every_sample(manager):
    home = os.environ.get("HOME")
    with runtime_for(manager, "wanderer", "observer", workers=1) as runtime:
        completions = ["x", "move", "x", "move", "x"]
        for _ in range(2):
            rows = runtime.score(prepare_samples(completions))
            assert [r.score for r in rows["wanderer"]] == [1.0] * 5
            seen = {(r.details["cwd"], r.details["leak"], r.details["home"]) for r in rows["observer"]}
            assert seen == {(os.getcwd(), None, home)}


def test_inputs_are_private_to_each_sample_in_workers_and_in_process(manager):
    shared = ["a", "b"]  # one object in every row, as TRL passes a group's prompt
    for workers in (1, 0):
        with runtime_for(manager, "mutator", workers=workers) as runtime:
            rows = runtime.score(prepare_samples(["x"] * 4, {"tags": [shared] * 4}))["mutator"]
            assert [r.score for r in rows] == [2.0] * 4, workers
        assert shared == ["a", "b"]


def test_results_that_cannot_be_converted_are_that_samples_error(manager):
    completions = ["1", "huge", "2", "badrepr", "badstr", "badscore", "exit", "interrupt", "3"]
    with runtime_for(manager, "weird", workers=1) as runtime:
        rows = runtime.score(prepare_samples(completions))["weird"]
        assert [r.outcome for r in rows] == [
            "ok",
            "error",
            "ok",
            "error",
            "error",
            "error",
            "error",
            "error",
            "ok",
        ]
        assert [r.score for r in rows if r.outcome == "ok"] == [1.0, 2.0, 3.0]
        assert "too large" in rows[1].details["error"] and "repr refused" in rows[3].details["error"]
        assert "BadStr" in rows[4].details["error"] and "SystemExit" in rows[6].details["error"]
        assert runtime.replaced_workers == 0  # the worker survived all of it
        assert [r.score for r in runtime.score(prepare_samples(["4"]))["weird"]] == [4.0]


# -- item 6: inline rewards ----------------------------------------------------------------------
def test_inline_rewards_never_raise_base_exceptions_into_the_caller(manager):
    cwd, environ = os.getcwd(), dict(os.environ)
    completions = ["1", "exit", "interrupt", "genexit", "huge", "badrepr", "move", "2"]
    with runtime_for(manager, "weird-inline", "exit-at-build", workers=2) as runtime:
        rows = runtime.score(prepare_samples(completions))
    assert [r.outcome for r in rows["weird-inline"]] == ["ok"] + ["error"] * 5 + ["ok", "ok"]
    assert "SystemExit" in rows["weird-inline"][1].details["error"]
    assert "KeyboardInterrupt" in rows["weird-inline"][2].details["error"]
    assert all(r.outcome == "error" and "SystemExit" in r.details["error"] for r in rows["exit-at-build"])
    assert os.getcwd() == cwd and dict(os.environ) == environ
