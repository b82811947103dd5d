"""The reward runtime: score samples with any set of rewards, in isolation, with honest outcomes.

Rewards run in a pool of worker processes that lives as long as the runtime (rewards are
imported once per worker). A batch is cut into contiguous chunks (GRPO's groups stay together,
so per-reference caches hit) and spread over the pool; every reward of the set is scored in
the same pass, so rewards run side by side rather than one after another. The host watches
each worker's progress: a sample that runs past its budget gets its worker killed and
replaced, is recorded as ``timeout``, and the rest of its chunk runs again elsewhere. A worker
that dies is replaced the same way. Nothing is ever turned into a silent 0.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any

from grpo_host.errors import GrpoHostError
from grpo_host.rewards.spec import HOST_PARAMS, OUTCOMES, RewardSpec, completion_text, to_outcome
from grpo_host.rewards.worker import PROGRESS, open_progress

# Importing a reward (math-verify, sympy) is not a sample's work; it gets its own budget.
BUILD_BUDGET_S = 120.0
DEADLINE_POLL_S = 0.05


@dataclass(frozen=True)
class BoundReward:
    """A reward with its params resolved: what a run actually scores with."""

    spec: RewardSpec
    params: dict[str, Any]
    timeout: float
    weight: float = 1.0
    alias: str = ""  # the name results are reported under (defaults to the spec's)

    @property
    def name(self) -> str:
        return self.alias or self.spec.name

    @property
    def key(self) -> str:
        return self.spec.provenance(self.params)["params_hash"]

    def provenance(self) -> dict[str, Any]:
        return {**self.spec.provenance(self.params), "timeout": self.timeout, "weight": self.weight}


def bind_reward(spec: RewardSpec, params: Mapping[str, Any] | None = None, alias: str = "") -> BoundReward:
    """Split host params (timeout, weight) from the reward's own and validate both."""
    params = dict(params or {})
    host = {k: params.pop(k) for k in HOST_PARAMS if k in params}
    timeout = float(host.get("timeout", spec.default_timeout))
    weight = float(host.get("weight", 1.0))
    if not timeout > 0:
        raise GrpoHostError(f"reward {spec.name!r}: timeout must be a positive number of seconds, not {timeout}")
    return BoundReward(spec, spec.resolve_params(params), timeout, weight, alias)


@dataclass
class SampleResult:
    outcome: str
    score: float | None
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {"score": self.score, "outcome": self.outcome, "seconds": round(self.seconds, 6), "details": self.details}


def prepare_samples(
    completions: Sequence[Any], columns: Mapping[str, Sequence[Any]] | None = None
) -> list[dict[str, Any]]:
    """Rows in the runtime's form: ``completion`` as text, ``messages`` when it was chat."""
    columns = columns or {}
    samples = []
    for i, completion in enumerate(completions):
        text, messages = completion_text(completion)
        sample: dict[str, Any] = {key: values[i] for key, values in columns.items() if values is not None}
        sample["completion"] = text
        sample["messages"] = messages
        samples.append(sample)
    return samples


class _Worker:
    def __init__(self, memory_mb: int | None):
        env = dict(os.environ)
        # One thread per worker: the pool is the parallelism.
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        shm_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, self.progress_path = tempfile.mkstemp(prefix="grpo-host-progress-", dir=shm_dir)
        os.write(fd, b"\0" * PROGRESS.size)
        os.close(fd)
        self.progress = open_progress(self.progress_path)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grpo_host.rewards.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
        )
        self.inbox = Connection(os.dup(self.proc.stdout.fileno()), writable=False)
        self.outbox = Connection(os.dup(self.proc.stdin.fileno()), readable=False)
        self.proc.stdout.close()
        self.proc.stdin.close()
        self.outbox.send({"sys_path": list(sys.path), "memory_mb": memory_mb, "progress": self.progress_path})
        self.task: _Chunk | None = None
        self.sent_at = 0.0

    def position(self) -> tuple[int, float]:
        """(index of the sample in hand, when it started); read twice to skip a torn write."""
        while True:
            first = PROGRESS.unpack_from(self.progress, 0)
            if PROGRESS.unpack_from(self.progress, 0) == first:
                return first

    def deadline(self, timeout: float, batched_size: int) -> float:
        index, started = self.position()
        if index < 0:  # not picked up yet, or importing the reward: not a sample's time
            return max(self.sent_at, started) + BUILD_BUDGET_S
        return started + timeout * batched_size

    def kill(self) -> None:
        try:
            self.proc.kill()
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - already gone
            pass
        for conn in (self.inbox, self.outbox):
            try:
                conn.close()
            except OSError:
                pass
        try:
            self.progress.close()
            os.unlink(self.progress_path)
        except (OSError, ValueError):
            pass

    def stop(self) -> None:
        try:
            self.outbox.send(("stop",))
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            pass
        self.kill()


