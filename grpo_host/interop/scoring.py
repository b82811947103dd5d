"""Samples in, JSON results out: what the reward server and the exported files share.

A result is one sample's ``{"rewards": {name: {"score", "outcome", "seconds", "details"}},
"total": weighted sum of the ok scores or null}``, the form ``try-reward --json`` prints and the
server's ``/score`` returns.

:class:`ScoringPool` is the micro-batcher both share: callers on any thread submit samples;
*lanes*, each a :class:`RewardRuntime` of one worker process and a thread, take their share of
everything waiting when they come free and score it as one batch. Requests that arrive
together are scored together, and a lane held up by a hanging sample (until its timeout) holds
up only the requests of its own batch: the other lanes go on. ``local_scorer`` keeps one pool
per process and reward list, so an exported file called once per sample from a trainer's thread
pool (verl's reward managers, OpenRLHF's ``reward_func``) starts its workers once and batches.
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING, Any

from grpo_host.errors import GrpoHostError
from grpo_host.interop.trainer_side import strip_end_tokens
from grpo_host.rewards.runtime import BoundReward, RewardRuntime, SampleResult, prepare_samples

if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.manager import PluginManager


def bind_rewards(items: Sequence[Any], manager: PluginManager | None = None) -> list[BoundReward]:
    """Reward items (names, ``(name, params)``, or dicts as in a run config) bound and checked."""
    from grpo_host.rewards.trl_adapter import resolve_reward_item

    bound = [resolve_reward_item(item if isinstance(item, str) else _as_item(item), manager) for item in items]
    if not bound:
        raise GrpoHostError("name at least one reward")
    return bound


def _as_item(item: Any) -> Any:
    if isinstance(item, (list, tuple)) and len(item) == 2:  # JSON turns a tuple into a list
        return (item[0], dict(item[1] or {}))
    return item


def total_score(rewards: Mapping[str, SampleResult], weights: Mapping[str, float]) -> float | None:
    """As TRL sums rewards: weighted, skipping the ones that gave no score."""
    scores = [weights[name] * r.score for name, r in rewards.items() if r.outcome == "ok" and r.score is not None]
    return sum(scores) if scores else None


def results_json(bound: Sequence[BoundReward], results: Mapping[str, Sequence[SampleResult]], count: int,
                 *, details: bool = True) -> list[dict[str, Any]]:
    weights = {b.name: b.weight for b in bound}
    rows = []
    for i in range(count):
        per = {b.name: results[b.name][i] for b in bound}
        shown = {}
        for name, result in per.items():
            item = result.to_json()
            if not details:
                item.pop("details", None)
                if result.outcome in ("error", "timeout"):  # the reason stays: a failure must say why
                    item["error"] = result.details.get("error", "")
            shown[name] = item
        rows.append({"rewards": shown, "total": total_score(per, weights)})
    return rows


def check_samples(samples: Any, end_tokens: Sequence[str] = ()) -> list[dict[str, Any]]:
    """The runtime's samples from a JSON list of ``{"completion": ..., <columns>}``, or a
    GrpoHostError saying which sample is wrong and how; ``end_tokens`` are cut off the end of
    each completion (of a chat completion's last message)."""
    if not isinstance(samples, list):
        raise GrpoHostError(f"'samples' must be a list of objects, not {type(samples).__name__}")
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict):
            raise GrpoHostError(f"samples[{i}] must be an object with a 'completion', not {type(sample).__name__}")
        if "completion" not in sample:
            raise GrpoHostError(f"samples[{i}] has no 'completion' (keys: {', '.join(sample) or 'none'})")
    keys = sorted({k for s in samples for k in s if k != "completion"})
    completions = [s["completion"] for s in samples]
    if end_tokens:
        completions = [_strip_completion(c, end_tokens) for c in completions]
    try:
        return prepare_samples(completions, {k: [s.get(k) for s in samples] for k in keys})
    except TypeError as exc:
        raise GrpoHostError(f"samples: {exc}") from None


def _strip_completion(completion: Any, end_tokens: Sequence[str]) -> Any:
    if isinstance(completion, str):
        return strip_end_tokens(completion, end_tokens)
    if isinstance(completion, list) and completion and isinstance(completion[-1], dict):
        last = completion[-1]
        if isinstance(last.get("content"), str):
            return [*completion[:-1], {**last, "content": strip_end_tokens(last["content"], end_tokens)}]
    return completion


