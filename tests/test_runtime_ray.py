"""The reward runtime on Ray: a two-node cluster started on this machine (loopback only).

One cluster serves the whole module (it takes ~20 s to start). The same hostile rewards go
through the local pool and through ``executor="ray"``, and the results must be the same, field
for field; actors are killed (``ray.kill``, ``os.kill``) and a node removed in the middle of a
batch, and only that chunk's samples may suffer. Bad settings must fail fast with a message that
says what to do.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request

import pytest

from grpo_host.errors import GrpoHostError
from grpo_host.plugins.installed import load_rewards
from grpo_host.plugins.manager import PluginManager
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples

from .conftest import free_port, run_cli, write_distribution

pytestmark = pytest.mark.slow

MB = 1024 * 1024

PLUGIN = """
    import math, os, signal, sys, time
    import grpo_host

    @grpo_host.reward(name="rough", timeout=3.0)
    def rough(completion: str, **columns):
        '''A number, or one of the ways a reward goes wrong.'''
        if completion == "hang":
            time.sleep(600)
        if completion == "die":
            os._exit(3)
        if completion == "segv":
            os.kill(os.getpid(), signal.SIGSEGV)
        if completion == "exit":
            sys.exit(4)
        if completion == "raise":
            raise ValueError("no score for you")
        if completion == "nan":
            return math.nan
        if completion == "inf":
            return math.inf
        if completion == "none":
            return None
        if completion == "text":
            return "0.5"
        value, _, seconds = completion.partition(":")
        time.sleep(float(seconds or 0))
        return float(value)

    @grpo_host.reference_cache
    def _parse(answer):
        return float(answer)

    @grpo_host.reward(name="cached")
    def cached(completion: str, answer: str, **columns):
        '''1.0 when the completion is the answer; says whether the parsed answer came from the cache.'''
        hits = _parse.cache_info().hits
        gold = _parse(answer)
        return grpo_host.Score(float(float(completion) == gold), cached=_parse.cache_info().hits > hits)

    @grpo_host.reward(name="hog")
    def hog(completion: str, **columns):
        '''Maps COMPLETION megabytes without touching them (refused when over the cap).'''
        import mmap
        block = mmap.mmap(-1, int(completion) << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        return float(len(block) >> 20)

    @grpo_host.reward(name="where", isolation="inline")
    def where(completion: str, **columns):
        '''Inline: runs in the caller's process, whatever the executor.'''
        return grpo_host.Score(1.0, pid=os.getpid())

    @grpo_host.reward(name="lengths")
    class Lengths:
        '''Batched: each completion's length, with the pid that scored it.'''

        def score_batch(self, completions, **columns):
            return [grpo_host.Score(float(len(c)), pid=os.getpid()) for c in completions]

    @grpo_host.hookimpl
    def grpo_rewards():
        return [rough, cached, hog, where, Lengths]
"""

# The hostile batch: (completion, outcome, score) for the `rough` reward.
ROUGH = [
    ("1", "ok", 1.0),
    ("hang", "timeout", None),
    ("2:0.2", "ok", 2.0),
    ("raise", "error", None),
    ("nan", "error", None),
    ("none", "not_applicable", None),
    ("3", "ok", 3.0),
    ("exit", "error", None),
    ("die", "error", None),
    ("inf", "error", None),
    ("segv", "error", None),
    ("text", "error", None),
    ("4:1.2", "ok", 4.0),
    ("5", "ok", 5.0),
    ("6", "ok", 6.0),
    ("7", "ok", 7.0),
]


@pytest.fixture(scope="module")
def cluster():
    """A head node and a second node, one CPU each, on 127.0.0.1; this process is its driver."""
    ray = pytest.importorskip("ray")
    from ray.cluster_utils import Cluster

    saved = {k: os.environ.get(k) for k in ("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "RAY_ADDRESS")}
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    os.environ.pop("RAY_ADDRESS", None)
    small = {"num_cpus": 1, "object_store_memory": 80 * MB}
    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            **small,
            "include_dashboard": False,
            # A removed node is noticed in about a second, not the default 30 s.
            "_system_config": {"health_check_period_ms": 500, "health_check_failure_threshold": 3},
        },
    )
    try:
        cluster.add_node(**small)
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
        yield cluster
    finally:
        ray.shutdown()
        cluster.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture
def manager(plugin_dir):
    write_distribution(plugin_dir, "grpo-reward-rough", {"rough_plugin": PLUGIN}, {"r": "rough_plugin"})
    return PluginManager()


def bound_for(manager, *items):
    return [bind_reward(manager.get_reward(name), dict(params)) for name, params in items]


def rows_of(results):
    return {name: [(r.outcome, r.score, r.details) for r in rows] for name, rows in results.items()}


def children(pid: int) -> list[int]:
    found = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/children") as f:
            found += [int(p) for p in f.read().split()]
    return found


def gone(pids, within=10.0) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not [p for p in pids if os.path.exists(f"/proc/{p}") and "Z" not in _state(p)]:
            return True
        time.sleep(0.1)
    return False


def _state(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "Z"


def busy_actors(runtime, count: int, within: float = 60.0):
    """The actors holding a chunk, once `count` of them do."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        busy = [a for a in list(runtime.pool.actors) if a.chunk is not None and a.pid]
        if len(busy) >= count:
            return busy
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} actors got a chunk within {within} s")


