"""The reward runtime's cost against calling the reward function directly in a loop.

Both sides score the same 1024-completion batch, alternating, several rounds; we report the
median per-batch time of each and their ratio, for a nearly free reward and a CPU-heavy one.
The runtime's pool is warm (as in training, where it lives for the whole run).

    python bench/runtime_overhead.py [--rounds 7] [--workers N]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import bench_rewards

from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples
from grpo_host.rewards.spec import spec_of


def batch(n: int = 1024) -> list[str]:
    rng = random.Random(0)
    return ["".join(rng.choice("abcdefgh 0123456789") for _ in range(rng.randint(1, 200))) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    completions = batch()
    samples = prepare_samples(completions)
    print(f"batch: {len(completions)} completions; rounds: {args.rounds}")
    for fn in (bench_rewards.cheap, bench_rewards.heavy):
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
