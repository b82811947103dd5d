"""The reward runtime's chunks on a Ray cluster: an executor behind the runtime's seam.

``RewardRuntime(..., executor="ray")`` cuts a batch into chunks exactly as with the local pool
and hands them to :class:`RayExecutor`, which gives each chunk to one Ray actor. An actor is
one reward worker slot: it reserves ``num_cpus_per_worker`` CPUs wherever Ray places it
(``SPREAD``: across the nodes) and scores its chunk through a local ``ProcessPool`` of one
worker process, the same code as on the trainer's machine, so per-sample timeouts (the stuck
worker killed and replaced), memory caps, deaths, stale replies and per-reference caches behave
as they do locally, and the runtime's results are the local pool's. Only an actor that is up
takes a chunk, so an actor Ray cannot place yet never holds work. An actor or node that dies
mid-chunk (or a chunk that outlives every budget its samples could need) gives ``error`` for the
chunk's samples, and a replacement actor is started. Ray is imported only when this executor is
chosen.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator, Mapping
from typing import Any

from grpo_host.errors import GrpoHostError, did_you_mean
from grpo_host.rewards.pool import (
    BUILD_BUDGET_S,
    Chunk,
    ProcessPool,
    SampleResult,
    _available_cores,
    default_memory_mb,
)

INSTALL_HINT = "pip install 'grpo-host[ray]'"
# What `executor_options` (the run config's runtime section, besides executor and workers) take.
OPTIONS = ("address", "num_cpus_per_worker")
# A chunk's slack over the most its samples can take on a healthy actor: moving the chunk and
# its results, the actor starting its worker process.
CHUNK_SLACK_S = 60.0
# How long queued chunks wait for a first actor to come up before they are given up as errors
# (an actor Ray cannot place: the cluster has too few free CPUs for num_cpus_per_worker).
ACTOR_START_S = 120.0
# Actors that fail to start, in a row with none up, before the queued chunks are given up.
MAX_START_FAILURES = 3
# How long an address check waits for the cluster's port to answer.
CONNECT_CHECK_S = 3.0


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise GrpoHostError(
            f"the ray executor needs Ray, which is not installed: {INSTALL_HINT} "
            "(or choose runtime.executor: local)"
        ) from None
    return ray


def connect(address: str | None = None) -> Any:
    """Ray, connected: to ``address``, else ``RAY_ADDRESS``, else a Ray already running on this
    machine, else a new local one. An address that does not answer is an error at once."""
    ray = import_ray()
    if ray.is_initialized():
        return ray
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address and address != "auto":
        check_address(address)
    try:
        ray.init(
            address=address,
            include_dashboard=False,
            logging_level=logging.WARNING,
            ignore_reinit_error=True,
        )
    except (ConnectionError, RuntimeError, ValueError) as exc:
        where = f"the Ray cluster at {address}" if address else "a local Ray"
        raise GrpoHostError(
            f"could not connect to {where}: {_first_line(exc)}; check runtime.address / RAY_ADDRESS "
            "(unset both to start a local Ray)"
        ) from None
    return ray


def check_address(address: str) -> None:
    """``host:port`` or ``ray://host:port`` that accepts a TCP connection, else a clear error
    (``ray.init`` itself would retry an unreachable address for a long time)."""
    target = address.removeprefix("ray://")
    host, sep, port = target.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit():
        raise GrpoHostError(
            f"Ray address {address!r} is not host:port (e.g. 10.0.0.5:6379), ray://host:port or 'auto'; "
            "set runtime.address or RAY_ADDRESS"
        )
    try:
        socket.create_connection((host, int(port)), timeout=CONNECT_CHECK_S).close()
    except OSError as exc:
        raise GrpoHostError(
            f"cannot reach the Ray cluster at {address} ({exc.strerror or exc}); start one there with "
            "`ray start --head`, or fix runtime.address / RAY_ADDRESS (unset both to start a local Ray)"
        ) from None


def check_options(options: Mapping[str, Any]) -> None:
    """The executor's options, Ray's presence and the cluster's address, checked up front."""
    unknown = [k for k in options if k not in OPTIONS]
    if unknown:
        raise GrpoHostError(
            f"unknown ray executor option(s) {', '.join(unknown)}; allowed: {', '.join(OPTIONS)}"
            f"{did_you_mean(unknown[0], OPTIONS)}"
        )
    _num_cpus(options.get("num_cpus_per_worker"))
    ray = import_ray()
    address = options.get("address") or os.environ.get("RAY_ADDRESS")
    if address and address != "auto" and not ray.is_initialized():
        check_address(address)


