"""CLI start-up: `grpo-host plugins` against what a host that imports its trainer at start pays.

Runs `python -m grpo_host plugins` and `python -c "from trl import GRPOTrainer"` alternately,
several rounds each, in one run; prints the medians and the ratio (goal: at least 20x).

    python bench/startup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

COMMANDS = {
    "grpo-host plugins": [sys.executable, "-m", "grpo_host", "plugins", "--json"],
    "from trl import GRPOTrainer": [sys.executable, "-c", "from trl import GRPOTrainer"],
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for argv in COMMANDS.values():  # one untimed run each: warm the disk cache
        subprocess.run(argv, check=True, capture_output=True)
    for _ in range(args.rounds):
        for name, argv in COMMANDS.items():
            start = time.perf_counter()
            subprocess.run(argv, check=True, capture_output=True)
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name:30s} median {median * 1000:8.1f} ms over {args.rounds} rounds")
    ratio = medians["from trl import GRPOTrainer"] / medians["grpo-host plugins"]
    print(f"grpo-host plugins is {ratio:.1f}x faster than importing the trainer")


if __name__ == "__main__":
    main()
