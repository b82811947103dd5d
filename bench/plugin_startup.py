"""CLI start-up with the plugin guard, side by side with the host before it, in one run.

Sides, alternated round by round (medians of wall time and of CPU time, user + sys of the
command and its children, which a loaded machine disturbs less; then ratios to the first):
  before:   the host without the guard (a checkout given as --before, e.g.
            `git archive adeca00 grpo_host | tar -x -C /tmp/grpo-before`), plugins imported in process
  trusted:  this host, every plugin known good in the trust store (a normal start)
  first:    this host with an empty cache dir: every plugin is tried in a child process first
            (the first start after installing or changing plugins)

    python bench/plugin_startup.py --before /tmp/grpo-before [--rounds 7] [--command plugins]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--before", required=True, help="folder holding the earlier grpo_host package")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--command", default="plugins", help="the grpo-host subcommand (run with --json)")
    args = parser.parse_args()
    argv = [sys.executable, "-m", "grpo_host", args.command, "--json"]
    scratch = tempfile.mkdtemp(prefix="grpo-bench-")  # also the cwd: `-m` puts the cwd first on sys.path
    trusted_cache = os.path.join(scratch, "trusted")
    base = {k: v for k, v in os.environ.items() if not k.startswith("GRPO_HOST_")}

    def env(side: str) -> dict[str, str]:
        if side == "before":
            return {**base, "PYTHONPATH": args.before, "XDG_CACHE_HOME": trusted_cache}
        if side == "trusted":
            return {**base, "XDG_CACHE_HOME": trusted_cache}
        fresh = os.path.join(scratch, "first")
        shutil.rmtree(fresh, ignore_errors=True)
        return {**base, "XDG_CACHE_HOME": fresh}

    sides = ("before", "trusted", "first")
    check = subprocess.run(
        [sys.executable, "-c", "import grpo_host, sys; print(grpo_host.__file__)"],
        env=env("before"),
        capture_output=True,
        text=True,
        check=True,
        cwd=scratch,
    )
    assert check.stdout.startswith(args.before), f"--before is not what runs: {check.stdout}"
    for side in sides:  # untimed: warm the disk cache and the trusted store
        subprocess.run(argv, env=env(side), check=True, capture_output=True, cwd=scratch)
    wall: dict[str, list[float]] = {side: [] for side in sides}
    cpu: dict[str, list[float]] = {side: [] for side in sides}
    for _ in range(args.rounds):
        for side in sides:
            environ = env(side)
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            start = time.perf_counter()
            subprocess.run(argv, env=environ, check=True, capture_output=True, cwd=scratch)
            wall[side].append(time.perf_counter() - start)
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu[side].append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    print(f"grpo-host {args.command} --json, {args.rounds} rounds, medians (load average {os.getloadavg()[0]:.1f}):")
    for side in sides:
        w, c = statistics.median(wall[side]), statistics.median(cpu[side])
        w0, c0 = statistics.median(wall["before"]), statistics.median(cpu["before"])
        print(f"  {side:8s} wall {w * 1000:7.1f} ms ({w / w0:.2f}x before)   cpu {c * 1000:7.1f} ms ({c / c0:.2f}x before)")
    shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
