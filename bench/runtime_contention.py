"""Spurious timeouts under CPU contention: the first-party `format` reward on 128 well-formed
completions a batch, scored in a loop through ``grpo_host.load_rewards`` (as TRL calls it)
while busy processes compete for the cores, until ``--samples`` are scored.

Every sample takes microseconds against a 5 s budget, so any ``timeout`` (or ``error``, or a
score other than 1.0) is the runtime lying. Prints the counts, the stale replies dropped, the
slowest batch and the rate.

    python bench/runtime_contention.py [--samples 3000000] [--busy 1] [--workers N]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time

BUSY = "while True:\n    pass\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--samples", type=int, default=3_000_000)
    parser.add_argument("--busy", type=int, default=1, help="busy-loop processes beside the run")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--batch", type=int, default=128)
    args = parser.parse_args()

    import grpo_host

    completions = [f"<think>step {i}: add the numbers</think><answer>{i}</answer>" for i in range(args.batch)]
    prompts = ["What is the sum?"] * args.batch
    reward = grpo_host.load_rewards(["format"], workers=args.workers)[0]
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY]) for _ in range(args.busy)]
    try:
        assert reward(prompts=prompts, completions=completions) == [1.0] * args.batch  # warm
        runtime = reward.reward_set.runtime
        base = dict(runtime.totals["format"])
        wrong = batches = 0
        slowest = 0.0
        start = time.perf_counter()
        next_report = start + 30
        while batches * args.batch < args.samples:
            # a new list each call, as TRL builds one per step (the set caches by identity)
            t0 = time.perf_counter()
            scores = reward(prompts=list(prompts), completions=list(completions))
            slowest = max(slowest, time.perf_counter() - t0)
            wrong += sum(s != 1.0 for s in scores)
            batches += 1
            if time.perf_counter() > next_report:
                print(
                    f"  {batches * args.batch:,} samples, {runtime.totals['format']['timeout'] - base['timeout']} timeouts",
                    flush=True,
                )
                next_report += 30
        elapsed = time.perf_counter() - start
        totals = {k: v - base.get(k, 0) for k, v in runtime.totals["format"].items()}
        print(
            f"samples {batches * args.batch:,} in {batches:,} batches of {args.batch}; busy processes {args.busy}; "
            f"workers {runtime.size}; load average {os.getloadavg()[0]:.1f}"
        )
        print(
            f"outcomes {totals}; wrong scores {wrong}; stale replies {runtime.stale_replies}; "
            f"workers replaced {runtime.replaced_workers}"
        )
        print(f"slowest batch {slowest * 1000:.1f} ms; {batches * args.batch / elapsed:,.0f} samples/s")
        reward.reward_set.close()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


if __name__ == "__main__":
    main()
