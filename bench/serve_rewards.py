"""The reward server's throughput and latency: one sample per request from 32 clients beside
the same samples sent as one batch, and the old 1/8/32-client runs of one GRPO group each.

`grpo-host serve-rewards REWARD` runs as a user runs it (a subprocess on 127.0.0.1). The clients
(one kept-alive HTTP/1.1 connection each, pre-built requests, a minimal response reader) run in
another process, by default all on one thread over non-blocking sockets (``--client epoll``):
on a 2-core machine the load generator shares the cores with the server it measures, and a
thread per client (``--client threads``, the first version) cost 47-115 µs of CPU per
one-sample request against 23-32 µs (bench/README.md), CPU the server then lacked. Both sides of a ratio (one
sample per request vs one batch) use the same client; the client's own CPU per request is
reported beside the server's and its workers'. Every answer is checked against the scores of the
same samples computed in process beforehand: the run reports lost (no 200 answer) and wrong
(another total) scores. Completions are arithmetic answers in the usual forms (answer tags,
boxes, LaTeX fractions, wrong answers), so both accuracy's exact path and math-verify run.

Modes, all against one server in one run:
- `batch`: one client, requests of --batch samples (the "same samples sent as one batch");
- `single`: --clients-single clients (32), one sample per request (OpenRLHF 0.11's and verl
  0.9.1's reward-loop pattern); batch and single alternate for --rounds rounds, so a busy
  neighbour on a shared machine weighs on both alike, then single runs --seconds (20) on end;
- `group`: 1, 8 and 32 clients, requests of one group of 8 completions (the old figures);
- the peer: the same groups scored in process, one after another (no HTTP).

    python bench/serve_rewards.py [--seconds 20] [--rounds 3] [--reward accuracy] [--workers N]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import queue
import random
import resource
import selectors
import socket
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
    return launch(argv)


def launch(argv: list[str]) -> tuple[subprocess.Popen, str]:
    """Start a server process; return it with the address from its first line."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline()
    if "serving rewards" not in line:
        proc.kill()
        raise SystemExit(f"the server did not start: {line!r}")
    return proc, line.split()[-1]


def _request_bytes(host: str, port: str, body: str) -> bytes:
    data = body.encode()
    head = (f"POST /score HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n")
    return head.encode() + data


class _Tally:
    """What one client process saw: latencies, counts, a few wrong answers to show."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.counts = {"samples": 0, "lost": 0, "wrong": 0, "timeouts": 0}
        self.examples: list = []

    def answer(self, status: int, payload: bytes, request: bytes, expected: list[float], seconds: float) -> None:
        """Check one answer against the totals scored in process."""
        self.latencies.append(seconds)
        counts = self.counts
        if status != 200:
            counts["lost"] += len(expected)
            return
        results = json.loads(payload)["results"]
        totals = [r["total"] for r in results]
        outcomes = [o["outcome"] for r in results for o in r["rewards"].values()]
        counts["timeouts"] += outcomes.count("timeout")
        if "timeout" in outcomes and len(self.examples) < 3:
            self.examples.append(("timeout", json.loads(request.split(b"\r\n\r\n", 1)[1])["samples"][:1], results))
        bad = [(got, want, r["rewards"]) for got, want, r in zip(totals, expected, results, strict=False)
               if got != want and "timeout" not in json.dumps(r)]
        if bad and len(self.examples) < 3:
            self.examples.append(bad[0])
        counts["wrong"] += len(bad) + abs(len(totals) - len(expected))
        counts["samples"] += len(expected)


def _connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=120)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _response_in(buf: bytearray) -> tuple[int, bytes] | None:
    """``(status, body)`` of the first whole response in ``buf`` (taken out of it), or None."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    head = bytes(buf[:end]).lower()
    start = head.index(b"content-length:") + 15
    stop = head.find(b"\r\n", start)
    length = int(head[start:stop if stop >= 0 else len(head)])
    if len(buf) < end + 4 + length:
        return None
    body = bytes(buf[end + 4:end + 4 + length])
    del buf[:end + 4 + length]
    return int(head[9:12]), body


