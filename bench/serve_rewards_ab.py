"""The reward server of this checkout against an older one, side by side in one run: 32 clients
sending one sample per request, to each server in turn, with one batch of 256 per request to
this checkout's server in each round as the yardstick.

Both servers run at once (`grpo-host serve-rewards REWARD` on 127.0.0.1), the older one from a
folder holding its `grpo_host` package, e.g.

    git archive <commit> grpo_host | tar -x -C /tmp/old
    python bench/serve_rewards_ab.py --base-src /tmp/old [--rounds 6] [--round-seconds 4]

The clients are bench/serve_rewards.py's (same processes, same checks: every answer against the
same samples scored in process); the older server's reward workers import this checkout's worker
module (only the host side differs).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

import serve_rewards as sr


def start(reward: str, base_src: str | None) -> tuple[subprocess.Popen, str]:
    args = ["serve-rewards", reward, "--port", "0"]
    if base_src is None:
        argv = [sys.executable, "-m", "grpo_host", *args]
    else:  # the older package first on the path, past the editable install's finder
        boot = (
            "import runpy, sys; "
            "sys.meta_path[:] = [f for f in sys.meta_path if 'grpo_host_0' not in repr(f)]; "
            f"sys.path.insert(0, {base_src!r}); sys.argv = ['grpo_host'] + sys.argv[1:]; "
            "runpy.run_module('grpo_host', run_name='__main__', alter_sys=True)"
        )
        argv = [sys.executable, "-c", boot, *args]
    return sr.launch(argv)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--base-src", required=True, help="a folder holding the older grpo_host package")
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--round-seconds", type=float, default=4.0)
    parser.add_argument("--reward", default="accuracy")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--client-procs", type=int, default=1)
    parser.add_argument("--client", choices=sorted(sr.CLIENTS), default="epoll", help="see serve_rewards.py")
    args = parser.parse_args()
    from grpo_host.interop.scoring import bind_rewards, check_samples, results_json
    from grpo_host.rewards.runtime import RewardRuntime

    work = sr.groups()
    bound = bind_rewards([args.reward])
    with RewardRuntime(bound, workers=0) as inline:
        reference = [
            [r["total"] for r in results_json(bound, inline.score(check_samples(g)), len(g), details=False)]
            for g in work
        ]
    single, batch = sr.requests_of(work, reference, 1), sr.requests_of(work, reference, 256)
    servers = {"this checkout": start(args.reward, None), "base": start(args.reward, args.base_src)}
    rates: dict[str, list[float]] = {name: [] for name in servers}
    batch_rates: list[float] = []
    print(f"load average {os.getloadavg()[0]:.1f}", flush=True)
    try:
        for _, url in servers.values():
            sr.run_clients(url, 4, 1.5, sr.requests_of(work, reference, 8), args.client_procs, args.client)  # warm
        new_proc, new_url = servers["this checkout"]
        for k in range(args.rounds):
            b = sr.run_clients(new_url, 1, args.round_seconds, batch, 1, args.client)
            batch_rates.append(b["completions_per_s"])
            for name, (proc, url) in servers.items():
                r = sr.measured(
                    proc.pid,
                    lambda u=url: sr.run_clients(
                        u, args.clients, args.round_seconds, single, args.client_procs, args.client
                    ),
                )
                rates[name].append(r["completions_per_s"])
                print(
                    f"round {k + 1} {name}: {r['completions_per_s']:.0f}/s ({r['completions_per_s'] / b['completions_per_s']:.2f}x "
                    f"of one batch, {b['completions_per_s']:.0f}/s), p50 {r['p50_ms']:.1f} ms, lost {r['lost']}, "
                    f"wrong {r['wrong']}, server {r['server_cpu_us_per_request']:.0f} µs/request, "
                    f"worker {r['worker_cpu_us_per_sample']:.0f} µs/sample, load {os.getloadavg()[0]:.1f}",
                    flush=True,
                )
        for name, values in rates.items():
            ratios = [v / b for v, b in zip(values, batch_rates, strict=True)]
            print(
                f"{name}: median {statistics.median(values):.0f}/s ({min(values):.0f}-{max(values):.0f}), "
                f"vs one batch {statistics.median(ratios):.2f}x median"
            )
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=60)


if __name__ == "__main__":
    main()
