"""The reward runtime through Ray actors against the local process pool, side by side in one run.

Three measurements, each with a warm local pool and a warm Ray executor of the same number of
workers, alternating which goes first every round; medians and the ratio Ray / local:

- `accuracy`: the 1024-completion batch of `accuracy_vs_trl.py` (128 references x 8 chat
  completions, a new batch every round);
- `code`: right programs x stdin cases from `code_sandbox.py` through the `code` reward
  (bubblewrap sandbox; a batched reward, so the whole batch is one chunk on one worker, as in
  the local pool);
- per-chunk overhead: `bench-cheap` (microseconds a sample) with one worker, a batch cut into
  one-sample chunks, and one-sample batches one after another: what a chunk costs beyond its
  samples, locally and through Ray.

Ray runs on this machine: one local node (`--nodes 1`, as `ray.init()` starts it) or a
loopback cluster of `--nodes N` nodes sharing the cores (`ray.cluster_utils`).

    cd bench && python ray_executor.py [--rounds 5] [--workers 2] [--nodes 1] [--programs 48] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import accuracy_vs_trl  # noqa: E402
import bench_rewards  # noqa: E402
import code_sandbox  # noqa: E402

from grpo_host.plugins.manager import get_plugin_manager  # noqa: E402
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples  # noqa: E402
from grpo_host.rewards.spec import spec_of  # noqa: E402


def start_ray(nodes: int, cpus: int):
    import ray

    store = 100 * 1024 * 1024
    if nodes <= 1:
        ray.init(num_cpus=cpus, object_store_memory=store, include_dashboard=False, log_to_driver=False)
        return None
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    per = max(1, cpus // nodes)
    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": per, "object_store_memory": store, "include_dashboard": False},
    )
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=per, object_store_memory=store)
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False)
    return cluster


def timed(runtime: RewardRuntime, samples: list[dict]) -> tuple[float, dict]:
    start = time.perf_counter()
    results = runtime.score(samples)
    return time.perf_counter() - start, results


def outcomes(results: dict) -> list:
    return [(r.outcome, r.score) for rows in results.values() for r in rows]


def side_by_side(runtimes: dict, batches: list[list[dict]]) -> dict[str, list[float]]:
    """Each batch through both runtimes, alternating which goes first; results must agree."""
    seconds: dict[str, list[float]] = {name: [] for name in runtimes}
    for i, samples in enumerate(batches):
        order = list(runtimes) if i % 2 == 0 else list(reversed(runtimes))
        got = {}
        for name in order:
            took, results = timed(runtimes[name], samples)
            seconds[name].append(took)
            got[name] = outcomes(results)
        if got["local"] != got["ray"]:
            raise SystemExit(f"batch {i}: the two executors disagree")
    return seconds


def accuracy_batches(rounds: int) -> list[list[dict]]:
    batches = []
    for seed in range(1, rounds + 1):
        batch = accuracy_vs_trl.make_batch(seed)
        batches.append(
            prepare_samples(batch["completions"], {"solution": batch["solution"], "prompt": batch["prompts"]})
        )
    return batches


def code_batches(rounds: int, programs: int) -> list[list[dict]]:
    rows = code_sandbox.tasks(programs, 3, seed=1)
    samples = [
        {"completion": r["completion"], "input_output": r["input_output"], "messages": None} for r in rows
    ]
    return [samples] * rounds


def report(name: str, seconds: dict[str, list[float]], samples: int) -> dict:
    local, ray = statistics.median(seconds["local"]), statistics.median(seconds["ray"])
    row = {
        "batch": name,
        "samples": samples,
        "local_ms": local * 1000,
        "ray_ms": ray * 1000,
        "ratio": ray / local,
        "local_all_ms": [round(s * 1000, 1) for s in seconds["local"]],
        "ray_all_ms": [round(s * 1000, 1) for s in seconds["ray"]],
    }
    print(
        f"{name}: {samples} samples, local {local * 1000:.1f} ms, ray {ray * 1000:.1f} ms, "
        f"ray / local {ray / local:.2f}x (per round local {row['local_all_ms']}, ray {row['ray_all_ms']})",
        flush=True,
    )
    return row


def per_chunk(rounds: int, chunks: int, singles: int) -> dict:
    """What one chunk costs beyond its samples: one worker, one-sample chunks."""
    bound = [bind_reward(spec_of(bench_rewards.cheap))]
    samples = prepare_samples([f"c{i}" for i in range(chunks)])
    results: dict = {}
    with (
        RewardRuntime(bound, workers=1, chunks_per_worker=chunks) as local,
        RewardRuntime(bound, workers=1, chunks_per_worker=chunks, executor="ray") as ray,
    ):
        runtimes = {"local": local, "ray": ray}
        for runtime in runtimes.values():
            runtime.score(samples)
        many = side_by_side(runtimes, [samples] * rounds)
        one = {name: [] for name in runtimes}
        for i in range(singles):
            for name in runtimes if i % 2 == 0 else reversed(list(runtimes)):
                one[name].append(timed(runtimes[name], samples[:1])[0])
    for name in ("local", "ray"):
        results[name] = {
            "chunk_us": statistics.median(many[name]) / chunks * 1e6,
            "one_sample_batch_us": statistics.median(one[name]) * 1e6,
        }
    results["ray_extra_per_chunk_us"] = results["ray"]["chunk_us"] - results["local"]["chunk_us"]
    results["ray_extra_per_batch_us"] = (
        results["ray"]["one_sample_batch_us"] - results["local"]["one_sample_batch_us"]
    )
    print(
        f"per chunk (one worker, {chunks} one-sample chunks a batch): local {results['local']['chunk_us']:.0f} us, "
        f"ray {results['ray']['chunk_us']:.0f} us (+{results['ray_extra_per_chunk_us']:.0f} us); "
        f"a one-sample batch: local {results['local']['one_sample_batch_us']:.0f} us, "
        f"ray {results['ray']['one_sample_batch_us']:.0f} us",
        flush=True,
    )
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--programs", type=int, default=48)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    cluster = start_ray(args.nodes, args.workers)
    print(
        f"Ray up in {time.perf_counter() - started:.1f} s ({args.nodes} node(s), {args.workers} CPUs)",
        flush=True,
    )
    manager = get_plugin_manager()
    rows = []
    try:
        accuracy = [bind_reward(manager.get_reward("accuracy"), {"answer_field": "solution"})]
        code = [bind_reward(manager.get_reward("code"), {"cache": False})]
        for name, bound, batches in (
            ("accuracy", accuracy, accuracy_batches(args.rounds + 1)),
            ("code", code, code_batches(args.rounds + 1, args.programs)),
        ):
            with (
                RewardRuntime(bound, workers=args.workers) as local,
                RewardRuntime(bound, workers=args.workers, executor="ray") as ray,
            ):
                runtimes = {"local": local, "ray": ray}
                cold = side_by_side(runtimes, batches[:1])  # starts the workers, builds the reward
                print(
                    f"{name} cold first batch: local {cold['local'][0] * 1000:.0f} ms, "
                    f"ray {cold['ray'][0] * 1000:.0f} ms (actors start too)",
                    flush=True,
                )
                if name == "accuracy":
                    print(f"  ray actors per node: {sorted(ray.pool.nodes().values())}", flush=True)
                rows.append(report(name, side_by_side(runtimes, batches[1:]), len(batches[0])))
        chunk = per_chunk(args.rounds, args.chunks, singles=50)
    finally:
        import ray

        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
    if args.json:
        print(json.dumps({"batches": rows, "per_chunk": chunk, "nodes": args.nodes, "workers": args.workers}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