def _epoll_clients(host: str, port: int, ids: list[int], stride: int, start_at: float, seconds: float,
                   prepared: list[tuple[bytes, list[float]]], tally: _Tally) -> None:
    """Every client of this process on one thread over non-blocking sockets (epoll): each sends
    its next request as soon as its answer is in, as a client thread would, without a thread
    switch and GIL hand-over per request (the threaded clients cost the shared cores as much CPU
    per one-sample request as the server did)."""
    selector = selectors.DefaultSelector()
    # Per client: [socket, read buffer, request index, sent at, bytes still to send].
    state: dict[int, list] = {}

    def send_next(k: int) -> None:
        conn = state[k]
        request = prepared[conn[2] % len(prepared)][0]
        conn[3] = time.perf_counter()
        sent = conn[0].send(request)
        conn[4] = memoryview(request)[sent:]
        if conn[4]:
            selector.modify(conn[0], selectors.EVENT_READ | selectors.EVENT_WRITE, k)

    def reopen(k: int) -> bool:
        """A new connection for client k after its old one failed; False when there is none
        (the server is gone: the client stops, its requests so far counted)."""
        conn = state[k]
        selector.unregister(conn[0])
        conn[0].close()
        try:
            conn[0], conn[1], conn[4] = _connect(host, port), bytearray(), b""
        except OSError:
            return False
        conn[0].setblocking(False)
        selector.register(conn[0], selectors.EVENT_READ, k)
        return True

    for k in ids:
        sock = _connect(host, port)
        sock.setblocking(False)
        state[k] = [sock, bytearray(), k, 0.0, b""]
        selector.register(sock, selectors.EVENT_READ, k)
    while time.time() < start_at:
        time.sleep(0.001)
    stop = time.perf_counter() + seconds
    for k in ids:
        send_next(k)
    busy = set(ids)
    while busy:
        events = selector.select(timeout=120)
        if not events:
            raise SystemExit("no answer from the server in 120 s")
        for key, mask in events:
            k = key.data
            conn = state[k]
            sock = conn[0]
            request, expected = prepared[conn[2] % len(prepared)]
            try:
                if mask & selectors.EVENT_WRITE and conn[4]:
                    conn[4] = conn[4][sock.send(conn[4]):]
                    if not conn[4]:
                        selector.modify(sock, selectors.EVENT_READ, k)
                if not mask & selectors.EVENT_READ:
                    continue
                chunk = sock.recv(262144)
                if not chunk:
                    raise ConnectionError("closed")
            except BlockingIOError:
                continue
            except OSError:
                tally.counts["lost"] += len(expected)
                conn[2] += stride
                if reopen(k) and time.perf_counter() < stop:
                    send_next(k)
                else:
                    busy.discard(k)
                continue
            conn[1] += chunk
            answer = _response_in(conn[1])
            if answer is None:
                continue
            tally.answer(answer[0], answer[1], request, expected, time.perf_counter() - conn[3])
            conn[2] += stride
            if time.perf_counter() < stop:
                send_next(k)
            else:
                busy.discard(k)
    for conn in state.values():
        if conn[0].fileno() >= 0:
            conn[0].close()


def _threaded_clients(host: str, port: int, ids: list[int], stride: int, start_at: float, seconds: float,
                      prepared: list[tuple[bytes, list[float]]], tally: _Tally) -> None:
    """The first client of this bench: a thread per client, blocking sockets (``--client threads``)."""
    lock = threading.Lock()

    def client(k: int) -> None:
        sock, buf, mine = _connect(host, port), bytearray(), _Tally()
        i = k
        while time.time() < start_at:
            time.sleep(0.001)
        stop = start_at + seconds
        while time.time() < stop:
            request, expected = prepared[i % len(prepared)]
            started = time.perf_counter()
            try:
                sock.sendall(request)
                while (answer := _response_in(buf)) is None:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed")
                    buf += chunk
            except (OSError, ValueError):
                mine.counts["lost"] += len(expected)
                sock.close()
                try:
                    sock, buf = _connect(host, port), bytearray()
                except OSError:  # the server is gone: this client stops
                    break
                i += stride
                continue
            mine.answer(answer[0], answer[1], request, expected, time.perf_counter() - started)
            i += stride
        sock.close()
        with lock:
            tally.latencies += mine.latencies
            tally.examples += mine.examples
            for key in tally.counts:
                tally.counts[key] += mine.counts[key]

    pool = [threading.Thread(target=client, args=(k,)) for k in ids]
    for t in pool:
        t.start()
    for t in pool:
        t.join()


CLIENTS = {"epoll": _epoll_clients, "threads": _threaded_clients}


def _client_process(url: str, threads: int, offset: int, stride: int, seconds: float, start_at: float,
                    requests: list[tuple[str, list[float]]], out: mp.Queue, kind: str = "epoll") -> None:
    """``threads`` clients; client k of the whole run sends requests k, k+stride, ..."""
    host, port = url.removeprefix("http://").split(":")
    prepared = [(_request_bytes(host, port, body), expected) for body, expected in requests]
    tally = _Tally()
    before = resource.getrusage(resource.RUSAGE_SELF)
    CLIENTS[kind](host, int(port), list(range(offset, offset + threads)), stride, start_at, seconds, prepared, tally)
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    out.put((tally.latencies, tally.counts, tally.examples, cpu))


