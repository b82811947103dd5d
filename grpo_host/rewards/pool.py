"""The process pool: the executor that scores chunks of samples in worker processes, and what it
needs (samples on the wire, chunks, results, deadlines, memory caps).

Each worker runs one chunk at a time; the pool watches the worker's progress record, kills and
replaces a worker whose sample runs past its budget (or that dies), and hands back one result
per sample. :class:`~grpo_host.rewards.runtime.RewardRuntime` cuts batches into chunks and picks
the executor (this pool, or Ray actors that each run one of these pools); this module knows
nothing of either, so both executors import it and nothing runs back up.
"""


from __future__ import annotations

import copy
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, Protocol

from grpo_host.rewards.binding import BoundReward
from grpo_host.rewards.item import memory_error_text
from grpo_host.rewards.spec import completion_text
from grpo_host.rewards.worker import BUILDING, DONE, PROGRESS_SIZE, open_progress, read_progress

# Importing a reward (math-verify, sympy) is not a sample's work; it gets its own budget.
BUILD_BUDGET_S = 120.0
# How often the host looks at a worker whose record does not give a deadline yet (the chunk
# not picked up, or the worker between two samples).
DEADLINE_POLL_S = 0.05
# A chunk re-run this many times with no sample to blame (the worker died between samples)
# is given up as errors, so a worker that always dies cannot loop forever.
MAX_BLAMELESS_RERUNS = 3
# The default memory cap: half the machine's memory (or its cgroup's) shared by the workers,
# within these bounds per worker. A reward can set its own with the host param memory_mb.
DEFAULT_MEMORY_MB_RANGE = (1024, 4096)
# An async worker cancels a sample at the end of its budget itself; the host kills the worker
# only this much later, so the worker's own (cheaper, more precise) timeout wins the race.
ASYNC_SLACK_S = 2.0
# Where chunks run: this machine's process pool, or Ray actors across a cluster.
EXECUTORS = ("local", "ray")


def default_memory_mb(workers: int) -> int:
    """The memory cap per worker when a reward sets none: half of the machine's memory (or of
    its cgroup limit, in a container) shared among ``workers``, clamped to 1-4 GiB."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 8 << 30
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        if limit.isdigit():
            total = min(total, int(limit))
    except OSError:
        pass
    low, high = DEFAULT_MEMORY_MB_RANGE
    return max(low, min(high, total // 2 // max(1, workers) >> 20))


@dataclass
class SampleResult:
    outcome: str
    score: float | None
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "score": self.score,
            "outcome": self.outcome,
            "seconds": round(self.seconds, 6),
            "details": self.details,
        }


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


# Values a reward cannot change in place; a sample made only of these needs no copy.
_IMMUTABLE = frozenset({str, int, float, bool, type(None), bytes})


def _wire(sample: dict[str, Any]) -> Any:
    """A sample as sent to a worker. One with lists or dicts (chat messages, test cases) goes
    as its own pickle, so each sample gets fresh objects even where the caller shared one
    object between rows (TRL passes one prompt object to a whole group)."""
    for value in sample.values():
        if value.__class__ not in _IMMUTABLE:
            return pickle.dumps(sample, pickle.HIGHEST_PROTOCOL)
    return sample


def _private_copy(sample: dict[str, Any]) -> dict[str, Any]:
    """A copy a reward scored in this process may mutate without touching the caller's rows."""
    for value in sample.values():
        if value.__class__ not in _IMMUTABLE:
            break
    else:
        return dict(sample)
    try:
        return pickle.loads(pickle.dumps(sample, pickle.HIGHEST_PROTOCOL))
    except Exception:  # noqa: BLE001 - not picklable: deepcopy knows more types
        return copy.deepcopy(sample)


