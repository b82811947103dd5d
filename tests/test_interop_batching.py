"""The reward server's micro-batching (`ScoringPool`'s window): one-sample requests that arrive
together are scored in a few worker chunks, a lone client does not wait for the window, and a
window whose expected clients never come is cut off at its cap.

The pool is driven directly, with the server's hint (how many clients are active) given as a
number, so the chunk counts do not depend on how loaded the machine is: the window is long (30 s)
and only the hint ends it early. A pool whose window ignored the hint would take 30 s (and fail the
time bounds); one that did not gather would score the 32 requests in many more chunks. Then the
hint itself, from the ASGI app driven by hand (clients in the pool, being answered, answered a
moment ago, forgotten when quiet), and the server wiring the two together.
"""

from __future__ import annotations

import threading
import time

import pytest

from grpo_host.interop.scoring import ScoringPool
from grpo_host.plugins.manager import PluginManager
from grpo_host.rewards.runtime import bind_reward, prepare_samples

from .conftest import write_distribution

pytestmark = pytest.mark.slow

PLUGIN = """
    import grpo_host

    @grpo_host.reward(name="text-length")
    def text_length(completion: str, **columns) -> float:
        '''The completion's length, so every answer shows whose sample it was.'''
        return float(len(completion))
"""
LONG_WINDOW_S = 30.0


@pytest.fixture
def bound(plugin_dir):
    write_distribution(
        plugin_dir, "grpo-reward-batching-probe", {"batching_probe": PLUGIN}, {"p": "batching_probe"}
    )
    return [bind_reward(PluginManager().get_reward("text-length"))]


class Clients:
    """``count`` clients that each send one request and leave once answered: the hint the server
    gives the pool (clients active, their requests on their way, in the pool or being answered)."""

    def __init__(self, count: int):
        self.count, self.answered = count, 0
        self.lock = threading.Lock()

    def active(self) -> int:
        return self.count - self.answered

    def done(self, _future) -> None:
        with self.lock:
            self.answered += 1


def submit_staggered(pool: ScoringPool, clients: Clients, gap_s: float = 0.02) -> list:
    """One one-sample request from each client, ``gap_s`` apart: a free lane sees them come in
    one by one, as a trainer's reward loop's requests reach the server."""
    futures = []
    for i in range(clients.count):
        future = pool.submit(prepare_samples(["x" * (i + 1)]))
        future.add_done_callback(clients.done)
        futures.append(future)
        time.sleep(gap_s)
    return futures


def test_32_one_sample_requests_of_active_clients_are_scored_in_a_few_chunks(bound):
    clients = Clients(32)
    with ScoringPool(bound, workers=2, gather_s=LONG_WINDOW_S, expected=clients.active, warm=True) as pool:
        started = time.monotonic()
        futures = submit_staggered(pool, clients)
        rows = [f.result(timeout=LONG_WINDOW_S / 2)["text-length"] for f in futures]
        elapsed = time.monotonic() - started
        assert [r[0].score for r in rows] == [float(i + 1) for i in range(32)]  # each its own answer
        assert pool.counts["samples"] == 32
        # A lane takes its fair share (half the active clients) once it is in, the other lane the
        # rest: 2 chunks when the first is still scoring, else halving again (16, 8, 4, 2, 1, 1).
        # Without the window a free lane takes each request as it comes: 32 chunks.
        assert pool.counts["batches"] <= 8, pool.counts
        assert elapsed < LONG_WINDOW_S / 2  # the hint ended the window, not its cap


def test_a_lone_client_does_not_wait_for_the_window(bound):
    with ScoringPool(bound, workers=2, gather_s=LONG_WINDOW_S, expected=lambda: 1, warm=True) as pool:
        for i in range(5):
            started = time.monotonic()
            rows = pool.submit(prepare_samples(["y" * (i + 1)])).result(timeout=LONG_WINDOW_S / 2)[
                "text-length"
            ]
            assert rows[0].score == float(i + 1)
            assert time.monotonic() - started < LONG_WINDOW_S / 3
        assert pool.counts["batches"] == 5


def test_the_window_is_capped_when_the_expected_clients_never_come(bound):
    window = 0.5
    with ScoringPool(bound, workers=2, gather_s=window, expected=lambda: 32, warm=True) as pool:
        started = time.monotonic()
        rows = pool.submit(prepare_samples(["zz"])).result(timeout=30)["text-length"]
        elapsed = time.monotonic() - started
        assert rows[0].score == 2.0
        assert window * 0.8 <= elapsed < window + 10, elapsed


def test_a_large_request_is_shared_by_the_lanes(bound):
    with ScoringPool(bound, workers=2, gather_s=LONG_WINDOW_S, expected=lambda: 1, warm=True) as pool:
        rows = pool.submit(prepare_samples(["w" * (i % 7) for i in range(256)])).result(timeout=60)[
            "text-length"
        ]
        assert [r.score for r in rows] == [float(i % 7) for i in range(256)]
        assert 2 <= pool.counts["batches"] <= 3, pool.counts


class HeldPool:
    """Stands in for the scoring pool: each request's future stays open until released."""

    names = ["text-length"]

    def __init__(self):
        self.futures: list = []

    def submit(self, samples, loop=None):
        future = loop.create_future()
        self.futures.append((future, len(samples)))
        return future

    def release(self) -> None:
        from grpo_host.rewards.runtime import SampleResult

        for future, count in self.futures:
            future.set_result({"text-length": [SampleResult("ok", 1.0) for _ in range(count)]})
        self.futures.clear()


def test_the_server_counts_the_clients_at_work_for_the_window(bound, monkeypatch):
    """The hint the pool gets: requests in the pool or being answered, and clients answered in
    the last RECENT_S; a client's new request is not counted twice, a quiet one is forgotten."""
    import asyncio
    import json

    from grpo_host.interop import server as srv

    monkeypatch.setattr(srv, "RECENT_S", 0.3)
    pool = HeldPool()
    app = srv.RewardApp(pool, bound, limits=srv.Limits(), label_column="answer", end_tokens=[], token=None)
    body = json.dumps({"samples": [{"completion": "abc"}], "details": False}).encode()
    sent: list = []

    def request(port: int):
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/score",
            "client": ("127.0.0.1", port),
            "headers": [(b"content-length", str(len(body)).encode())],
        }

        async def receive():
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message):
            sent.append(message)

        return app(scope, receive, send)

    async def scenario():
        first = [asyncio.ensure_future(request(port)) for port in (1, 2, 3)]
        await asyncio.sleep(0.01)
        assert app.active_clients() == 3  # all three in the pool
        pool.release()
        await asyncio.gather(*first)
        assert [m["status"] for m in sent if m["type"] == "http.response.start"] == [200] * 3
        assert app.active_clients() == 3  # answered a moment ago: their next requests are on the way
        again = asyncio.ensure_future(request(1))  # client 1 comes back: still three, not four
        await asyncio.sleep(0.01)
        assert app.active_clients() == 3
        pool.release()
        await again
        await asyncio.sleep(0.4)  # all quiet for longer than RECENT_S
        late = asyncio.ensure_future(request(4))
        await asyncio.sleep(0.01)
        assert app.active_clients() == 1  # only the newcomer: the window would not wait for the others
        pool.release()
        await late

    asyncio.run(scenario())


def test_the_reward_server_gives_its_pool_the_window_and_the_hint(bound):
    from grpo_host.interop.server import GATHER_S, RewardServer

    with RewardServer(bound, workers=1) as server:
        assert server.pool.gather_s == GATHER_S > 0
        assert server.pool.expected == server.app.active_clients
