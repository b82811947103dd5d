"""The reward runtime: score samples with any set of rewards, in isolation, with honest outcomes.

Rewards run in a pool of worker processes that lives as long as the runtime (rewards are
imported once per worker). A batch is cut into contiguous chunks (GRPO's groups stay together,
so per-reference caches hit) and handed to an executor; every reward of the set is scored in
the same pass, so rewards run side by side rather than one after another. The process pool
watches each worker's progress record: a sample that runs past its budget gets its worker (and
every process the worker started) killed and replaced, is recorded as ``timeout``, and the
rest of its chunk runs again elsewhere. A worker that dies is replaced the same way, and its
sample is an ``error`` whatever its children do. Replies carry the task id of their chunk; a
stale or duplicate one is dropped and counted. Nothing is ever turned into a silent 0, and
``score`` never raises for anything a reward does.

An async reward (``async def``) is cut into as many chunks as it takes to share its
``concurrency`` among the workers (ceil(n / concurrency) waves of waits, however many workers
there are); each chunk's samples are awaited concurrently in its worker, which cancels a
sample at the end of its budget itself. The host still watches the record: it names the
sample whose step is running (or the oldest in flight), so a coroutine that blocks the loop
gets its worker killed like any hung sample.
"""

from __future__ import annotations

import atexit
import os
import time
import weakref
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from grpo_host.errors import GrpoHostError

# The names callers import from here (bind_reward, BoundReward, prepare_samples,
# BUILD_BUDGET_S: the runtime's API since before binding and the pool moved to their modules).
from grpo_host.rewards.binding import BoundReward, bind_reward
from grpo_host.rewards.pool import (
    BUILD_BUDGET_S,
    EXECUTORS,
    Chunk,
    Executor,
    ProcessPool,
    SampleResult,
    _available_cores,
    _private_copy,
    _wire,
    default_memory_mb,
    prepare_samples,
)
from grpo_host.rewards.spec import (
    OUTCOMES,
    sample_outcome,
)

__all__ = [
    "BUILD_BUDGET_S", "EXECUTORS", "BoundReward", "RewardRuntime", "SampleResult", "bind_reward",
    "default_memory_mb", "prepare_samples",
]


