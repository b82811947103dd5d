"""Rewards on a Ray cluster: the same runtime, with its worker pools on every node.

Each Ray actor holds a local :class:`RewardRuntime` (a worker pool of
``num_cpus_per_worker`` processes on the node Ray placed it on), so what the local pool
guarantees holds on every node by construction, because it is the same code: per-sample
timeouts with the stuck worker killed and replaced, memory caps, per-reference caches,
honest outcomes. The host cuts a batch into contiguous chunks (a GRPO group stays together,
so its reference is parsed once), keeps one chunk in flight per actor (actors are spread
over the nodes), and gathers the :class:`SampleResult` rows. An actor or a node that dies
mid-chunk gives ``error`` for that chunk's samples and a replacement actor; a chunk that
outlives every budget its samples could need is treated the same way. Ray is imported only
when this executor is chosen.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grpo_host.errors import GrpoHostError
from grpo_host.rewards.runtime import BUILD_BUDGET_S, BoundReward, RewardRuntime, SampleResult
from grpo_host.rewards.spec import OUTCOMES

# A chunk's slack over the worst case its samples can take on the actor: scheduling, the
# actor's own start (imports, spawning its pool), moving results.
CHUNK_SLACK_S = 60.0


@dataclass
class _Chunk:
    indices: list[int]


class RayRewardRuntime:
    """A :class:`RewardRuntime` whose pool is a set of Ray actors across the cluster.

    ``address``: the cluster to join (default ``RAY_ADDRESS``; with neither, and no Ray
    running in this process, a local Ray is started). ``workers``: how many actors (default:
    the cluster's CPUs over ``num_cpus_per_worker``). Each actor reserves
    ``num_cpus_per_worker`` CPUs and runs that many reward worker processes.
    """

    def __init__(
        self,
        rewards: Sequence[BoundReward],
        *,
        address: str | None = None,
        workers: int | None = None,
        num_cpus_per_worker: float = 1,
        memory_mb: int | None = None,
        chunks_per_worker: int = 2,
    ):
        if not rewards:
            raise GrpoHostError("a reward runtime needs at least one reward")
        names = [r.name for r in rewards]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise GrpoHostError(f"reward(s) {', '.join(dupes)} listed twice; give one an alias to use it twice")
        if not num_cpus_per_worker > 0:
            raise GrpoHostError(f"runtime.num_cpus_per_worker must be positive, not {num_cpus_per_worker}")
        self.ray = _import_ray()
        _connect(self.ray, address)
        self.rewards = list(rewards)
        # Inline rewards (a model on the trainer's GPU) stay in this process, as in the local pool.
        inline = [r for r in self.rewards if r.spec.isolation == "inline"]
        self._remote = [r for r in self.rewards if r.spec.isolation != "inline"]
        self._local = RewardRuntime(inline) if inline else None
        self.num_cpus_per_worker = num_cpus_per_worker
        self.memory_mb = memory_mb
        self.chunks_per_worker = chunks_per_worker
        cluster_cpus = float(self.ray.cluster_resources().get("CPU", 1))
        self.size = max(1, int(workers) if workers else int(cluster_cpus // num_cpus_per_worker) or 1)
        self._payload = pickle.dumps(self._remote)
        self._actor_class = _actor_class(self.ray)
        self._idle: list[Any] = []
        self._all: list[Any] = []
        self.totals = {r.name: dict.fromkeys(OUTCOMES, 0) for r in self.rewards}
        self.seconds = {r.name: 0.0 for r in self.rewards}
        self.replaced_workers = 0

    # -- public ----------------------------------------------------------------------------
    def score(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, list[SampleResult]]:
        """Score every sample with every reward: ``{reward name: [SampleResult, ...]}``."""
        samples = [dict(s) for s in samples]
        results: dict[str, list[SampleResult | None]] = {r.name: [None] * len(samples) for r in self.rewards}
        if samples and self._remote:
            self._score(samples, results)
        if samples and self._local is not None:
            results.update(self._local.score(samples))
        final: dict[str, list[SampleResult]] = {}
        for bound in self.rewards:
            rows = [r or SampleResult("error", None, {"error": "lost result"}) for r in results[bound.name]]
            for row in rows:
                self.totals[bound.name][row.outcome] += 1
                self.seconds[bound.name] += row.seconds
            final[bound.name] = rows
        return final

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
        for actor in self._all:
            try:
                self.ray.kill(actor)
            except Exception:  # noqa: BLE001 - already gone
                pass
        self._all.clear()
        self._idle.clear()

    def __enter__(self) -> RayRewardRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scheduling ------------------------------------------------------------------------
    def _score(self, samples: list[dict], results: dict[str, list]) -> None:
        ray = self.ray
        n = len(samples)
        per_chunk = max(1, -(-n // (self.size * self.chunks_per_worker)))
        if any(r.spec.batched for r in self._remote):
            per_chunk = n  # a batched reward sees the whole batch, as in the local pool
        pending = deque(_Chunk(list(range(i, min(n, i + per_chunk)))) for i in range(0, n, per_chunk))
        in_flight: dict[Any, tuple[Any, _Chunk, float]] = {}
        while pending or in_flight:
            while pending and (self._idle or len(self._all) < self.size):
                actor = self._idle.pop() if self._idle else self._spawn()
                chunk = pending.popleft()
                ref = actor.score.remote([samples[i] for i in chunk.indices])
                in_flight[ref] = (actor, chunk, time.monotonic() + self._budget(len(chunk.indices)))
            soonest = min(deadline for _, _, deadline in in_flight.values())
            ready, _ = ray.wait(list(in_flight), num_returns=1, timeout=max(0.0, soonest - time.monotonic()))
            for ref in ready:
                actor, chunk, _ = in_flight.pop(ref)
                try:
                    rows: dict[str, list[SampleResult]] = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    self._fail(actor, chunk, results, f"reward actor failed: {_reason(exc)}")
                    continue
                for name, column in rows.items():
                    for i, row in zip(chunk.indices, column, strict=True):
                        results[name][i] = row
                self._idle.append(actor)
            now = time.monotonic()
            for ref, (actor, chunk, deadline) in list(in_flight.items()):
                if deadline <= now:
                    del in_flight[ref]
                    self._fail(actor, chunk, results, "reward actor gave no answer within its budget; it was killed")

    def _budget(self, size: int) -> float:
        """The most a chunk can take on a healthy actor: each reward's samples, one after another
        on ``num_cpus_per_worker`` processes, each at most its timeout (and a build per reward)."""
        inner = max(1, int(self.num_cpus_per_worker))
        per_reward = [
            BUILD_BUDGET_S + r.timeout * (size if r.spec.batched else -(-size // inner)) for r in self._remote
        ]
        return sum(per_reward) + CHUNK_SLACK_S

    def _fail(self, actor: Any, chunk: _Chunk, results: dict[str, list], reason: str) -> None:
        for bound in self._remote:
            for i in chunk.indices:
                results[bound.name][i] = SampleResult("error", None, {"error": reason})
        try:
            self.ray.kill(actor)
        except Exception:  # noqa: BLE001 - already gone with its node
            pass
        if actor in self._all:
            self._all.remove(actor)
        self.replaced_workers += 1  # the next chunk that needs an actor starts a new one

    def _spawn(self) -> Any:
        workers = max(1, int(self.num_cpus_per_worker))
        actor = self._actor_class.options(
            num_cpus=self.num_cpus_per_worker, scheduling_strategy="SPREAD", max_restarts=0
        ).remote(self._payload, list(sys.path), workers, self.memory_mb)
        self._all.append(actor)
        return actor


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise GrpoHostError(
            "the ray executor needs Ray: pip install 'grpo-host[ray]' (or pip install ray)"
        ) from None
    return ray


def _connect(ray: Any, address: str | None) -> None:
    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    # The driver's prints stay ours; the actors' logs go to Ray's session folder.
    ray.init(address=address, log_to_driver=False, include_dashboard=False, ignore_reinit_error=True)


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]


_ACTOR: Any = None


def _actor_class(ray: Any) -> Any:
    """The actor, defined on first use so that importing this module never imports Ray."""
    global _ACTOR
    if _ACTOR is None:

        class RewardActor:
            def __init__(self, payload: bytes, sys_path: list[str], workers: int, memory_mb: int | None):
                # Rewards are imported by reference: the driver's import path makes a reward
                # defined in a user's module (or a test's) importable here too.
                sys.path[:0] = [p for p in sys_path if p and p not in sys.path]
                from grpo_host.rewards.runtime import RewardRuntime

                self.runtime = RewardRuntime(pickle.loads(payload), workers=workers, memory_mb=memory_mb)

            def score(self, samples: list[dict]) -> dict[str, list[SampleResult]]:
                return self.runtime.score(samples)

            def node(self) -> str:
                return ray.get_runtime_context().get_node_id()

        _ACTOR = ray.remote(RewardActor)
    return _ACTOR