def _num_cpus(value: Any) -> float:
    num_cpus = 1.0 if value is None else value
    if isinstance(num_cpus, bool) or not isinstance(num_cpus, (int, float)) or not num_cpus > 0:
        raise GrpoHostError(f"runtime.num_cpus_per_worker must be a positive number of CPUs, not {value!r}")
    return float(num_cpus)


def cluster_workers(num_cpus_per_worker: float = 1.0, address: str | None = None) -> int:
    """How many actors of ``num_cpus_per_worker`` CPUs the cluster holds (at least 1)."""
    ray = connect(address)
    cpus = float(ray.cluster_resources().get("CPU", 1))
    return max(1, int(cpus // num_cpus_per_worker))


class _Actor:
    """The host's view of one actor: its handle, whether it is up, the chunk it scores."""

    __slots__ = ("handle", "starting", "started_at", "node", "pid", "chunk", "ref", "deadline")

    def __init__(self, handle: Any, starting: Any):
        self.handle = handle
        self.starting = starting  # the ref of its `ready` call until it answers; then None
        self.started_at = time.monotonic()
        self.node = ""
        self.pid = 0
        self.chunk: Chunk | None = None
        self.ref: Any = None
        self.deadline = 0.0


class RayExecutor:
    """The runtime's executor on Ray: ``workers`` actors (default: the cluster's CPUs over
    ``num_cpus_per_worker``), each scoring one chunk at a time in its own reward worker process.

    ``memory_mb`` is the cap for rewards that set none; unset, each actor takes the local
    pool's default for its node (half the node's memory shared by the actors that fit on it).
    """

    # A batched reward's batch is cut into one part per actor: rewards run on Ray to use more
    # machines than one, and one batch on one actor would not.
    spreads_batches = True

    def __init__(
        self,
        workers: int | None = None,
        memory_mb: int | None = None,
        *,
        address: str | None = None,
        num_cpus_per_worker: float | None = None,
    ):
        num_cpus = _num_cpus(num_cpus_per_worker)
        if workers is not None and (isinstance(workers, bool) or int(workers) < 1):
            raise GrpoHostError(
                f"runtime.workers must be 1 or more with the ray executor, not {workers!r} "
                "(0, scoring in this process, is for executor: local)"
            )
        self.ray = connect(address)
        self.num_cpus_per_worker = num_cpus
        self.size = int(workers) if workers is not None else cluster_workers(self.num_cpus_per_worker)
        self.memory_mb = memory_mb
        self._remote_class = self.ray.remote(RewardActor).options(
            num_cpus=self.num_cpus_per_worker,
            scheduling_strategy="SPREAD",
            max_restarts=0,
            max_task_retries=0,
        )
        self.actors: list[_Actor] = []
        self._queue: deque[Chunk] = deque()
        self._out: list[tuple[Chunk, int, SampleResult]] = []
        self._start_failures: list[str] = []
        self.replaced_workers = 0
        self.stale_replies = 0

    @property
    def all(self) -> list[_Actor]:
        return list(self.actors)

    def nodes(self) -> dict[str, int]:
        """How many of the actors that are up run on each node (by Ray node id)."""
        counts: dict[str, int] = {}
        for actor in self.actors:
            if actor.starting is None:
                counts[actor.node] = counts.get(actor.node, 0) + 1
        return counts

    # -- the seam ----------------------------------------------------------------------------
    def submit(self, chunk: Chunk) -> None:
        if chunk.memory_mb is None:
            chunk.memory_mb = chunk.reward.memory_mb if chunk.reward.memory_mb is not None else self.memory_mb
        self._queue.append(chunk)

    def collect(self) -> Iterator[tuple[Chunk, int, SampleResult]]:
        try:
            yield from self._collect()
        finally:
            if self._queue or any(a.chunk is not None for a in self.actors):  # abandoned: start clean
                for actor in [a for a in self.actors if a.chunk is not None]:
                    self._retire(actor)
                self._queue.clear()
                self._out.clear()

    def close(self) -> None:
        # Let each actor stop its worker (and remove its progress file) before it is killed.
        stops = []
        for actor in self.actors:
            if actor.starting is not None:  # not up (perhaps never placed): nothing to stop yet
                continue
            try:
                stops.append(actor.handle.close.remote())
            except Exception:  # noqa: BLE001 - gone with its node
                pass
        if stops:
            try:
                self.ray.wait(stops, num_returns=len(stops), timeout=5)
            except Exception:  # noqa: BLE001 - Ray already shut down
                pass
        self.kill_all()

    def kill_all(self) -> None:
        for actor in list(self.actors):
            self._kill(actor)
        self.actors.clear()
        self._queue.clear()

    # -- internals ----------------------------------------------------------------------------
    def _collect(self) -> Iterator[tuple[Chunk, int, SampleResult]]:
        ray = self.ray
        while self._queue or any(a.chunk is not None for a in self.actors):
            self._start_actors()
            self._dispatch()
            yield from self._drain_out()
            waits = {a.ref: a for a in self.actors if a.chunk is not None}
            starts = {a.starting: a for a in self.actors if a.starting is not None}
            if not waits and not starts:
                continue
            ready, _ = ray.wait([*waits, *starts], num_returns=1, timeout=self._wake_in())
            if ready:  # everything else that is ready too, in one go
                ready, _ = ray.wait([*waits, *starts], num_returns=len(waits) + len(starts), timeout=0)
            for ref in ready:
                if ref in waits:
                    self._answered(waits[ref])
                else:
                    self._started(starts[ref])
            self._check_deadlines()
            yield from self._drain_out()

    def _drain_out(self) -> list[tuple[Chunk, int, SampleResult]]:
        out, self._out = self._out, []
        return out

    def _start_actors(self) -> None:
        while self._queue and len(self.actors) < self.size:
            handle = self._remote_class.remote(list(sys.path), self.memory_mb, self.num_cpus_per_worker)
            self.actors.append(_Actor(handle, handle.ready.remote()))

    def _dispatch(self) -> None:
        for actor in self.actors:
            if not self._queue:
                return
            if actor.starting is not None or actor.chunk is not None:
                continue
            chunk = self._queue.popleft()
            bound = chunk.reward
            actor.chunk = chunk
            actor.ref = actor.handle.score.remote(bound, chunk.samples, chunk.memory_mb, chunk.concurrency)
            # The most the chunk can take on a healthy actor: its reward built, then each sample
            # (or the whole batch) at most its timeout, one after another.
            actor.deadline = (
                time.monotonic() + BUILD_BUDGET_S + bound.timeout * len(chunk.indices) + CHUNK_SLACK_S
            )

    def _started(self, actor: _Actor) -> None:
        try:
            info = self.ray.get(actor.starting)
        except Exception as exc:  # noqa: BLE001 - its __init__ failed, or its node went away
            self._start_failures.append(_first_line(exc))
            self._retire(actor)
            self.replaced_workers += 1
            if len(self._start_failures) >= MAX_START_FAILURES and not self._up():
                self._give_up_queue(
                    f"could not start a Ray reward actor ({len(self._start_failures)} tries): "
                    f"{self._start_failures[-1]}"
                )
            return
        actor.starting = None
        actor.node, actor.pid = info["node"], info["pid"]
        self._start_failures.clear()

    def _answered(self, actor: _Actor) -> None:
        chunk = actor.chunk
        assert chunk is not None
        try:
            rows, stale, replaced = self.ray.get(actor.ref)
        except Exception as exc:  # noqa: BLE001 - the actor or its node died (or Ray lost the reply)
            died = isinstance(exc, self.ray.exceptions.RayActorError)
            what = "died mid-chunk" if died else "failed on this chunk"
            self._lost(actor, f"reward actor {what} ({_first_line(exc)}); it was replaced")
            return
        self.stale_replies += stale
        self.replaced_workers += replaced
        for index, (outcome, score, details, seconds) in zip(chunk.indices, rows, strict=True):
            self._out.append((chunk, index, SampleResult(outcome, score, details or {}, seconds)))
        actor.chunk, actor.ref = None, None

    def _lost(self, actor: _Actor, reason: str) -> None:
        chunk = actor.chunk
        assert chunk is not None
        for index in chunk.indices:
            self._out.append((chunk, index, SampleResult("error", None, {"error": reason})))
        self._retire(actor)
        self.replaced_workers += 1  # the next chunk waiting starts a new actor in its place

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for actor in list(self.actors):
            if actor.chunk is not None and actor.deadline <= now:
                self._lost(
                    actor, "reward actor gave no answer within its chunk's whole budget; it was killed"
                )
        if self._queue and not self._up():
            starting = [a.started_at for a in self.actors if a.starting is not None]
            if starting and now - min(starting) > ACTOR_START_S:
                self._give_up_queue(
                    f"no Ray reward actor started within {ACTOR_START_S:g} s: the cluster has "
                    f"{self.ray.available_resources().get('CPU', 0):g} CPU(s) free and each actor needs "
                    f"{self.num_cpus_per_worker:g}; lower runtime.num_cpus_per_worker or add nodes"
                )

    def _up(self) -> bool:
        return any(a.starting is None for a in self.actors)

    def _give_up_queue(self, reason: str) -> None:
        while self._queue:
            chunk = self._queue.popleft()
            for index in chunk.indices:
                self._out.append((chunk, index, SampleResult("error", None, {"error": reason})))
        self._start_failures.clear()

    def _wake_in(self) -> float:
        now = time.monotonic()
        wake = min((a.deadline for a in self.actors if a.chunk is not None), default=now + 1.0)
        if self._queue and not self._up():
            wake = min(wake, now + 1.0)  # look at the start budget now and then
        return max(0.0, wake - now)

    def _retire(self, actor: _Actor) -> None:
        self._kill(actor)
        if actor in self.actors:
            self.actors.remove(actor)

    def _kill(self, actor: _Actor) -> None:
        try:
            self.ray.kill(actor.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - gone already, with its node or with Ray
            pass


class RewardActor:
    """A Ray actor: one reward worker slot. Plain class here (Ray wraps it when the executor is
    built), so that importing this module never imports Ray."""

    def __init__(self, sys_path: list[str], memory_mb: int | None, num_cpus: float):
        # Rewards are imported by reference: the driver's import path makes a reward defined in
        # a user's module (or a test's) importable here too, when the nodes share a filesystem.
        sys.path[:0] = [p for p in sys_path if p and p not in sys.path]
        if memory_mb is None:
            memory_mb = default_memory_mb(max(1, int(_available_cores() // num_cpus)))
        self.pool = ProcessPool(1, memory_mb)

    def ready(self) -> dict[str, Any]:
        import ray

        return {"node": ray.get_runtime_context().get_node_id(), "pid": os.getpid()}

    def score(self, reward: Any, samples: list[Any], memory_mb: int | None,
              concurrency: int = 0) -> tuple[list[tuple], int, int]:
        # concurrency: the async reward's share of its waits in flight (0: a sync reward)
        stale, replaced = self.pool.stale_replies, self.pool.replaced_workers
        self.pool.submit(Chunk(0, reward, list(range(len(samples))), samples, memory_mb, concurrency=concurrency))
        rows: list[Any] = [None] * len(samples)
        for _, index, result in self.pool.collect():
            rows[index] = (result.outcome, result.score, result.details, result.seconds)
        return rows, self.pool.stale_replies - stale, self.pool.replaced_workers - replaced

    def close(self) -> None:
        self.pool.close()


def _first_line(exc: BaseException) -> str:
    lines = [line for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"[:500]
