"""The reward server's throughput and latency at 1, 8 and 32 concurrent clients.

`grpo-host serve-rewards accuracy` runs as a user runs it (a subprocess on 127.0.0.1); each
client thread keeps one HTTP/1.1 connection and posts requests of one GRPO group (8 completions
of one prompt) to `/score` for a fixed time. Beside it, the peer: the same requests scored by
the runtime in process, one after another (what a TRL run pays), so the HTTP cost shows as a
ratio. Completions are arithmetic answers in the usual forms (answer tags, boxes, LaTeX
fractions, wrong answers), so both the exact path and math-verify run.

    python bench/serve_rewards.py [--seconds 10] [--clients 1,8,32] [--reward accuracy] [--workers N]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import subprocess
import sys
import threading
import time

GROUP = 8


def groups(count: int = 256, seed: int = 0) -> list[list[dict]]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        a, b = rng.randint(2, 60), rng.randint(2, 60)
        answer = a * b
        forms = [
            f"<think>{a} * {b} = {answer}</think><answer>{answer}</answer>",
            f"<think>{a} times {b}</think><answer>{answer + rng.randint(1, 9)}</answer>",
            f"Multiplying, the answer is \\boxed{{{answer}}}.",
            f"So it is $\\frac{{{2 * answer}}}{{2}}$.",
            f"<answer>{a * b:,}</answer>",
            "I am not sure.",
            f"\\boxed{{{a}\\cdot{b}}}",
            f"<think>close to {answer - 1}</think><answer>{answer - 1}</answer>",
        ]
        out.append([{"completion": forms[i % len(forms)], "prompt": f"What is {a} * {b}?", "answer": str(answer)}
                    for i in range(GROUP)])
    return out


def start_server(reward: str, workers: int | None) -> tuple[subprocess.Popen, str]:
    argv = [sys.executable, "-m", "grpo_host", "serve-rewards", reward, "--port", "0"]
    if workers:
        argv += ["--workers", str(workers)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "serving rewards" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, line.split()[-1]


def run_clients(url: str, clients: int, seconds: float, work: list[list[dict]]) -> dict:
    host, port = url.removeprefix("http://").split(":")
    latencies: list[float] = []
    done = [0]
    lock = threading.Lock()
    stop = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=120)
        i = k
        while time.monotonic() < stop:
            body = json.dumps({"samples": work[i % len(work)], "details": False})
            started = time.perf_counter()
            conn.request("POST", "/score", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = response.read()
            took = time.perf_counter() - started
            assert response.status == 200, payload[:300]
            with lock:
                latencies.append(took)
                done[0] += GROUP
            i += clients
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    began = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - began
    latencies.sort()
    return {
        "clients": clients,
        "completions_per_s": done[0] / wall,
        "p50_ms": 1000 * statistics.median(latencies),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
        "requests": len(latencies),
    }


def in_process(reward: str, workers: int | None, seconds: float, work: list[list[dict]]) -> dict:
    """The peer: the same groups through the runtime in this process, one after another."""
    from grpo_host.interop.scoring import LocalScorer

    scorer = LocalScorer([reward], workers)
    try:
        scorer.score_json(work[0], details=False)  # warm: workers started, the reward imported
        latencies, count, i = [], 0, 0
        stop = time.monotonic() + seconds
        began = time.perf_counter()
        while time.monotonic() < stop:
            started = time.perf_counter()
            scorer.score_json(work[i % len(work)], details=False)
            latencies.append(time.perf_counter() - started)
            count += GROUP
            i += 1
        wall = time.perf_counter() - began
    finally:
        scorer.close()
    latencies.sort()
    return {"completions_per_s": count / wall, "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--reward", default="accuracy")
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    work = groups()
    print(f"reward {args.reward}; requests of {GROUP} completions; {args.seconds:g} s per point; "
          f"{os.cpu_count()} CPUs", flush=True)
    base = in_process(args.reward, args.workers, args.seconds, work)
    print(f"in process (no HTTP, 1 caller): {base['completions_per_s']:.0f} completions/s, "
          f"p50 {base['p50_ms']:.1f} ms, p99 {base['p99_ms']:.1f} ms", flush=True)
    proc, url = start_server(args.reward, args.workers)
    try:
        run_clients(url, 1, 1.0, work)  # warm the server's pool
        print("| clients | completions/s | vs in process | p50 latency | p99 latency | requests |")
        print("|---|---|---|---|---|---|")
        for clients in (int(c) for c in args.clients.split(",")):
            r = run_clients(url, clients, args.seconds, work)
            print(f"| {clients} | {r['completions_per_s']:.0f} | {r['completions_per_s'] / base['completions_per_s']:.2f}x "
                  f"| {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | {r['requests']} |", flush=True)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


if __name__ == "__main__":
    main()
