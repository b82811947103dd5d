"""The reward server's micro-batching (`ScoringPool`'s window): one-sample requests that arrive
together are scored in a few worker chunks, a lone client does not wait for the window, and a
window whose expected clients never come is cut off at its cap.

The pool is driven directly, with the server's hint (how many clients are active) given as a
number, so the chunk counts do not depend on how loaded the machine is: the window is long (30 s)
and only the hint ends it early. A pool whose window ignored the hint would take 30 s (and fail the
time bounds); one that did not gather would score the 32 requests in many more chunks.
"""

from __future__ import annotations

import threading
import time

import pytest

from grpo_host.interop.scoring import ScoringPool
from grpo_host.manager import PluginManager
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