def _report(out: mp.Queue, workers: list[mp.Process]) -> tuple:
    """The next client process's figures; an error, not a hang, when one died without them."""
    while True:
        try:
            return out.get(timeout=5)
        except queue.Empty:
            dead = [p for p in workers if p.exitcode not in (None, 0)]
            if dead:
                raise SystemExit(f"a client process failed (exit code {dead[0].exitcode}); see its traceback above")


def run_clients(url: str, clients: int, seconds: float, requests: list[tuple[str, list[float]]],
                procs: int, kind: str = "epoll") -> dict:
    procs = max(1, min(procs, clients))
    share = [clients // procs + (1 if p < clients % procs else 0) for p in range(procs)]
    out: mp.Queue = mp.Queue()
    start_at = time.time() + 1.0  # every process connected and waiting
    workers, offset = [], 0
    for threads in share:
        p = mp.Process(target=_client_process,
                       args=(url, threads, offset, clients, seconds, start_at, requests, out, kind))
        p.start()
        workers.append(p)
        offset += threads
    latencies, counts, examples, client_cpu = [], {"samples": 0, "lost": 0, "wrong": 0, "timeouts": 0}, [], 0.0
    for _ in workers:
        lat, c, ex, cpu = _report(out, workers)
        examples += ex
        client_cpu += cpu
        latencies += lat
        for key in counts:
            counts[key] += c[key]
    for p in workers:
        p.join()
    latencies.sort()
    return {
        "clients": clients,
        "completions_per_s": counts["samples"] / seconds,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else float("nan"),
        "requests": len(latencies),
        **counts,
        "client_cpu_us_per_request": 1e6 * client_cpu / max(len(latencies), 1),
        "wrong_examples": examples[:3],
    }


def in_process(reward: str, workers: int | None, seconds: float, work: list[list[dict]]) -> tuple[dict, list]:
    """The peer: the same groups through the reward runtime in this process, one after another
    (what a TRL run pays); also the reference totals every server answer is checked against."""
    from grpo_host.interop.scoring import bind_rewards, check_samples, results_json
    from grpo_host.rewards.runtime import RewardRuntime

    bound = bind_rewards([reward])
    runtime = RewardRuntime(bound, workers=workers)

    def score(group: list[dict]) -> list[dict]:
        prepared = check_samples(group)
        return results_json(bound, runtime.score(prepared), len(prepared), details=False)

    # The reference: every reward called in this process with no deadline (workers=0), so a
    # timeout on a loaded machine cannot make the reference itself wrong.
    with RewardRuntime(bound, workers=0) as inline:
        reference = [[r["total"] for r in results_json(bound, inline.score(check_samples(g)), len(g), details=False)]
                     for g in work]
    try:
        score(work[0])  # warm: the workers started, the reward imported
        latencies, count, i = [], 0, 0
        stop = time.monotonic() + seconds
        began = time.perf_counter()
        while time.monotonic() < stop:
            started = time.perf_counter()
            score(work[i % len(work)])
            latencies.append(time.perf_counter() - started)
            count += GROUP
            i += 1
        wall = time.perf_counter() - began
    finally:
        runtime.close()
    latencies.sort()
    return ({"completions_per_s": count / wall, "p50_ms": 1000 * statistics.median(latencies),
             "p99_ms": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))]}, reference)


def requests_of(work: list[list[dict]], reference: list[list[float]], size: int) -> list[tuple[str, list[float]]]:
    samples = [s for g in work for s in g]
    totals = [t for g in reference for t in g]
    return [(json.dumps({"samples": samples[i:i + size], "details": False}), totals[i:i + size])
            for i in range(0, len(samples) - size + 1, size)]


def cpu_seconds(pid: int) -> tuple[float, float]:
    """(the server process's CPU seconds, its reward workers' CPU seconds), from /proc (Linux)."""
    tick = os.sysconf("SC_CLK_TCK")

    def of(p: int | str) -> float:
        try:
            fields = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            return 0.0
        return (int(fields[11]) + int(fields[12])) / tick

    children = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            children += open(f"/proc/{pid}/task/{task}/children").read().split()
    except OSError:
        pass
    return of(pid), sum(of(c) for c in children)


def measured(pid: int, run) -> dict:
    server0, workers0 = cpu_seconds(pid)
    r = run()
    server1, workers1 = cpu_seconds(pid)
    r["server_cpu_us_per_request"] = 1e6 * (server1 - server0) / max(r["requests"], 1)
    r["worker_cpu_us_per_sample"] = 1e6 * (workers1 - workers0) / max(r["samples"], 1)
    return r