@dataclass
class _Chunk:
    reward_index: int
    indices: list[int]  # sample positions still to score, in order
    done: int = 0  # how many of `indices` have results


class RewardRuntime:
    """Scores batches of samples with a fixed set of rewards.

    ``workers`` is the pool size (default: the cores available to this process); 0 scores
    every reward in this process with no timeouts (for debugging). ``memory_mb`` caps each
    worker's address space. Use it as a context manager, or call ``close()``.
    """

    def __init__(
        self,
        rewards: Sequence[BoundReward],
        *,
        workers: int | None = None,
        memory_mb: int | None = None,
        chunks_per_worker: int = 2,
    ):
        if not rewards:
            raise GrpoHostError("a reward runtime needs at least one reward")
        names = [r.name for r in rewards]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise GrpoHostError(f"reward(s) {', '.join(dupes)} listed twice; give one an alias to use it twice")
        self.rewards = list(rewards)
        self.size = _available_cores() if workers is None else max(0, int(workers))
        self.memory_mb = memory_mb
        self.chunks_per_worker = chunks_per_worker
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._next_task = 0
        self.totals = {r.name: dict.fromkeys(OUTCOMES, 0) for r in self.rewards}
        self.seconds = {r.name: 0.0 for r in self.rewards}
        self.replaced_workers = 0
        self._finalizer = weakref.finalize(self, _kill_all, self._all)
        atexit.register(self._finalizer)

    # -- public ----------------------------------------------------------------------------
    def score(self, samples: Sequence[Mapping[str, Any]]) -> dict[str, list[SampleResult]]:
        """Score every sample with every reward: ``{reward name: [SampleResult, ...]}``."""
        samples = [dict(s) for s in samples]
        results: dict[str, list[SampleResult | None]] = {r.name: [None] * len(samples) for r in self.rewards}
        pooled = [i for i, r in enumerate(self.rewards) if r.spec.isolation == "process" and self.size > 0]
        for i, bound in enumerate(self.rewards):
            if i not in pooled:
                results[bound.name] = self._score_inline(bound, samples)
        if pooled and samples:
            self._score_pooled(pooled, samples, results)
        final: dict[str, list[SampleResult]] = {}
        for bound in self.rewards:
            rows = [r if r is not None else SampleResult("error", None, {"error": "lost result"}) for r in results[bound.name]]
            for row in rows:
                self.totals[bound.name][row.outcome] += 1
                self.seconds[bound.name] += row.seconds
            final[bound.name] = rows
        return final

    def close(self) -> None:
        for worker in list(self._all):
            worker.stop()
        self._all.clear()
        self._idle.clear()

    def __enter__(self) -> RewardRuntime:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- in process ------------------------------------------------------------------------
    def _score_inline(self, bound: BoundReward, samples: list[dict]) -> list[SampleResult]:
        score = _inline_cache(self).get(bound.key)
        if score is None:
            try:
                score = _inline_cache(self)[bound.key] = bound.spec.build(bound.params)
            except Exception as exc:  # noqa: BLE001
                err = {"error": f"could not build reward: {type(exc).__name__}: {exc}"}
                return [SampleResult("error", None, err) for _ in samples]
        rows: list[SampleResult] = []
        if bound.spec.batched:
            start = time.perf_counter()
            try:
                raws = list(score(samples))
            except Exception as exc:  # noqa: BLE001
                raws = [exc] * len(samples)
            if len(raws) != len(samples):
                raws = [ValueError(f"score_batch returned {len(raws)} scores for {len(samples)} samples")] * len(samples)
            per = (time.perf_counter() - start) / max(len(samples), 1)
            return [SampleResult(*to_outcome(raw), per) for raw in raws]
        for sample in samples:
            start = time.perf_counter()
            raw = score([sample])[0]
            rows.append(SampleResult(*to_outcome(raw), time.perf_counter() - start))
        return rows

    # -- the pool --------------------------------------------------------------------------
    def _score_pooled(self, pooled: list[int], samples: list[dict], results: dict[str, list]) -> None:
        n = len(samples)
        per_chunk = max(1, -(-n // (self.size * self.chunks_per_worker)))
        pending: deque[_Chunk] = deque()
        for reward_index in pooled:
            bound = self.rewards[reward_index]
            step = n if bound.spec.batched else per_chunk
            for start in range(0, n, step):
                pending.append(_Chunk(reward_index, list(range(start, min(n, start + step)))))
        busy: dict[Connection, _Worker] = {}

        def record(chunk: _Chunk, result: SampleResult) -> None:
            results[self.rewards[chunk.reward_index].name][chunk.indices[chunk.done]] = result
            chunk.done += 1

        def fail(worker: _Worker, outcome: str, reason: str) -> None:
            """The worker is gone or killed: blame the sample in hand, re-run the others."""
            chunk = worker.task
            assert chunk is not None
            bound = self.rewards[chunk.reward_index]
            index, _ = worker.position()
            worker.kill()
            self._all.discard(worker)
            self.replaced_workers += 1
            if bound.spec.batched or index < chunk.done:
                culprits, rest = chunk.indices[chunk.done :], []
            else:
                culprits, rest = [chunk.indices[index]], chunk.indices[chunk.done : index] + chunk.indices[index + 1 :]
            seconds = bound.timeout if outcome == "timeout" else 0.0
            for i in culprits:
                results[bound.name][i] = SampleResult(outcome, None, {"error": reason}, seconds)
            if rest:
                pending.appendleft(_Chunk(chunk.reward_index, rest))

        while pending or busy:
            while pending and (self._idle or len(self._all) < self.size):
                worker = self._idle.pop() if self._idle else self._spawn()
                self._send(worker, pending.popleft(), samples)
                busy[worker.inbox] = worker
            timeout = max(0.0, min(self._deadline(w) for w in busy.values()) - time.monotonic())
            if any(w.position()[0] < 0 for w in busy.values()):
                # A worker still picking its chunk up has only the build budget as deadline;
                # wake up soon to read its first sample's start, or a hang runs unchecked.
                timeout = min(timeout, DEADLINE_POLL_S)
            for conn in wait(list(busy), timeout=timeout):
                worker = busy[conn]
                try:
                    _, _task, first, rows = conn.recv()
                except (EOFError, OSError):
                    try:
                        code = worker.proc.wait(timeout=2)
                    except subprocess.TimeoutExpired:
                        code = None
                    del busy[conn]
                    fail(worker, "error", f"reward worker died (exit code {code}) on this sample")
                    continue
                chunk = worker.task
                assert chunk is not None and first == chunk.done
                for outcome, score, details, seconds in rows:
                    record(chunk, SampleResult(outcome, score, details, seconds))
                if chunk.done >= len(chunk.indices):
                    worker.task = None
                    del busy[conn]
                    self._idle.append(worker)
            now = time.monotonic()
            for conn, worker in list(busy.items()):
                if self._deadline(worker) <= now and not conn.poll():
                    del busy[conn]
                    budget = self.rewards[worker.task.reward_index].timeout
                    fail(worker, "timeout", f"ran past its {budget:g} s budget; the worker was killed")

    def _deadline(self, worker: _Worker) -> float:
        chunk = worker.task
        assert chunk is not None
        bound = self.rewards[chunk.reward_index]
        return worker.deadline(bound.timeout, len(chunk.indices) if bound.spec.batched else 1)

    def _spawn(self) -> _Worker:
        worker = _Worker(self.memory_mb)
        self._all.add(worker)
        return worker

    def _send(self, worker: _Worker, chunk: _Chunk, samples: list[dict]) -> None:
        bound = self.rewards[chunk.reward_index]
        self._next_task += 1
        worker.task = chunk
        worker.sent_at = time.monotonic()
        PROGRESS.pack_into(worker.progress, 0, -2, worker.sent_at)
        payload = [samples[i] for i in chunk.indices]
        worker.outbox.send(
            ("score", self._next_task, bound.key, bound.spec.import_path, bound.params, bound.spec.batched, payload)
        )


_INLINE: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _inline_cache(runtime: RewardRuntime) -> dict[str, Any]:
    return _INLINE.setdefault(runtime, {})


def _kill_all(workers: set[_Worker]) -> None:
    for worker in list(workers):
        worker.kill()
    workers.clear()


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