class RewardRuntime:
    """Scores batches of samples with a fixed set of rewards.

    ``workers`` is the pool size (default: the cores available to this process); 0 scores
    every reward in this process with no timeouts (for debugging). ``memory_mb`` caps each
    worker's memory (its data segment: heap and private mappings) unless a reward sets its
    own; the default is half the machine's memory shared by the workers, within 1-4 GiB each
    (``default_memory_mb``), and 0 means no cap. ``executor="ray"`` runs the chunks on Ray
    actors across a cluster instead (``executor_options``: ``address``,
    ``num_cpus_per_worker``; ``workers`` is then the number of actors; see
    ``grpo_host.rewards.ray_executor``). Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        rewards: Sequence[BoundReward],
        *,
        workers: int | None = None,
        memory_mb: int | None = None,
        chunks_per_worker: int = 2,
        executor: str = "local",
        executor_options: Mapping[str, Any] | None = None,
    ):
        if executor not in EXECUTORS:
            raise GrpoHostError(
                f"unknown reward executor {executor!r}; choose one of: {', '.join(EXECUTORS)}"
            )
        if not rewards:
            raise GrpoHostError("a reward runtime needs at least one reward")
        names = [r.name for r in rewards]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise GrpoHostError(
                f"reward(s) {', '.join(dupes)} listed twice; give one an alias to use it twice"
            )
        self.rewards = list(rewards)
        self.size = _available_cores() if workers is None else max(0, int(workers))
        self.memory_mb = memory_mb
        self.chunks_per_worker = chunks_per_worker
        if executor == "ray":  # Ray actors across a cluster (grpo_host.rewards.ray_executor)
            from grpo_host.rewards.ray_executor import RayExecutor

            self.pool: Executor = RayExecutor(workers, memory_mb, **dict(executor_options or {}))
            self.size = self.pool.size
        else:
            self.pool = ProcessPool(self.size, memory_mb)
        self.totals = {r.name: dict.fromkeys(OUTCOMES, 0) for r in self.rewards}
        self.seconds = {r.name: 0.0 for r in self.rewards}
        self._inline: dict[str, Any] = {}
        self._async_runner: Any = None  # the private event loop of async rewards scored inline
        self._finalizer = weakref.finalize(self, self.pool.kill_all)
        atexit.register(self._finalizer)

    @property
    def replaced_workers(self) -> int:
        return self.pool.replaced_workers

    @property
    def stale_replies(self) -> int:
        return self.pool.stale_replies

    @property
    def _all(self) -> Collection[Any]:
        return self.pool.all

    # -- public ----------------------------------------------------------------------------
    def score(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, list[SampleResult]]:
        """Score every sample with every reward: ``{reward name: [SampleResult, ...]}``."""
        copies = [dict(s) for s in samples]
        results: dict[str, list[SampleResult | None]] = {r.name: [None] * len(copies) for r in self.rewards}
        pooled = [i for i, r in enumerate(self.rewards) if r.spec.isolation == "process" and self.size > 0]
        for i, bound in enumerate(self.rewards):
            if i not in pooled:
                results[bound.name] = [*self._score_inline(bound, copies)]
        if pooled and copies:
            try:
                self._score_pooled(pooled, copies, results)
            except Exception as exc:  # noqa: BLE001 - a runtime bug must not take the trainer down
                self.pool.kill_all()
                for i in pooled:
                    rows = results[self.rewards[i].name]
                    for j, row in enumerate(rows):
                        if row is None:
                            rows[j] = SampleResult(
                                "error", None, {"error": f"reward runtime failure: {exc!r}"}
                            )
        final: dict[str, list[SampleResult]] = {}
        for bound in self.rewards:
            scored = [
                r if r is not None else SampleResult("error", None, {"error": "lost result"})
                for r in results[bound.name]
            ]
            totals = self.totals[bound.name]
            spent = 0.0
            for result in scored:
                totals[result.outcome] += 1
                spent += result.seconds
            self.seconds[bound.name] += spent
            final[bound.name] = scored
        return final

    def close(self) -> None:
        self.pool.close()
        if self._async_runner is not None:
            self._async_runner.close()
            self._async_runner = None

    def __enter__(self) -> RewardRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- in process ------------------------------------------------------------------------
    def _score_inline(self, bound: BoundReward, samples: list[dict[str, Any]]) -> list[SampleResult]:
        score = self._inline.get(bound.key)
        if score is None:
            try:
                score = self._inline[bound.key] = bound.spec.build_scorer(bound.params)
            except BaseException as exc:  # noqa: BLE001 - SystemExit in a reward's __init__ too
                err = {"error": f"could not build reward: {type(exc).__name__}: {exc}"}
                return [SampleResult("error", None, err) for _ in samples]
        state = _ProcessState()
        if bound.spec.is_async:
            try:
                return self._score_inline_async(score, bound, samples)
            finally:
                state.restore()
        try:
            if bound.spec.batched:
                start = time.perf_counter()
                try:
                    raws = list(score([_private_copy(s) for s in samples]))
                except BaseException as exc:  # noqa: BLE001 - the trainer never sees a reward's exception
                    raws = [exc] * len(samples)
                if len(raws) != len(samples):
                    raws = [
                        ValueError(f"score_batch returned {len(raws)} scores for {len(samples)} samples")
                    ] * len(samples)
                per = (time.perf_counter() - start) / max(len(samples), 1)
                return [SampleResult(*_inline_outcome(raw), per) for raw in raws]
            rows: list[SampleResult] = []
            for sample in samples:
                start = time.perf_counter()
                try:
                    raw = score(_private_copy(sample))
                except BaseException as exc:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from a reward
                    raw = exc
                state.restore()
                rows.append(SampleResult(*_inline_outcome(raw), time.perf_counter() - start))
            return rows
        finally:
            state.restore()

    def _score_inline_async(
        self, score: Any, bound: BoundReward, samples: list[dict[str, Any]]
    ) -> list[SampleResult]:
        """An async reward in this process: awaited concurrently on a private loop, each sample
        under its budget (cancellation is cooperative here: nothing kills a blocked loop)."""
        from grpo_host.rewards.async_runner import AsyncRunner, TimedOut

        if self._async_runner is None:
            self._async_runner = AsyncRunner()
        runner = self._async_runner
        copies = [_private_copy(s) for s in samples]

        def result(raw: Any, seconds: float) -> SampleResult:
            if isinstance(raw, TimedOut):
                return SampleResult("timeout", None, {"error": raw.describe()}, seconds)
            return SampleResult(*_inline_outcome(raw), seconds)

        try:
            if bound.spec.batched:
                start = time.perf_counter()
                raw = runner.score_batch(score, copies, bound.timeout * len(copies))
                per = (time.perf_counter() - start) / max(len(copies), 1)
                if isinstance(raw, (TimedOut, BaseException)):
                    return [result(raw, per) for _ in copies]
                raws = list(raw)
                if len(raws) != len(copies):
                    raws = [ValueError(f"score_batch returned {len(raws)} scores for {len(copies)} samples")]
                    raws *= len(copies)
                return [result(r, per) for r in raws]
            rows: list[SampleResult | None] = [None] * len(copies)

            def finished(index: int, raw: Any, seconds: float) -> None:
                rows[index] = result(raw, seconds)

            runner.score_samples(
                score, copies, timeout=bound.timeout, concurrency=bound.concurrency, finished=finished
            )
            return [r or SampleResult("error", None, {"error": "lost result"}) for r in rows]
        except BaseException as exc:  # noqa: BLE001 - the trainer never sees a reward's exception
            err = {"error": f"async reward failed: {type(exc).__name__}: {exc}"}
            return [SampleResult("error", None, err) for _ in samples]

    # -- the pool --------------------------------------------------------------------------
    def _score_pooled(
        self, pooled: list[int], samples: list[dict[str, Any]], results: dict[str, list[SampleResult | None]]
    ) -> None:
        n = len(samples)
        per_chunk = max(1, -(-n // (self.size * self.chunks_per_worker)))
        wire = [_wire(s) for s in samples]
        for reward_index in pooled:
            bound = self.rewards[reward_index]
            if bound.spec.is_async:
                self._submit_async(reward_index, bound, wire)
                continue
            step = per_chunk
            if bound.spec.batched:
                # One batch, one worker, unless the executor spreads batches (see Executor).
                step = -(-n // self.size) if self.pool.spreads_batches and self.size > 1 else n
            for start in range(0, n, max(1, step)):
                stop = min(n, start + step)
                self.pool.submit(Chunk(reward_index, bound, list(range(start, stop)), wire[start:stop]))
        for chunk, index, result in self.pool.collect():
            results[chunk.reward.name][index] = result

    def _submit_async(self, reward_index: int, bound: BoundReward, wire: list[Any]) -> None:
        """An async reward's chunks: its concurrency shared among at most one chunk per worker,
        so the samples in flight never pass it, whatever the pool's size."""
        n = len(wire)
        if bound.spec.batched:
            self.pool.submit(Chunk(reward_index, bound, list(range(n)), wire, concurrency=1))
            return
        parts = max(1, min(self.size, bound.concurrency, n))
        share, extra = divmod(bound.concurrency, parts)
        size, left = divmod(n, parts)
        start = 0
        for part in range(parts):
            stop = start + size + (part < left)
            chunk = Chunk(
                reward_index,
                bound,
                list(range(start, stop)),
                wire[start:stop],
                concurrency=share + (part < extra),
            )
            self.pool.submit(chunk)
            start = stop


def _inline_outcome(raw: Any) -> tuple[str, float | None, dict[str, Any]]:
    name, score, details = sample_outcome(raw)
    return name, score, details or {}


class _ProcessState:
    """The calling process's cwd and environment, put back after an inline reward's sample."""

    def __init__(self) -> None:
        self.cwd = os.getcwd()
        self.environ = dict(os.environ)
        self.data = dict(getattr(os.environ, "_data", {}))  # the raw view: one C-level compare

    def restore(self) -> None:
        try:
            moved = os.getcwd() != self.cwd
        except OSError:  # the reward removed the directory it moved to
            moved = True
        if moved:
            os.chdir(self.cwd)
        if getattr(os.environ, "_data", self.data) != self.data or not self.data:
            if dict(os.environ) != self.environ:
                for key in [k for k in os.environ if k not in self.environ]:
                    del os.environ[key]
                os.environ.update(self.environ)