def all_up(runtime, count: int, within: float = 90.0) -> dict[str, int]:
    """Actors per node once `count` are up. Only an actor that is up takes chunks, so a quick
    batch may finish on the first one; slow ones give the others time to start."""
    deadline = time.monotonic() + within
    while sum(runtime.pool.nodes().values()) < count:
        assert time.monotonic() < deadline, f"fewer than {count} actors up within {within} s"
        runtime.score(prepare_samples(["0:0.3"] * (2 * count)))
    return runtime.pool.nodes()


# -- the same results as the local pool --------------------------------------------------------------
def test_hostile_batch_gives_the_local_pools_outcomes_scores_and_details(cluster, manager):
    completions = [c for c, _, _ in ROUGH]
    groups = [str(i // 4) for i in range(32)]  # 8 GRPO groups of 4 sharing a reference
    bound = bound_for(manager, ("rough", {}), ("hog", {"memory_mb": 600}), ("cached", {}), ("where", {}))
    samples = prepare_samples(
        completions + [g if i % 2 else "9" for i, g in enumerate(groups[16:])],
        {"answer": groups[:16] + groups[16:]},
    )
    hog_sizes = ["100", "2000", "300", "5000"] * 8
    for sample, size in zip(samples, hog_sizes, strict=True):
        sample["size"] = size
    by_executor = {}
    for executor in ("local", "ray"):
        with RewardRuntime(bound, workers=2, executor=executor) as runtime:
            hog_samples = [{**s, "completion": s["size"]} for s in samples]
            got = rows_of(runtime.score(samples))
            got["hog"] = rows_of(runtime.score(hog_samples))["hog"]
            if executor == "ray":
                assert len(runtime.pool.nodes()) == 2, runtime.pool.nodes()  # one actor on each node
            # the batch after: exact, and no reply of the last one leaks into it
            again = runtime.score(prepare_samples(["8", "9"], {"answer": ["8", "8"]}))
            assert [r.score for r in again["rough"]] == [8.0, 9.0]
            assert runtime.stale_replies == 0
            got["replaced"] = runtime.replaced_workers  # hang, die, segv: three workers, no actor
            by_executor[executor] = got
    local, ray_rows = by_executor["local"], by_executor["ray"]
    rough = ray_rows["rough"][: len(ROUGH)]
    assert [(o, s) for o, s, _ in rough] == [(o, s) for _, o, s in ROUGH]
    assert "3 s budget" in rough[1][2]["error"] and "SIGSEGV" in rough[10][2]["error"]
    assert [(o, s) for o, s, _ in ray_rows["hog"][:4]] == [
        ("ok", 100.0),
        ("error", None),
        ("ok", 300.0),
        ("error", None),
    ]
    assert "memory cap of 600 MB" in ray_rows["hog"][1][2]["error"]
    # a group's reference is parsed once per chunk: every member but the first hits the cache
    cached = [d["cached"] for o, _, d in ray_rows["cached"][16:] if o == "ok"]
    assert cached.count(False) == 4 and cached.count(True) == 12, cached
    # the inline reward ran here, in the driver, with either executor
    assert {d["pid"] for _, _, d in ray_rows["where"]} == {os.getpid()}
    assert ray_rows["replaced"] == 3
    assert ray_rows == local


def test_load_rewards_with_executor_ray_scores_as_trl_calls_it(cluster, manager):
    funcs = load_rewards([("rough", {"timeout": 5}), "cached"], executor="ray", workers=2, manager=manager)
    try:
        completions = ["1", "raise", "none", "2"]
        assert funcs[0](prompts=["p"] * 4, completions=completions, answer=["1"] * 4) == [
            1.0,
            None,
            None,
            2.0,
        ]
        assert funcs[1](prompts=["p"] * 4, completions=completions, answer=["1"] * 4)[0] == 1.0
        assert type(funcs[0].reward_set.runtime.pool).__name__ == "RayExecutor"
    finally:
        funcs[0].reward_set.close()


# -- actors and nodes that die -----------------------------------------------------------------------
def test_an_actor_killed_mid_batch_is_error_for_its_chunk_and_is_replaced(cluster, manager):
    bound = bound_for(manager, ("rough", {"timeout": 20}))
    batch = [f"{i}:1.0" for i in range(8)]  # 4 chunks of 2; each chunk takes 2 s
    with RewardRuntime(bound, workers=2, executor="ray") as runtime:
        assert [r.score for r in runtime.score(prepare_samples(["0"]))["rough"]] == [0.0]
        for how in ("ray.kill", "os.kill"):
            killed: dict = {}

            def kill_one(how=how, killed=killed):
                actor = busy_actors(runtime, 2)[0]
                time.sleep(0.5)  # inside its first sample
                killed.update(indices=list(actor.chunk.indices), pid=actor.pid, kids=children(actor.pid))
                if how == "ray.kill":
                    import ray

                    ray.kill(actor.handle)
                else:
                    os.kill(actor.pid, signal.SIGKILL)

            killer = threading.Thread(target=kill_one)
            killer.start()
            rows = runtime.score(prepare_samples(batch))["rough"]
            killer.join()
            for i, row in enumerate(rows):
                if i in killed["indices"]:
                    assert row.outcome == "error" and "reward actor died" in row.details["error"], (how, row)
                else:
                    assert (row.outcome, row.score) == ("ok", float(i)), (how, i, row)
            assert killed["kids"] and gone([killed["pid"], *killed["kids"]]), how  # its worker too
        before = runtime.replaced_workers
        assert before >= 2
        rows = runtime.score(prepare_samples([f"{i}:0.1" for i in range(8)]))["rough"]
        assert [(r.outcome, r.score) for r in rows] == [("ok", float(i)) for i in range(8)]
        assert runtime.replaced_workers == before
        assert len(all_up(runtime, 2)) == 2  # the replacements spread over both nodes again


def test_a_node_removed_mid_batch_is_error_for_its_chunk_and_later_batches_are_fine(cluster, manager):
    node = cluster.add_node(num_cpus=1, object_store_memory=80 * MB)
    cluster.wait_for_nodes()
    node_id = node.node_id
    bound = bound_for(manager, ("rough", {"timeout": 30}))
    with RewardRuntime(bound, workers=3, executor="ray") as runtime:
        nodes = all_up(runtime, 3)
        assert node_id in nodes and len(nodes) == 3, nodes
        lost: dict = {}

        def remove():
            busy = busy_actors(runtime, 3)
            time.sleep(0.5)
            on_node = next(a for a in busy if a.node == node_id)
            lost["indices"] = list(on_node.chunk.indices)
            cluster.remove_node(node, allow_graceful=False)

        remover = threading.Thread(target=remove)
        remover.start()
        started = time.monotonic()
        rows = runtime.score(prepare_samples([f"{i}:1.5" for i in range(6)]))["rough"]
        remover.join()
        elapsed = time.monotonic() - started
        for i, row in enumerate(rows):
            if i in lost["indices"]:
                assert row.outcome == "error" and "reward actor died" in row.details["error"], row
            else:
                assert (row.outcome, row.score) == ("ok", float(i)), (i, row)
        assert elapsed < 40, elapsed  # noticed as a death, not waited out
        # The replacement cannot be placed (no CPU left for it): the two actors left take the work.
        rows = runtime.score(prepare_samples([f"{i}:0.1" for i in range(6)]))["rough"]
        assert [(r.outcome, r.score) for r in rows] == [("ok", float(i)) for i in range(6)]
        assert node_id not in runtime.pool.nodes()


def test_actors_the_cluster_cannot_place_never_hold_work(cluster, manager, monkeypatch):
    from grpo_host.rewards import ray_executor

    bound = bound_for(manager, ("rough", {}))
    # Four actors asked of two CPUs: two come up and take every chunk; the others wait unplaced.
    with RewardRuntime(bound, workers=4, executor="ray") as runtime:
        rows = runtime.score(prepare_samples([str(i) for i in range(8)]))["rough"]
        assert [(r.outcome, r.score) for r in rows] == [("ok", float(i)) for i in range(8)]
        assert sum(all_up(runtime, 2).values()) == 2 and len(runtime.pool.actors) == 4
    # No node has 8 CPUs: nothing can start, and the batch says why instead of waiting forever.
    monkeypatch.setattr(ray_executor, "ACTOR_START_S", 2.0)
    started = time.monotonic()
    with RewardRuntime(
        bound, workers=1, executor="ray", executor_options={"num_cpus_per_worker": 8}
    ) as runtime:
        rows = runtime.score(prepare_samples(["1", "2"]))["rough"]
    assert time.monotonic() - started < 30
    assert {r.outcome for r in rows} == {"error"}
    assert "no Ray reward actor started within 2 s" in rows[0].details["error"]
    assert "num_cpus_per_worker" in rows[0].details["error"]


# -- settings -----------------------------------------------------------------------------------------
def test_bad_executor_settings_fail_fast_with_what_to_do(cluster, manager):
    from grpo_host.config import ConfigError, validate_config

    with pytest.raises(
        ConfigError, match=r"runtime.executor: 'rya' is not allowed; allowed: 'local' or 'ray'"
    ):
        validate_config({"rewards": ["length"], "runtime": {"executor": "rya"}})
    with pytest.raises(ConfigError, match="applies to executor: ray only"):
        validate_config({"rewards": ["length"], "runtime": {"address": "127.0.0.1:6379"}})
    with pytest.raises(ConfigError, match=r"runtime.num_cpus_per_worker: 0"):
        validate_config({"rewards": ["length"], "runtime": {"executor": "ray", "num_cpus_per_worker": 0}})
    config = validate_config({"rewards": ["length"], "runtime": {"executor": "ray", "workers": 4}})
    assert (config.runtime.executor, config.runtime.workers, config.runtime.executor_options()) == (
        "ray",
        4,
        {},
    )
    with pytest.raises(GrpoHostError, match="unknown reward executor 'rya'; choose one of: local, ray"):
        load_rewards(["rough"], executor="rya", manager=manager)
    with pytest.raises(
        GrpoHostError, match=r"unknown ray executor option\(s\) adress.*did you mean 'address'"
    ):
        load_rewards(["rough"], executor="ray", adress="x:1", manager=manager)
    # --set on the command line reaches the section, and the error names it
    result = run_cli("train", "--set", "runtime.executor=rya", "--print-config")
    assert result.returncode != 0 and "runtime.executor: 'rya' is not allowed" in result.stderr, result.stderr


def test_an_unreachable_ray_address_is_a_clear_error_within_seconds(cluster):
    # A fresh process: this one is already connected to the test cluster.
    port = free_port()
    script = (
        "import grpo_host\n"
        "try:\n"
        f"    grpo_host.load_rewards(['length'], executor='ray', address='127.0.0.1:{port}')\n"
        "except grpo_host.GrpoHostError as exc:\n"
        "    print(exc)\n"
    )
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert time.monotonic() - started < 30
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in result.stdout, result
    assert "ray start --head" in result.stdout and "RAY_ADDRESS" in result.stdout
    result = subprocess.run(
        [sys.executable, "-c", script.replace(f"127.0.0.1:{port}", "not-an-address")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert "is not host:port" in result.stdout, result


def test_without_ray_installed_the_error_says_how_to_install_it(manager, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError, as when absent
    for call in (
        lambda: load_rewards(["rough"], executor="ray", manager=manager),
        lambda: RewardRuntime(bound_for(manager, ("rough", {})), executor="ray"),
    ):
        with pytest.raises(
            GrpoHostError, match=r"needs Ray, which is not installed: pip install 'grpo-host\[ray\]'"
        ):
            call()


def test_importing_the_host_and_starting_the_cli_import_no_ray():
    code = (
        "import sys, grpo_host, grpo_host.config, grpo_host.cli, grpo_host.rewards.ray_executor\n"
        "from grpo_host.plugins.installed import load_rewards\n"
        "print('ray' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "False", result
    assert "--executor [local|ray]" in run_cli("serve-rewards", "--help").stdout


# -- serve-rewards --executor ray ----------------------------------------------------------------------
def test_serve_rewards_with_executor_ray_scores_on_actors_across_the_cluster(cluster, manager):
    env = {"RAY_ADDRESS": cluster.address, "PYTHONPATH": os.environ["PYTHONPATH"]}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "grpo_host",
            "serve-rewards",
            "rough,cached",
            "--port",
            "0",
            "--executor",
            "ray",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    try:
        line = proc.stdout.readline()
        assert "serving rewards rough, cached on http://127.0.0.1:" in line, (line, proc.stderr.read())
        url = line.split(" on ")[1].strip()
        samples = [{"completion": c, "answer": "1"} for c in ["1", "raise", "none", "2:0.1"]]
        request = urllib.request.Request(
            url + "/score",
            data=json.dumps({"samples": samples}).encode(),
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=60) as response:
            body = json.loads(response.read())
        got = [(r["rewards"]["rough"]["outcome"], r["rewards"]["rough"]["score"]) for r in body["results"]]
        assert got == [("ok", 1.0), ("error", None), ("not_applicable", None), ("ok", 2.0)]
        with urllib.request.urlopen(url + "/health", timeout=30) as response:
            health = json.loads(response.read())
        assert health["workers"] == 2  # the cluster's two CPUs: one actor lane on each node
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    assert proc.returncode == 0, proc.stderr.read()


# -- grpo-host train with runtime.executor: ray ------------------------------------------------------
def test_train_scores_its_rewards_on_ray_actors(cluster, tmp_path):
    from ray._private.state import state

    env = {
        **os.environ,
        "RAY_ADDRESS": cluster.address,
        "GRPO_HOST_CACHE": str(tmp_path / "cache"),
        "CUDA_VISIBLE_DEVICES": "",
    }
    before = {
        a["ActorID"] for a in state.actor_table(None).values() if a["ActorClassName"].endswith("RewardActor")
    }
    out = tmp_path / "run"
    settings = {
        "runtime.executor": "ray",
        "runtime.workers": 2,
        "grpo.max_steps": 1,
        "grpo.per_device_train_batch_size": 8,
        "grpo.num_generations": 4,
        "grpo.max_completion_length": 16,
        "output.report": "false",
        "output.save_model": "false",
    }
    args = ["--output-dir", str(out), *(x for k, v in settings.items() for x in ("--set", f"{k}={v}"))]
    proc = run_cli("train", *args, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    assert [r["step"] for r in rows] == [1]
    for name in ("format", "accuracy", "length"):
        assert sum(rows[-1][f"rewards/{name}/{o}"] for o in ("ok", "not_applicable", "error", "timeout")) == 8
        assert rows[-1][f"rewards/{name}/error"] == 0
    actors = [a for a in state.actor_table(None).values() if a["ActorClassName"].endswith("RewardActor")]
    new = [a for a in actors if a["ActorID"] not in before]
    assert len(new) == 2 and {a["State"] for a in new} == {"DEAD"}  # the run's two actors, stopped with it
    assert len({a["Address"]["NodeID"] for a in new}) == 2  # one on each node


# -- async rewards on actors -------------------------------------------------------------------------
def test_async_rewards_on_ray_give_the_local_pools_outcomes_and_overlap(cluster, plugin_dir):
    """An async reward's waits overlap inside each actor's worker as they do locally, and its
    hostile coroutines end as the same outcomes."""
    from .test_runtime_async import ASYNC_REWARDS

    write_distribution(plugin_dir, "grpo-reward-asyncs", {"async_rewards": ASYNC_REWARDS}, {"a": "async_rewards"})
    manager = PluginManager()
    hostile = ["1:0.05", "raise", "never", "nan", "none", "text", "spawn", "exit", "0.5:0.05"]
    rows = {}
    for executor in ("local", "ray"):
        bound = [bind_reward(manager.get_reward("wait"), {"timeout": 1.0})]
        with RewardRuntime(bound, workers=2, executor=executor) as runtime:
            if executor == "ray":
                all_up(runtime, 2)
            rows[executor] = [(r.outcome, r.score) for r in runtime.score(prepare_samples(hostile))["wait"]]
            start = time.monotonic()
            waits = runtime.score(prepare_samples([f"{i}:0.5" for i in range(64)]))["wait"]
            elapsed = time.monotonic() - start
            assert [r.score for r in waits] == [float(i) for i in range(64)], (executor, [(r.outcome, r.details) for r in waits][:3])
            assert elapsed < 10.0, (executor, elapsed)  # one after another: 32 s
    assert rows["ray"] == rows["local"]
    assert [o for o, _ in rows["ray"]] == ["ok", "error", "timeout", "error", "not_applicable", "error", "ok",
                                           "error", "ok"]


def test_a_batched_reward_is_spread_over_the_actors(cluster, manager):
    """One batch of a batched reward (code, reward models) runs on every actor, one contiguous
    part each, with the local pool's scores: on one actor it would not use the cluster."""
    completions = ["x" * (i % 7) for i in range(24)]
    scores = {}
    for executor in ("local", "ray"):
        with RewardRuntime(bound_for(manager, ("lengths", {})), workers=2, executor=executor) as runtime:
            if executor == "ray":
                all_up(runtime, 2)
            rows = runtime.score(prepare_samples(completions))["lengths"]
        scores[executor] = [r.score for r in rows]
        pids = [r.details["pid"] for r in rows]
        if executor == "ray":
            assert len(set(pids[:12])) == 1 and len(set(pids[12:])) == 1 and pids[0] != pids[12], pids
        else:
            assert len(set(pids)) == 1  # locally the batch stays whole, on one worker
    assert scores["ray"] == scores["local"] == [float(i % 7) for i in range(24)]