# -- the executor seam ------------------------------------------------------------------------
@dataclass
class Chunk:
    """Contiguous samples of one reward, scored in one pass by one worker."""

    reward_index: int
    reward: BoundReward
    indices: list[int]  # sample positions in the batch, in order
    samples: list[Any]  # the samples as sent (see _wire), aligned with indices
    memory_mb: int | None = None  # the cap this chunk runs under
    done: int = 0  # how many of `indices` have results
    reruns: int = 0  # times re-run with no sample to blame
    concurrency: int = 0  # an async reward's samples awaited at once in this chunk; 0: sync


class Executor(Protocol):
    """What the runtime needs from whatever runs chunks (the process pool today; an async or
    a Ray executor can plug in here): take chunks, give back one result per sample."""

    size: int
    # Whether a batched reward's batch is cut into one part per worker: False on one machine
    # (the reward batches for its own speed), True across machines (Ray).
    spreads_batches: bool
    replaced_workers: int  # workers killed or lost and replaced, since the start
    stale_replies: int  # replies dropped: an earlier chunk's, a duplicate, out of order

    @property
    def all(self) -> Collection[Any]:
        """The workers (processes or actors) alive now."""

    def submit(self, chunk: Chunk) -> None:
        """Queue a chunk; nothing runs until ``collect``."""

    def collect(self) -> Iterator[tuple[Chunk, int, SampleResult]]:
        """Run every submitted chunk; yield ``(chunk, sample index, result)`` once per sample,
        in any order, until all are answered. Never raises for anything a reward does."""

    def close(self) -> None: ...

    def kill_all(self) -> None:
        """Stop everything at once (the runtime's finalizer, a runtime failure)."""


class _Worker:
    def __init__(self) -> None:
        env = dict(os.environ)
        # One thread per worker: the pool is the parallelism.
        env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
        shm_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
        fd, self.progress_path = tempfile.mkstemp(prefix="grpo-host-progress-", dir=shm_dir)
        os.write(fd, b"\0" * PROGRESS_SIZE)
        os.close(fd)
        self.progress = open_progress(self.progress_path)
        # Its own session and process group: a sample's children are killed with it, and a
        # Ctrl-C at the terminal reaches only the host, which stops the pool itself.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "grpo_host.rewards.worker"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            close_fds=True,
            start_new_session=True,
        )
        stdout, stdin = self.proc.stdout, self.proc.stdin
        assert stdout is not None and stdin is not None  # both are pipes
        self.inbox = Connection(os.dup(stdout.fileno()), writable=False)
        self.outbox = Connection(os.dup(stdin.fileno()), readable=False)
        stdout.close()
        stdin.close()
        # Readable when the process ends, even while its children keep the pipes open.
        try:
            self.sentinel: int | None = os.pidfd_open(self.proc.pid)
        except (AttributeError, OSError):
            self.sentinel = None
        self.outbox.send({"sys_path": list(sys.path), "progress": self.progress_path})
        self.task_id = 0
        self.chunk: Chunk | None = None
        self.sent_at = 0.0
        self.killed = False

    def record(self) -> tuple[int, float] | None:
        """(index in hand, when it started) from a record of the current task, else None."""
        record = read_progress(self.progress)
        if record is None or record[0] != self.task_id:  # blank, torn, or of an earlier chunk
            return None
        return record[1], record[2]

    def kill(self) -> None:
        if self.killed:
            return
        self.killed = True
        _kill_tree(self.proc.pid)
        try:
            self.proc.wait(timeout=5)
        except Exception:  # noqa: BLE001 - already gone
            pass
        for conn in (self.inbox, self.outbox):
            try:
                conn.close()
            except OSError:
                pass
        if self.sentinel is not None:
            try:
                os.close(self.sentinel)
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
            self.proc.wait(timeout=2)
        except (OSError, ValueError, subprocess.TimeoutExpired):
            pass
        self.kill()


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tids = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tids:
            try:
                with open(f"/proc/{parent}/task/{tid}/children", encoding="ascii") as f:
                    kids = [int(p) for p in f.read().split()]
            except OSError:
                continue
            found.extend(kids)
            todo.extend(kids)
    return found


