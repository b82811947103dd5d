"""Samples in, JSON results out: what the reward server and the exported files share.

A result is one sample's ``{"rewards": {name: {"score", "outcome", "seconds", "details"}},
"total": weighted sum of the ok scores or null}``, the form ``try-reward --json`` prints and the
server's ``/score`` returns.

:class:`ScoringPool` is the micro-batcher both share: callers on any thread submit samples;
*lanes*, each a :class:`RewardRuntime` of one worker process and a thread, take their share of
everything waiting when they come free and score it as one batch; with a window (``gather_s``)
and a hint of how many clients are active, a free lane first waits, briefly, for the requests
still on their way. Requests that arrive together are scored together, and a lane held up by a hanging sample (until its timeout) holds
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
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, InvalidStateError
from typing import TYPE_CHECKING, Any

from grpo_host.errors import GrpoHostError
from grpo_host.rewards.binding import BoundReward, bind_reward
from grpo_host.rewards.runtime import RewardRuntime, SampleResult, prepare_samples

if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.plugins.manager import PluginManager


def bind_rewards(items: Sequence[Any], manager: PluginManager | None = None) -> list[BoundReward]:
    """Reward items (names, ``(name, params)``, or dicts as in a run config) bound and checked;
    at least one."""
    if not items:
        raise GrpoHostError("name at least one reward")
    if manager is None:
        from grpo_host.plugins.manager import get_plugin_manager

        manager = get_plugin_manager()
    return [bind_reward(item, manager=manager) for item in items]


def total_score(rewards: Mapping[str, SampleResult], weights: Mapping[str, float]) -> float | None:
    """As TRL sums rewards: weighted, skipping the ones that gave no score."""
    scores = [weights[name] * r.score for name, r in rewards.items() if r.outcome == "ok" and r.score is not None]
    return sum(scores) if scores else None


def results_json(bound: Sequence[BoundReward], results: Mapping[str, Sequence[SampleResult]], count: int,
                 *, details: bool = True) -> list[dict[str, Any]]:
    # The total is TRL's sum (total_score above), inlined: this runs once per sample of every
    # request the server answers.
    columns = [(b.name, b.weight, results[b.name]) for b in bound]
    rows = []
    for i in range(count):
        shown = {}
        scores = []
        for name, weight, column in columns:
            result = column[i]
            outcome = result.outcome
            if details:
                shown[name] = result.to_json()
            else:
                item = {"score": result.score, "outcome": outcome, "seconds": round(result.seconds, 6)}
                if outcome in ("error", "timeout"):  # the reason stays: a failure must say why
                    item["error"] = result.details.get("error", "")
                shown[name] = item
            if outcome == "ok" and result.score is not None:
                scores.append(weight * result.score)
        rows.append({"rewards": shown, "total": sum(scores) if scores else None})
    return rows


def check_samples(samples: Any, completion: Callable[[Any], Any] | None = None) -> list[dict[str, Any]]:
    """The runtime's samples from a JSON list of ``{"completion": ..., <columns>}``, or a
    GrpoHostError saying which sample is wrong and how; ``completion``, when given, turns each
    completion into the one scored (the server cuts end tokens off with it)."""
    if not isinstance(samples, list):
        raise GrpoHostError(f"'samples' must be a list of objects, not {type(samples).__name__}")
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict):
            raise GrpoHostError(f"samples[{i}] must be an object with a 'completion', not {type(sample).__name__}")
        if "completion" not in sample:
            raise GrpoHostError(f"samples[{i}] has no 'completion' (keys: {', '.join(sample) or 'none'})")
    keys = sorted({k for s in samples for k in s if k != "completion"})
    completions = [s["completion"] for s in samples]
    if completion is not None:
        completions = [completion(c) for c in completions]
    try:
        return prepare_samples(completions, {k: [s.get(k) for s in samples] for k in keys})
    except TypeError as exc:
        raise GrpoHostError(f"samples: {exc}") from None


# One runtime call scores at most this many samples; the rest waits for the next free lane.
MAX_BATCH_SAMPLES = 2048
# Up to this many waiting samples go to one lane as one chunk: a chunk costs a worker round trip
# (a few hundred µs of CPU on a busy machine), more than scoring a few samples.
MIN_SPLIT_SAMPLES = 16


class _Job:
    __slots__ = ("samples", "future", "loop", "results", "left", "taken", "settled")

    def __init__(self, samples: list[dict[str, Any]], names: list[str], loop: Any = None):
        self.samples = samples
        # An asyncio future of ``loop`` when an event loop submitted it (settled from the lane
        # with one call into the loop per chunk), else a concurrent one.
        self.loop = loop
        self.future: Any = loop.create_future() if loop is not None else Future()
        self.results: dict[str, list] = {name: [None] * len(samples) for name in names}
        self.left = len(samples)  # samples not scored yet
        self.taken = 0  # samples handed to a lane
        self.settled = False


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
                 max_batch: int = MAX_BATCH_SAMPLES, warm: bool = False, gather_s: float = 0.0,
                 expected: Callable[[], int] | None = None,
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
        self.min_split = MIN_SPLIT_SAMPLES
        self._in_lanes = 0  # samples the lanes are scoring now
        self._open_jobs = 0  # requests submitted and not answered yet (waiting or being scored)
        # The micro-batching window (see _gather_more); 0: a free lane takes what is waiting.
        self.gather_s = max(0.0, float(gather_s))
        self.expected: Callable[[], int] = expected or (lambda: 0)
        self.gathered_waits = 0
        self._gatherer: threading.Thread | None = None
        self._gather_until = 0.0
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

    def submit(self, samples: list[dict[str, Any]], loop: Any = None) -> Any:
        """A future of the samples' results: a :class:`concurrent.futures.Future`, or with
        ``loop`` (the running event loop, calling from its thread) an asyncio future of it."""
        job = _Job(samples, self.names, loop)
        if not samples:
            job.future.set_result({name: [] for name in self.names})
            return job.future
        with self._cv:
            if self._closed:
                raise GrpoHostError("the scoring pool is closed")
            self._pending.append(job)
            self._waiting += len(samples)
            self._open_jobs += 1
            if self._gatherer is not None:
                self._cv.notify_all()  # the gathering lane must see it, not only a lane waiting on it
            else:
                self._cv.notify()
        return job.future

    def score(self, samples: list[dict[str, Any]]) -> dict[str, list[SampleResult]]:
        return self.submit(samples).result()

    def _take(self) -> list[tuple[_Job, int, int]] | None:
        with self._cv:
            self._idle += 1
            while True:
                if not self._pending:
                    if self._closed:
                        self._idle -= 1
                        return None
                    self._cv.wait()
                    continue
                if self._gatherer is not None and self._gatherer is not threading.current_thread():
                    self._cv.wait()  # another lane is gathering the next batch; it hands on the rest
                    continue
                if self._gather_more():
                    continue
                break
            self._gatherer = None
            waiting = self._waiting
            # A fair share of everything in hand (waiting and being scored) over all lanes, not
            # over the free ones: a lane that took everything while the others were busy for a
            # moment would score it alone while they sat idle. A few samples are not split: a
            # chunk's round trip to its worker costs more than scoring them.
            share = -(-(waiting + self._in_lanes) // len(self.runtimes))
            share = min(waiting, self.max_batch, max(share, self.min_split))
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
            self._in_lanes += taken
            self.busy += 1
            if self._pending:
                self._cv.notify_all()  # another free lane takes (or gathers) its share of the rest
            return parts

    def _gather_more(self) -> bool:
        """The micro-batching window, under the lock with samples waiting: True when this lane
        should wait a little for more. It waits only while requests are on their way (the
        ``expected`` hint, the clients active now: requests being read, in the pool, being
        answered, and clients answered a moment ago, which usually send the next request at
        once; those not in the pool are on their way) and its fair share of everything is not
        in yet, for at most ``gather_s`` from the first sample it saw: a lone client, or a
        batch that fills the lanes, goes out at once."""
        if self.gather_s <= 0 or self._closed:
            return self._stop_gathering()
        expected = self.expected() - self._open_jobs
        waiting = self._waiting
        if expected <= 0 or waiting >= self.max_batch:
            return self._stop_gathering()
        if waiting * len(self.runtimes) >= waiting + expected + self._in_lanes:
            return self._stop_gathering()  # its share is in
        now = time.monotonic()
        if self._gatherer is None:
            self._gatherer, self._gather_until = threading.current_thread(), now + self.gather_s
        left = self._gather_until - now
        if left <= 0:
            return self._stop_gathering()
        self.gathered_waits += 1
        self._cv.wait(left)
        return True

    def _stop_gathering(self) -> bool:
        self._gatherer = None
        return False

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
                        if job.left == 0 and not job.settled:
                            job.settled = True
                            self._open_jobs -= 1
                            done.append(job)
                    self.counts["batches"] += 1
                    self.counts["samples"] += len(merged)
                _settle_jobs(done)
            except BaseException as exc:  # noqa: BLE001 - the runtime failing is said to every caller
                with self._cv:
                    failed = [job for job, _, _ in parts if not job.settled]
                    for job in failed:
                        job.settled = True
                        self._open_jobs -= 1
                _settle_jobs(failed, exc)
                if not isinstance(exc, Exception):
                    raise
            finally:
                with self._cv:
                    self.busy -= 1
                    self._in_lanes -= sum(end - start for _, start, end in parts)

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
        _settle_jobs(leftover, GrpoHostError("the reward server is shutting down"))
        for runtime in self.runtimes:
            runtime.close()

    def __enter__(self) -> ScoringPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _settle_jobs(jobs: Sequence[_Job], exc: BaseException | None = None) -> None:
    """Settle finished jobs: concurrent futures here; asyncio ones with one call into each
    loop for all of them (a call per request was a thread hop and a loop wake-up each)."""
    by_loop: dict[Any, list[tuple[Any, Any]]] = {}
    for job in jobs:
        if job.loop is None:
            _settle(job.future, None if exc is not None else job.results, exc)
        else:
            by_loop.setdefault(job.loop, []).append((job.future, job.results))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_settle_async, items, exc)
        except RuntimeError:  # the loop is closed: nobody is waiting any more
            pass


def _settle_async(items: list[tuple[Any, Any]], exc: BaseException | None) -> None:
    for future, result in items:
        if not future.done():  # cancelled: its client left
            if exc is not None:
                future.set_exception(exc)
            else:
                future.set_result(result)


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
