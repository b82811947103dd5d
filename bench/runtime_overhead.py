"""The reward runtime's cost against calling the reward function directly in a loop.

Both sides score the same 1024-completion batch, alternating, several rounds; we report the
median per-batch time of each and their ratio, for a nearly free reward and a CPU-heavy one.
The runtime's pool is warm (as in training, where it lives for the whole run).

With ``--baseline REV`` (or ``--baseline-tree DIR``, a copy of an older ``grpo_host``), the
runtime of that revision runs beside this one: each side in its own process with its own warm
pool, asked for a round of batches in turn (order swapped every round), so both see the same
machine state; the figure is the ratio of their per-sample overheads.

    python bench/runtime_overhead.py [--rounds 7] [--workers N] [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench_rewards

HERE = Path(__file__).resolve().parent
REWARDS = {"cheap": bench_rewards.cheap, "heavy": bench_rewards.heavy}


def batch(n: int = 1024) -> list[str]:
    rng = random.Random(0)
    return ["".join(rng.choice("abcdefgh 0123456789") for _ in range(rng.randint(1, 200))) for _ in range(n)]


def serve(workers: int | None) -> None:
    """One side of a --baseline run: warm pools, then time batches on request (one JSON line)."""
    import grpo_host
    from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples
    from grpo_host.rewards.spec import spec_of

    samples = prepare_samples(batch())
    runtimes = {k: RewardRuntime([bind_reward(spec_of(fn))], workers=workers) for k, fn in REWARDS.items()}
    for runtime in runtimes.values():
        runtime.score(samples)
    print(json.dumps({"ready": str(Path(grpo_host.__file__).parent)}), flush=True)
    for line in sys.stdin:
        name, count = line.split()
        times = []
        for _ in range(int(count)):
            start = time.perf_counter()
            runtimes[name].score(samples)
            times.append(time.perf_counter() - start)
        print(json.dumps(times), flush=True)
    for runtime in runtimes.values():
        runtime.close()


class Side:
    def __init__(self, label: str, tree: Path, workers: int | None):
        env = dict(
            os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(HERE), os.environ.get("PYTHONPATH", "")])
        )
        cmd = [sys.executable, str(HERE / "runtime_overhead.py"), "--serve", "--rewards", ",".join(REWARDS)]
        if workers is not None:
            cmd += ["--workers", str(workers)]
        self.label = label
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.package = json.loads(self.proc.stdout.readline())["ready"]

    def run(self, name: str, count: int) -> list[float]:
        self.proc.stdin.write(f"{name} {count}\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait()


def baseline_tree(rev: str) -> Path:
    root = Path(tempfile.mkdtemp(prefix="grpo-host-baseline-"))
    archive = subprocess.run(
        ["git", "-C", str(HERE.parent), "archive", rev, "grpo_host"], check=True, capture_output=True
    )
    subprocess.run(["tar", "-x", "-C", str(root)], input=archive.stdout, check=True)
    return root


def compare(args: argparse.Namespace, completions: list[str]) -> None:
    tree = Path(args.baseline_tree) if args.baseline_tree else baseline_tree(args.baseline)
    sides = [
        Side(f"baseline ({args.baseline or tree})", tree, args.workers),
        Side("this tree", HERE.parent, args.workers),
    ]
    for side in sides:
        print(f"{side.label}: grpo_host from {side.package}")
    n = len(completions)
    print(
        f"batch: {n} completions; rounds: {args.rounds} x {args.per_round} batches per side, order swapped each round"
    )
    for name, fn in REWARDS.items():
        direct: list[float] = []
        times: dict[str, list[float]] = {s.label: [] for s in sides}
        for r in range(args.rounds):
            for side in sides if r % 2 == 0 else sides[::-1]:
                times[side.label] += side.run(name, args.per_round)
                start = time.perf_counter()
                [fn(c) for c in completions]
                direct.append(time.perf_counter() - start)
        d = statistics.median(direct)
        old, new = (statistics.median(times[s.label]) for s in sides)
        old_over, new_over = (old - d) / n * 1e6, (new - d) / n * 1e6
        print(
            f"{fn.__grpo_reward__.name:12s} direct {d * 1000:8.2f} ms | baseline {old * 1000:8.2f} ms "
            f"({old_over:+6.2f} us/sample) | this tree {new * 1000:8.2f} ms ({new_over:+6.2f} us/sample) | "
            f"batch time this/baseline {new / old:5.3f}x"
            + (f" | overhead this/baseline {new_over / old_over:5.3f}x" if old_over > 0 else "")
        )
    for side in sides:
        side.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--baseline", metavar="REV", help="also run the runtime of this git revision, alternating"
    )
    parser.add_argument("--baseline-tree", metavar="DIR", help="a folder holding an older grpo_host package")
    parser.add_argument(
        "--per-round", type=int, default=5, help="batches per side per round (with --baseline)"
    )
    parser.add_argument("--rewards", default="cheap,heavy", help="which bench rewards: cheap, heavy or both")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    for name in set(REWARDS) - set(args.rewards.split(",")):
        del REWARDS[name]
    if args.serve:
        serve(args.workers)
        return
    completions = batch()
    if args.baseline or args.baseline_tree:
        compare(args, completions)
        return

    from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples
    from grpo_host.rewards.spec import spec_of

    samples = prepare_samples(completions)
    print(f"batch: {len(completions)} completions; rounds: {args.rounds}")
    for fn in REWARDS.values():
        spec = spec_of(fn)
        with RewardRuntime([bind_reward(spec)], workers=args.workers) as runtime:
            runtime.score(samples)  # warm: workers started and the reward imported
            direct, pooled = [], []
            for _ in range(args.rounds):
                start = time.perf_counter()
                [fn(c) for c in completions]
                direct.append(time.perf_counter() - start)
                start = time.perf_counter()
                runtime.score(samples)
                pooled.append(time.perf_counter() - start)
            size = runtime.size
        d, p = statistics.median(direct), statistics.median(pooled)
        print(
            f"{spec.name:12s} direct loop {d * 1000:8.2f} ms | runtime ({size} workers) {p * 1000:8.2f} ms | "
            f"runtime/direct {p / d:6.2f}x | overhead per sample {(p - d) / len(completions) * 1e6:+7.1f} us"
        )


if __name__ == "__main__":
    main()