def row(label: str, r: dict, base: float | None = None) -> str:
    for got, want, rewards in r["wrong_examples"]:
        print(f"  wrong: got {got}, in process {want}: {json.dumps(rewards)[:300]}", file=sys.stderr)
    ratio = f"{r['completions_per_s'] / base:.2f}x" if base else ""
    return (f"| {label} | {r['clients']} | {r['completions_per_s']:.0f} | {ratio} | {r['p50_ms']:.1f} ms "
            f"| {r['p99_ms']:.1f} ms | {r['requests']} | {r['lost']} | {r['wrong']} | {r['timeouts']} "
            f"| {r['server_cpu_us_per_request']:.0f} µs | {r['worker_cpu_us_per_sample']:.0f} µs "
            f"| {r['client_cpu_us_per_request']:.0f} µs |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20.0, help="the continuous 32-client run")
    parser.add_argument("--round-seconds", type=float, default=5.0, help="each point of the interleaved rounds")
    parser.add_argument("--rounds", type=int, default=3, help="batch, single, batch, single, ...")
    parser.add_argument("--group-seconds", type=float, default=10.0)
    parser.add_argument("--reward", default="accuracy")
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--batch", type=int, default=256, help="samples per request in the batch mode")
    parser.add_argument("--clients-single", type=int, default=32)
    parser.add_argument("--group-clients", default="1,8,32")
    parser.add_argument("--client-procs", type=int, default=None,
                        help="client processes (default: 1 with --client epoll, else half the cores, 2-8)")
    parser.add_argument("--client", choices=sorted(CLIENTS), default="epoll",
                        help="epoll: all of a process's clients on one thread; threads: a thread per client")
    parser.add_argument("--out", help="write the figures as JSON here too")
    args = parser.parse_args()
    if args.client_procs is None:
        args.client_procs = 1 if args.client == "epoll" else max(2, min(8, (os.cpu_count() or 2) // 2))
    work = groups()
    print(f"reward {args.reward}; {os.cpu_count()} CPUs; {args.client_procs} client processes ({args.client}); "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    base, reference = in_process(args.reward, args.workers, args.group_seconds, work)
    print(f"in process (no HTTP, 1 caller, groups of {GROUP}): {base['completions_per_s']:.0f} completions/s, "
          f"p50 {base['p50_ms']:.1f} ms, p99 {base['p99_ms']:.1f} ms", flush=True)
    figures: dict = {"in_process": base, "cpus": os.cpu_count(), "reward": args.reward, "rounds": []}
    proc, url = start_server(args.reward, args.workers)
    pid = proc.pid
    batch_requests = requests_of(work, reference, args.batch)
    single_requests = requests_of(work, reference, 1)
    group_requests = requests_of(work, reference, GROUP)
    try:
        run_clients(url, 4, 2.0, group_requests, args.client_procs, args.client)  # warm
        print("| mode | clients | completions/s | vs one batch | p50 latency | p99 latency | requests | lost | wrong "
              "| timeouts | server CPU / request | worker CPU / sample | client CPU / request |")
        print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        ratios = []
        for k in range(args.rounds):  # interleaved, so a busy neighbour weighs on both sides alike
            batch = measured(pid, lambda: run_clients(url, 1, args.round_seconds, batch_requests, 1, args.client))
            single = measured(pid, lambda: run_clients(url, args.clients_single, args.round_seconds,
                                                       single_requests, args.client_procs, args.client))
            ratios.append(single["completions_per_s"] / batch["completions_per_s"])
            figures["rounds"].append({"batch": batch, "single": single})
            print(row(f"round {k + 1}: one batch of {args.batch} per request", batch, batch["completions_per_s"]))
            print(row(f"round {k + 1}: 1 sample per request", single, batch["completions_per_s"]), flush=True)
        batch_rate = statistics.median(r["batch"]["completions_per_s"] for r in figures["rounds"])
        long = measured(pid, lambda: run_clients(url, args.clients_single, args.seconds, single_requests,
                                                 args.client_procs, args.client))
        figures["single_continuous"] = long
        print(row(f"1 sample per request, {args.seconds:g} s", long, batch_rate), flush=True)
        figures["group"] = {}
        for clients in (int(c) for c in args.group_clients.split(",") if c):
            r = measured(pid, lambda c=clients: run_clients(url, c, args.group_seconds, group_requests,
                                                            args.client_procs, args.client))
            figures["group"][clients] = r
            print(row(f"1 group ({GROUP}) per request", r, batch_rate), flush=True)
        figures["single_over_batch"] = statistics.median(ratios)
        print(f"single / batch, median of {args.rounds} interleaved rounds: {statistics.median(ratios):.2f} "
              f"({', '.join(f'{x:.2f}' for x in ratios)}); group runs vs in process: "
              + ", ".join(f"{c} clients {r['completions_per_s'] / base['completions_per_s']:.2f}x"
                          for c, r in figures["group"].items()))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=1)


if __name__ == "__main__":
    main()