# One runtime call scores at most this many samples; the rest waits for the next free lane.
MAX_BATCH_SAMPLES = 2048


class _Job:
    __slots__ = ("samples", "future", "results", "left", "taken")

    def __init__(self, samples: list[dict[str, Any]], names: list[str]):
        self.samples = samples
        self.future: Future = Future()
        self.results: dict[str, list] = {name: [None] * len(samples) for name in names}
        self.left = len(samples)  # samples not scored yet
        self.taken = 0  # samples handed to a lane


class ScoringPool:
    """Micro-batching over ``workers`` lanes, each a reward runtime of one worker process; thread-safe.

    ``submit`` returns a :class:`concurrent.futures.Future` of ``{reward name: [SampleResult]}``
    for the submitted samples (``asyncio.wrap_future`` awaits it from an event loop). A lane
    that comes free takes its share of every sample waiting, ``ceil(waiting / lanes)``: a
    large request is cut over the free lanes (each piece one round trip to its worker, groups
    kept together), and many small ones waiting while the lanes were busy go out as one batch.
    ``workers=0`` scores in one lane in this process, without timeouts (debugging).
    """

    def __init__(self, bound: Sequence[BoundReward], *, workers: int | None = None,
                 max_batch: int = MAX_BATCH_SAMPLES, warm: bool = False,
                 executor: str = "local", executor_options: dict[str, Any] | None = None):
        executor_options = dict(executor_options or {})
        if executor == "ray" and workers is None:  # one lane per actor the cluster holds
            from grpo_host.rewards.ray_executor import cluster_workers

            workers = cluster_workers(**executor_options)
        workers = _available_cores() if workers is None else int(workers)
        if workers < 0:
            raise GrpoHostError(f"workers must be 0 (score in this process) or more, not {workers}")
        lanes, per_lane = (1, 0) if workers == 0 else (workers, 1)
        self.bound = list(bound)
        self.names = [b.name for b in self.bound]
        self.max_batch = max(1, int(max_batch))
        self.runtimes: list[RewardRuntime] = []
        try:
            for _ in range(lanes):
                self.runtimes.append(RewardRuntime(self.bound, workers=per_lane, chunks_per_worker=1,
                                                   executor=executor, executor_options=executor_options))
        except BaseException:
            for runtime in self.runtimes:
                runtime.close()
            raise
        self.counts = {"samples": 0, "batches": 0}
        self.busy = 0
        self._idle = 0
        self._baseline: dict[str, dict[str, int]] = {}
        self._pending: deque[_Job] = deque()
        self._waiting = 0  # samples submitted and not yet taken by a lane
        self._cv = threading.Condition()
        self._closed = False
        # A worker dies with the thread that started it (PR_SET_PDEATHSIG), so each lane's
        # thread starts its own worker, the warm-up's included, and lives as long as the pool.
        warmed = [threading.Event() for _ in self.runtimes]
        self._threads = [threading.Thread(target=self._lane, args=(runtime, warm, done), daemon=True,
                                          name=f"grpo-host-lane-{i}")
                         for i, (runtime, done) in enumerate(zip(self.runtimes, warmed, strict=True))]
        for thread in self._threads:
            thread.start()
        for done in warmed:
            done.wait()
        if warm:
            self._baseline = self._sum_totals()

    @property
    def workers(self) -> int:
        return sum(r.size for r in self.runtimes)

    def _sum_totals(self) -> dict[str, dict[str, int]]:
        summed: dict[str, dict[str, int]] = {}
        for runtime in self.runtimes:
            for name, totals in runtime.totals.items():
                into = summed.setdefault(name, dict.fromkeys(totals, 0))
                for outcome, count in totals.items():
                    into[outcome] = into.get(outcome, 0) + count
        return summed

    @property
    def totals(self) -> dict[str, dict[str, int]]:
        """Per reward, how many samples had each outcome (the warm-up left out)."""
        summed = self._sum_totals()
        return {name: {k: v - self._baseline.get(name, {}).get(k, 0) for k, v in totals.items()}
                for name, totals in summed.items()}

    @property
    def pending(self) -> int:
        """Samples waiting for a lane."""
        return self._waiting

    def submit(self, samples: list[dict[str, Any]]) -> Future:
        job = _Job(samples, self.names)
        if not samples:
            job.future.set_result({name: [] for name in self.names})
            return job.future
        with self._cv:
            if self._closed:
                raise GrpoHostError("the scoring pool is closed")
            self._pending.append(job)
            self._waiting += len(samples)
            self._cv.notify()
        return job.future

    def score(self, samples: list[dict[str, Any]]) -> dict[str, list[SampleResult]]:
        return self.submit(samples).result()

    def _take(self) -> list[tuple[_Job, int, int]] | None:
        with self._cv:
            self._idle += 1
            while not self._pending:
                if self._closed:
                    self._idle -= 1
                    return None
                self._cv.wait()
            # A fair share of all lanes, not of the free ones: a lane that took everything while
            # the others were busy for a moment would score it alone while they sat idle.
            share = min(self.max_batch, -(-self._waiting // len(self.runtimes)))
            self._idle -= 1
            parts, taken = [], 0
            while self._pending and taken < share:
                job = self._pending[0]
                count = min(len(job.samples) - job.taken, share - taken)
                parts.append((job, job.taken, job.taken + count))
                job.taken += count
                taken += count
                if job.taken == len(job.samples):
                    self._pending.popleft()
            self._waiting -= taken
            self.busy += 1
            if self._pending:
                self._cv.notify()  # another free lane takes its share of the rest
            return parts

    def _lane(self, runtime: RewardRuntime, warm: bool, warmed: threading.Event) -> None:
        if warm:  # the worker started (it imports the rewards) before the first request
            try:
                runtime.score([{"completion": "", "messages": None}])
            except Exception:  # noqa: BLE001 - a failing warm-up shows again on the first real batch
                pass
        warmed.set()
        while (parts := self._take()) is not None:
            try:
                merged = [s for job, start, end in parts for s in job.samples[start:end]]
                results = runtime.score(merged)
                done = []
                offset = 0
                with self._cv:
                    for job, start, end in parts:
                        for name, rows in results.items():
                            job.results[name][start:end] = rows[offset:offset + end - start]
                        offset += end - start
                        job.left -= end - start
                        if job.left == 0:
                            done.append(job)
                    self.counts["batches"] += 1
                    self.counts["samples"] += len(merged)
                for job in done:
                    _settle(job.future, job.results)
            except BaseException as exc:  # noqa: BLE001 - the runtime failing is said to every caller
                for job, _, _ in parts:
                    _settle(job.future, exc=exc)
                if not isinstance(exc, Exception):
                    raise
            finally:
                with self._cv:
                    self.busy -= 1

    def close(self, timeout: float = 30.0) -> None:
        """Finish what is queued (up to ``timeout`` s), then stop every lane's worker."""
        with self._cv:
            self._closed = True
            self._cv.notify_all()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._cv:
            leftover, self._pending = list(self._pending), deque()
        for job in leftover:
            _settle(job.future, exc=GrpoHostError("the reward server is shutting down"))
        for runtime in self.runtimes:
            runtime.close()

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settle(future: Future, result: Any = None, exc: BaseException | None = None) -> None:
    try:
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    except InvalidStateError:  # settled already, or cancelled: its caller gave up (the client left)
        pass


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class LocalScorer:
    """Rewards scored in this process's own worker pool; thread-safe, and concurrent callers'
    samples are scored as one batch."""

    def __init__(self, items: Sequence[Any], workers: int | None = None):
        self.bound = bind_rewards(items)
        self.names = [b.name for b in self.bound]
        self.pool = ScoringPool(self.bound, workers=workers)

    def score_json(self, samples: list[dict[str, Any]], *, details: bool = True) -> list[dict[str, Any]]:
        prepared = check_samples(samples)
        return results_json(self.bound, self.pool.score(prepared), len(prepared), details=details)

    def close(self) -> None:
        self.pool.close()


_SCORERS: dict[str, LocalScorer] = {}
_SCORERS_LOCK = threading.Lock()


def local_scorer(items: Sequence[Any], workers: int | None = None) -> LocalScorer:
    key = json.dumps([list(items), workers], sort_keys=True, default=str)
    with _SCORERS_LOCK:
        if key not in _SCORERS:
            _SCORERS[key] = scorer = LocalScorer(items, workers)
            atexit.register(scorer.close)
        return _SCORERS[key]