def _kill_tree(pid: int) -> None:
    """Kill a worker, its process group, and descendants that left the group (setsid)."""
    strays = _descendants(pid)
    for target, kill in [(pid, os.killpg), (pid, os.kill)] + [
        (p, f) for p in strays for f in (os.killpg, os.kill)
    ]:
        try:
            kill(target, signal.SIGKILL)
        except (OSError, ProcessLookupError):
            pass


class ProcessPool:
    """The executor of ``isolation="process"`` rewards: a pool of worker processes.

    Each chunk goes to a worker with a fresh task id. The host reads only records of that task
    (so a record left from an earlier chunk, or a blank one, never sets a deadline) and only
    replies with that task id whose first row is the next one expected; anything else is
    dropped and counted in ``stale_replies``.
    """

    spreads_batches = False  # a batched reward's batch stays whole, on one worker

    def __init__(self, size: int, memory_mb: int | None = None):
        self.size = size
        self.memory_mb = default_memory_mb(size) if memory_mb is None else memory_mb
        self.all: set[_Worker] = set()
        self._idle: list[_Worker] = []
        self._busy: dict[Connection, _Worker] = {}
        self._queue: deque[Chunk] = deque()
        self._out: list[tuple[Chunk, int, SampleResult]] = []
        self._next_task = 0
        self.replaced_workers = 0
        self.stale_replies = 0

    def submit(self, chunk: Chunk) -> None:
        if chunk.memory_mb is None:
            chunk.memory_mb = self.memory_mb if chunk.reward.memory_mb is None else chunk.reward.memory_mb
        self._queue.append(chunk)

    def collect(self) -> Iterator[tuple[Chunk, int, SampleResult]]:
        try:
            yield from self._collect()
        finally:
            if self._queue or self._busy:  # abandoned (Ctrl-C, the caller's error): start clean
                for worker in list(self._busy.values()):
                    self._retire(worker)
                self._queue.clear()
                self._out.clear()

    def _collect(self) -> Iterator[tuple[Chunk, int, SampleResult]]:
        while self._queue or self._busy:
            self._dispatch()
            yield from self._drain_out()
            if not self._busy:
                continue
            waitables: list[Any] = list(self._busy)
            sentinels = {w.sentinel: w for w in self._busy.values() if w.sentinel is not None}
            waitables.extend(sentinels)
            for ready in wait(waitables, timeout=self._wake_in()):
                if isinstance(ready, Connection):
                    worker = self._busy.get(ready)
                    if worker is not None:
                        self._read(worker)
                elif isinstance(ready, int):
                    worker = sentinels[ready]
                    if worker.chunk is not None and not worker.killed:
                        self._died(worker)
            self._check_deadlines()
            yield from self._drain_out()

    def close(self) -> None:
        for worker in list(self.all):
            worker.stop()
        self.all.clear()
        self._idle.clear()
        self._busy.clear()
        self._queue.clear()

    def kill_all(self) -> None:
        for worker in list(self.all):
            worker.kill()
        self.all.clear()
        self._idle.clear()
        self._busy.clear()

    # -- internals ----------------------------------------------------------------------------
    def _drain_out(self) -> list[tuple[Chunk, int, SampleResult]]:
        out, self._out = self._out, []
        return out

    def _dispatch(self) -> None:
        while self._queue and (self._idle or len(self.all) < self.size):
            chunk = self._queue.popleft()
            try:
                worker = self._idle.pop() if self._idle else self._spawn()
            except OSError as exc:
                self._give(
                    chunk, chunk.indices[chunk.done :], "error", f"could not start a reward worker: {exc}"
                )
                continue
            self._next_task += 1
            worker.task_id, worker.chunk, worker.sent_at = self._next_task, chunk, time.monotonic()
            bound = chunk.reward
            try:
                worker.outbox.send(
                    (
                        "score",
                        worker.task_id,
                        bound.key,
                        bound.spec.import_path,
                        bound.params,
                        bound.spec.batched,
                        chunk.memory_mb or None,
                        bound.name,
                        chunk.samples,
                        bound.timeout,
                        chunk.concurrency,
                    )
                )
            except (OSError, ValueError):  # an idle worker that died meanwhile: use another
                worker.chunk = None
                self._retire(worker)
                self._queue.appendleft(chunk)
                continue
            self._busy[worker.inbox] = worker

    def _spawn(self) -> _Worker:
        worker = _Worker()
        self.all.add(worker)
        return worker

    def _retire(self, worker: _Worker) -> None:
        worker.kill()
        self.all.discard(worker)
        self._busy.pop(worker.inbox, None)
        if worker in self._idle:
            self._idle.remove(worker)

    def _read(self, worker: _Worker) -> None:
        """Read every reply waiting from a busy worker."""
        conn = worker.inbox
        while worker.chunk is not None and not worker.killed:
            try:
                if not conn.poll():
                    return
                message = conn.recv()
            except (EOFError, OSError):
                self._died(worker)
                return
            except Exception as exc:  # noqa: BLE001 - a corrupted stream: the worker cannot be trusted
                self._fail(
                    worker,
                    "error",
                    f"reward worker sent an unreadable reply ({type(exc).__name__}); it was replaced",
                )
                return
            self._accept(worker, message)

    def _accept(self, worker: _Worker, message: Any) -> None:
        chunk = worker.chunk
        assert chunk is not None
        try:
            kind, task, first, rows = message
            rows = list(rows)
        except (TypeError, ValueError):
            self.stale_replies += 1
            return
        if kind != "results" or task != worker.task_id or first != chunk.done:
            self.stale_replies += 1  # an earlier chunk's, a duplicate, or out of order
            return
        if chunk.done + len(rows) > len(chunk.indices):
            self.stale_replies += 1
            return
        for outcome, score, details, seconds in rows:
            self._out.append(
                (chunk, chunk.indices[chunk.done], SampleResult(outcome, score, details or {}, seconds))
            )
            chunk.done += 1
        if chunk.done >= len(chunk.indices):
            worker.chunk = None
            del self._busy[worker.inbox]
            self._idle.append(worker)

    def _died(self, worker: _Worker) -> None:
        # Kill what is left of its tree first, so the pipe closes and nothing holds it open.
        _kill_tree(worker.proc.pid)
        try:
            code = worker.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        conn = worker.inbox
        try:  # replies it sent before dying still count
            while worker.chunk is not None and conn.poll():
                self._accept(worker, conn.recv())
        except Exception:  # noqa: BLE001 - a reply cut off by the death
            pass
        if worker.chunk is None:  # it answered everything, then died: nothing to blame
            self._retire(worker)
            self.replaced_workers += 1
            return
        self._fail(worker, "error", _death_text(code, worker.chunk.memory_mb, worker.chunk.reward.name))

    def _fail(self, worker: _Worker, outcome: str, reason: str) -> None:
        """The worker is gone or must go: blame the sample in hand, re-run the others."""
        chunk = worker.chunk
        assert chunk is not None
        record = worker.record()
        self._retire(worker)
        self.replaced_workers += 1
        remaining = chunk.indices[chunk.done :]
        position = record[0] if record else None
        base = chunk.done
        if record is not None and record[0] == BUILDING:
            what = (
                "importing and building the reward"
                if outcome == "error"
                else f"building the reward took over {BUILD_BUDGET_S:g} s"
            )
            self._give(chunk, remaining, outcome, f"{reason} ({what})")
            return
        if chunk.reward.spec.batched and record is not None and record[0] >= 0:
            self._give(chunk, remaining, outcome, reason)
            return
        if record is None or record[0] < 0 or position is None or not base <= position < len(chunk.indices):
            # Between two samples, or before the first: no sample to blame; run the rest again.
            if chunk.reruns >= MAX_BLAMELESS_RERUNS:
                self._give(
                    chunk, remaining, "error", f"{reason}; it died {chunk.reruns + 1} times between samples"
                )
                return
            self._rerun(chunk, list(range(base, len(chunk.indices))), chunk.reruns + 1)
            return
        self._give(chunk, [chunk.indices[position]], outcome, reason)
        rest = list(range(base, position)) + list(range(position + 1, len(chunk.indices)))
        if rest:
            self._rerun(chunk, rest, chunk.reruns)

    def _give(self, chunk: Chunk, indices: list[int], outcome: str, reason: str) -> None:
        seconds = chunk.reward.timeout if outcome == "timeout" else 0.0
        for i in indices:
            self._out.append((chunk, i, SampleResult(outcome, None, {"error": reason}, seconds)))

    def _rerun(self, chunk: Chunk, positions: list[int], reruns: int) -> None:
        self._queue.appendleft(
            Chunk(
                chunk.reward_index,
                chunk.reward,
                [chunk.indices[p] for p in positions],
                [chunk.samples[p] for p in positions],
                chunk.memory_mb,
                0,
                reruns,
                chunk.concurrency,
            )
        )

    def _deadline(self, worker: _Worker) -> tuple[float, bool]:
        """(when the worker's current work runs out of budget, whether to look again soon)."""
        chunk = worker.chunk
        assert chunk is not None
        record = worker.record()
        if record is None:  # not picked up yet: only records written for this chunk count
            return worker.sent_at + BUILD_BUDGET_S, True
        index, started = record
        if index == BUILDING:
            return started + BUILD_BUDGET_S, True
        if index == DONE or index < chunk.done:
            # Finished, or between samples with the last one answered: its reply is on its way.
            return started + BUILD_BUDGET_S, True
        bound = chunk.reward
        budget = bound.timeout * (len(chunk.indices) - chunk.done if bound.spec.batched else 1)
        if chunk.concurrency:  # the worker times its samples out itself; this catches a blocked loop
            budget += ASYNC_SLACK_S
        return started + budget, False

    def _wake_in(self) -> float:
        now = time.monotonic()
        wake = float("inf")
        for worker in self._busy.values():
            deadline, poll = self._deadline(worker)
            wake = min(wake, deadline, now + DEADLINE_POLL_S if poll else wake)
            if worker.sentinel is None:
                wake = min(wake, now + 0.25)  # no pidfd: look at the process now and then
        return max(0.0, wake - now)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        for conn, worker in list(self._busy.items()):
            if worker.sentinel is None and worker.proc.poll() is not None:
                self._died(worker)
                continue
            deadline, _ = self._deadline(worker)
            if deadline > now:
                continue
            if conn.poll():  # a reply came in meanwhile: read it before judging
                self._read(worker)
                if worker.chunk is None or worker.killed:
                    continue
                deadline, _ = self._deadline(worker)
                if deadline > time.monotonic():
                    continue
            record = worker.record()
            if record is not None and record[0] == BUILDING:
                self._fail(worker, "timeout", "the worker was killed")
                continue
            assert worker.chunk is not None  # a busy worker has a chunk
            budget = worker.chunk.reward.timeout
            self._fail(worker, "timeout", f"ran past its {budget:g} s budget; the worker was killed")


def _death_text(code: int | None, memory_mb: int | None, reward: str) -> str:
    if code is not None and code < 0:
        try:
            how = f"killed by {signal.Signals(-code).name}"
        except ValueError:
            how = f"killed by signal {-code}"
    else:
        how = f"exit code {code}"
    text = f"reward worker died ({how}) on this sample"
    if memory_mb and code is not None and code < 0:
        text += f"; if it ran out of memory, it {memory_error_text(memory_mb, reward)}"
    return text


def _available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)
