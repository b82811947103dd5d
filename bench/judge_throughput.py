"""`llm-judge` throughput: judged completions per second against a judge's latency.

A scripted OpenAI-compatible judge (tests/judge_server.py: starlette on uvicorn) runs in its
own process on 127.0.0.1 and answers each request after a fixed latency (0.1, 0.5, 2 s by
default), as a served judge model would. Side by side, alternating in each round:

- `grpo-host c=32`: `grpo_host.load_reward("llm-judge")` at the default concurrency, through the
  real runtime (worker pool, per-sample budgets), called as TRL calls a reward function;
- `grpo-host c=1`: the same with `concurrency=1`: one judge call at a time, what a sync judge
  reward would do (the ratio's base);
- `grpo-host c=n`: concurrency = the batch size, as unbounded as the peer;
- `hand-written async`: the peer, an `async def` TRL reward function as its docs suggest
  (httpx.AsyncClient, asyncio.gather over the whole batch, no budgets, no retries), awaited on
  a daemon event loop the way TRL 1.16 awaits async reward functions.

Every reply is checked (`Score: N` -> N/10); completions are unique per round, so the reply
cache never answers.

    python bench/judge_throughput.py [--latency 0.1 0.5 2] [--rounds 2] [--n 128]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import subprocess
import sys
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def script(completion: str, prompt: str):
    """`LATENCY|ROUND|I|N`: wait LATENCY s, then `Score: N`."""
    from tests.judge_server import Reply

    latency, _, _, value = completion.split("|")
    return Reply(text=f"Graded.\nScore: {value}", delay=float(latency))


def serve(port: int) -> None:
    from tests.judge_server import JudgeServer

    with JudgeServer(script, port):
        print("ready", flush=True)
        sys.stdin.read()  # until the bench closes our stdin


def completions(latency: float, tag: str, n: int) -> list[str]:
    return [f"{latency}|{tag}|{i}|{i % 11}" for i in range(n)]


def expected(batch: list[str]) -> list[float]:
    return [int(c.rsplit("|", 1)[1]) / 10 for c in batch]


def hand_written_reward(base_url: str):
    """The peer: what a TRL user writes for an LLM judge, given TRL's async reward support."""
    import httpx

    client: dict[str, httpx.AsyncClient] = {}

    async def judge_reward(prompts, completions, **kwargs):
        if "c" not in client:
            client["c"] = httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None))

        async def one(prompt, completion):
            body = {
                "model": "judge",
                "messages": [
                    {
                        "role": "user",
                        "content": f"<response-000000000000>\n{completion}\n</response-000000000000>",
                    }
                ],
                "temperature": 0,
            }
            reply = await client["c"].post(f"{base_url}/chat/completions", json=body)
            text = reply.json()["choices"][0]["message"]["content"]
            return float(re.findall(r"Score:\s*(\d+)", text)[-1]) / 10

        return await asyncio.gather(*(one(p, c) for p, c in zip(prompts, completions, strict=True)))

    return judge_reward


def daemon_loop() -> asyncio.AbstractEventLoop:
    """TRL's `start_event_loop_in_daemon`: a loop running in a daemon thread."""
    loop = asyncio.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()
    return loop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency", type=float, nargs="+", default=[0.1, 0.5, 2.0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument(
        "--n", type=int, default=128, help="completions per batch at concurrency 32 and for the peer"
    )
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        serve(args.serve)
        return

    import grpo_host
    from tests.conftest import free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout.readline().strip() == "ready"
    base_url = f"http://127.0.0.1:{port}/v1"
    common = {"base_url": base_url, "model": "judge", "template": "{completion}", "timeout": 120.0}
    rewards = {
        "grpo-host c=32": grpo_host.load_rewards(
            [{"name": "llm-judge", "params": common}], workers=args.workers
        )[0],
        "grpo-host c=1": grpo_host.load_rewards(
            [{"name": "llm-judge", "params": {**common, "concurrency": 1}}], workers=args.workers
        )[0],
        "grpo-host c=n": grpo_host.load_rewards(
            [{"name": "llm-judge", "params": {**common, "concurrency": args.n}}], workers=args.workers
        )[0],
    }
    for name, fn in rewards.items():
        bound = fn.reward_set.rewards[0]
        want = {"grpo-host c=32": 32, "grpo-host c=1": 1, "grpo-host c=n": args.n}[name]
        assert bound.timeout == 120.0 and bound.concurrency == want, bound
    peer = hand_written_reward(base_url)
    loop = daemon_loop()
    print(f"cores: {os.cpu_count()}, load: {os.getloadavg()[0]:.1f}, workers: {args.workers or 'default'}")
    results: dict[tuple[float, str], list[float]] = {}
    try:
        for fn in rewards.values():  # start the workers, import httpx there
            fn(prompts=["q"], completions=completions(0.0, "warm", 1))
        for latency in args.latency:
            sizes = {
                "grpo-host c=32": args.n,
                "grpo-host c=1": max(4, min(32, round(4 / latency))),
                "grpo-host c=n": args.n,
                "hand-written async": args.n,
            }
            for round_ in range(args.rounds):
                for mode, n in sizes.items():
                    batch = completions(latency, f"r{round_}{mode}", n)
                    start = time.perf_counter()
                    if mode == "hand-written async":
                        scores = asyncio.run_coroutine_threadsafe(peer(["q"] * n, batch), loop).result()
                    else:
                        scores = rewards[mode](prompts=["q"] * n, completions=batch)
                    elapsed = time.perf_counter() - start
                    assert scores == expected(batch), (mode, scores[:5])
                    results.setdefault((latency, mode), []).append(n / elapsed)
                    print(
                        f"latency {latency:g} s  {mode:<20} n={n:<4} {elapsed:6.2f} s  {n / elapsed:7.2f}/s",
                        flush=True,
                    )
    finally:
        for fn in rewards.values():
            fn.reward_set.close()
        server.stdin.close()
        server.wait(timeout=10)
    print("\n| latency | side | completions/s (median) | ratio to c=1 |\n|---|---|---|---|")
    for latency in args.latency:
        base = statistics.median(results[(latency, "grpo-host c=1")])
        for mode in ("grpo-host c=32", "grpo-host c=1", "grpo-host c=n", "hand-written async"):
            rate = statistics.median(results[(latency, mode)])
            print(f"| {latency:g} s | {mode} | {rate:.2f} | {rate / base:.2f}x |")


if __name__ == "__main__":
    main()
