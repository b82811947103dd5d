"""Async rewards: many samples of a chunk awaited at once on one event loop, each on its own budget.

A reward declared ``async def`` waits (on a judge server, an API) rather than computes, so a
worker awaits up to ``concurrency`` of its samples at once. Each sample's budget starts when it
gets one of those slots; when it runs out the sample is cancelled and ends as ``timeout``
without holding up the others, and whatever it raises (``SystemExit`` included) is its own
``error``. The loop is private to this runner: created on first use, never made the thread's
current loop, so a sync reward scored later in the same process finds no event loop.

Cancellation is cooperative; a coroutine that blocks the loop (``time.sleep``, C code) cannot be
stopped from inside. For that the runner reports, before every step a coroutine takes, which
sample it belongs to and when that sample started (``progress``), and between steps the
oldest sample still in flight: the host kills the worker when that record runs past its
budget, and knows whom to blame. Tasks a reward spawns inherit their sample (a context
variable) and are traced the same way. Tasks still pending when the chunk is over are
cancelled; if some refuse to end, the loop is thrown away and the next chunk gets a new one.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any

# Seconds the tasks a reward left behind get to end after being cancelled, at a chunk's end.
STRAGGLER_GRACE_S = 1.0

# The sample whose work a task does (inherited by the tasks a reward spawns); -1: none.
_SAMPLE: contextvars.ContextVar[int] = contextvars.ContextVar("grpo_host_sample", default=-1)


class TimedOut:
    """The raw result of a sample cancelled at the end of its budget."""

    __slots__ = ("budget",)

    def __init__(self, budget: float):
        self.budget = budget

    def describe(self) -> str:
        return f"ran past its {self.budget:g} s budget; it was cancelled"


class _Raised:
    """What a sample raised, carried out of its task as a value (so that SystemExit or
    KeyboardInterrupt from a reward never reaches the loop and stops it)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException):
        self.error = error


Progress = Callable[[int, float], None]
Finished = Callable[[int, Any, float], None]


class AsyncRunner:
    """Scores async rewards on a private event loop (one per runner, so one per worker)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self.discarded_loops = 0  # loops thrown away because a reward's tasks would not end

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
            self._loop.set_task_factory(_traced_task_factory)
        return self._loop

    # -- per sample --------------------------------------------------------------------------
    def score_samples(
        self,
        score: Callable[[Any], Any],
        samples: list[Any],
        *,
        timeout: float,
        concurrency: int,
        finished: Finished,
        progress: Progress | None = None,
    ) -> None:
        """Await ``score(sample)`` for every sample, at most ``concurrency`` at once, each for at
        most ``timeout`` seconds from its start. ``finished(index, raw, seconds)`` is called once
        per sample as it ends, in any order; ``raw`` is what it returned, the exception it
        raised, or a ``TimedOut``. Runs the loop in this thread (see ``run``)."""
        tracer = _Tracer(progress, len(samples) - 1)
        self.run(lambda: _drive(score, samples, timeout, max(1, int(concurrency)), finished, tracer), tracer)

    def score_batch(
        self,
        score: Callable[[list[Any]], Any],
        samples: list[Any],
        budget: float,
        progress: Progress | None = None,
    ) -> Any:
        """An async ``score_batch``: its list of raws, the exception it raised, or a TimedOut."""
        tracer = _Tracer(progress, 0)
        out: list[Any] = []

        def done(index: int, raw: Any, seconds: float) -> None:
            out.append(raw)

        self.run(lambda: _drive(lambda _: score(samples), [None], budget, 1, done, tracer), tracer)
        return out[0]

    def run(self, make: Callable[[], Awaitable[None]], tracer: _Tracer | None = None) -> None:
        """Run ``make()`` on the private loop to its end, then clear up what it left pending.

        Inside a thread whose own event loop is running (a notebook, an async server calling
        the runtime), the private loop runs in a helper thread instead: one thread cannot run
        two loops.
        """
        if _running_loop() is not None:
            failure: list[BaseException] = []

            def in_thread() -> None:
                try:
                    self._run(make, tracer)
                except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
                    failure.append(exc)

            helper = threading.Thread(target=in_thread, name="grpo-host-async-rewards", daemon=True)
            helper.start()
            helper.join()
            if failure:
                raise failure[0]
            return
        self._run(make, tracer)

    def _run(self, make: Callable[[], Awaitable[None]], tracer: _Tracer | None) -> None:
        loop = self.loop
        try:
            loop.run_until_complete(make())
        finally:
            self._end_stragglers(loop, tracer)
            _forget_current_loop(loop)

    def _end_stragglers(self, loop: asyncio.AbstractEventLoop, tracer: _Tracer | None = None) -> None:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        if not pending:
            return
        if tracer is not None:  # a fresh record: the clearing up has a budget of its own
            tracer.cleanup()
        for task in pending:
            task.cancel()
        try:
            loop.run_until_complete(asyncio.wait(pending, timeout=STRAGGLER_GRACE_S))
        except BaseException:  # noqa: BLE001 - a straggler's own failure is not the chunk's
            pass
        if any(not t.done() for t in pending):  # they refuse to end: start the next chunk clean
            self.discarded_loops += 1
            self._loop = None
            try:
                loop.close()
            except BaseException:  # noqa: BLE001 - closing a loop with stuck tasks still frees it
                pass

    def close(self) -> None:
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed():
            try:
                if _running_loop() is None:  # inside another loop this thread cannot run ours
                    self._end_stragglers(loop)
                    if not loop.is_closed():
                        loop.run_until_complete(loop.shutdown_asyncgens())
            except BaseException:  # noqa: BLE001
                pass
            if not loop.is_closed():
                loop.close()


def run_sequentially(score: Callable[..., Any], batched: bool, samples: list[Any]) -> list[Any]:
    """``RewardSpec.build`` for an async reward: raws, one sample after another, no budget."""
    runner = AsyncRunner()
    try:
        if batched:
            return list(runner.score_batch(score, samples, float("inf")))
        raws: list[Any] = [None] * len(samples)

        def done(index: int, raw: Any, seconds: float) -> None:
            raws[index] = raw

        runner.score_samples(score, samples, timeout=float("inf"), concurrency=1, finished=done)
        return raws
    finally:
        runner.close()


# -- the driver --------------------------------------------------------------------------------
class _Tracer:
    """Publishes, around every step of a traced task, where the chunk stands."""

    def __init__(self, progress: Progress | None, last: int):
        self.progress = progress
        self.last = last  # the chunk's last index: blamed when clearing up stalls
        self.running: dict[int, float] = {}  # index -> start, in start order (oldest first)

    def cleanup(self) -> None:
        if self.progress is not None:
            self.progress(max(self.last, 0), time.monotonic())

    def enter(self, index: int) -> None:
        if self.progress is None:
            return
        started = self.running.get(index)
        # A task the sample left behind, stepping after the sample ended: its own step's budget.
        self.progress(index, time.monotonic() if started is None else started)

    def leave(self) -> None:
        if self.progress is None or not self.running:
            return
        oldest = next(iter(self.running))
        self.progress(oldest, self.running[oldest])


_TRACER: contextvars.ContextVar[_Tracer | None] = contextvars.ContextVar("grpo_host_tracer", default=None)


async def _drive(
    score: Callable[[Any], Any],
    samples: list[Any],
    timeout: float,
    concurrency: int,
    finished: Finished,
    tracer: _Tracer,
) -> None:
    loop = asyncio.get_running_loop()
    waiting = deque(range(len(samples)))
    tasks: dict[int, tuple[asyncio.Task, asyncio.TimerHandle | None]] = {}
    wake = asyncio.Event()
    _TRACER.set(tracer)

    def end(index: int, raw: Any) -> None:
        started = tracer.running.pop(index, None)
        entry = tasks.pop(index, None)
        if started is None or entry is None:  # already ended (timed out, then its task finished)
            return
        task, timer = entry
        if timer is not None:
            timer.cancel()
        if isinstance(raw, TimedOut):
            task.cancel()
        finished(index, raw, time.monotonic() - started)
        wake.set()

    def start(index: int) -> None:
        started = time.monotonic()
        token = _SAMPLE.set(index)
        try:
            tracer.running[index] = started
            made = score(samples[index])
        except BaseException as exc:  # noqa: BLE001 - a reward that raises before it awaits
            tracer.running.pop(index, None)
            finished(index, exc, time.monotonic() - started)
            return
        finally:
            _SAMPLE.reset(token)
        if not inspect.isawaitable(made):  # declared async, answered at once
            tracer.running.pop(index, None)
            finished(index, made, time.monotonic() - started)
            return
        context = contextvars.copy_context()
        context.run(_SAMPLE.set, index)
        # Created inside the sample's context, the task runs in a copy of it (create_task's
        # `context=` is 3.11+), so the tasks it spawns inherit the sample too.
        task = context.run(loop.create_task, _one(made, index, tracer))
        timer = None
        if timeout != float("inf"):
            timer = loop.call_at(started + timeout, end, index, TimedOut(timeout))
        tasks[index] = (task, timer)
        task.add_done_callback(functools.partial(_when_done, end, index))

    while waiting or tasks:
        while waiting and len(tasks) < concurrency:
            start(waiting.popleft())
        tracer.leave()
        if tasks:
            wake.clear()
            await wake.wait()


def _when_done(end: Callable[[int, Any], None], index: int, task: asyncio.Task[Any]) -> None:
    end(index, _task_result(task))


async def _one(awaitable: Awaitable[Any], index: int, tracer: _Tracer) -> Any:
    try:
        return await _Stepped(_steps(awaitable.__await__(), index, tracer))
    except asyncio.CancelledError:
        raise
    except BaseException as exc:  # noqa: BLE001 - SystemExit from a reward is that sample's error
        return _Raised(exc)


def _task_result(task: asyncio.Task) -> Any:
    if task.cancelled():
        return asyncio.CancelledError("the reward's own task was cancelled")
    try:
        raw = task.result()
    except BaseException as exc:  # noqa: BLE001
        return exc
    return raw.error if isinstance(raw, _Raised) else raw


class _Stepped:
    __slots__ = ("steps",)

    def __init__(self, steps: Generator[Any, Any, Any]):
        self.steps = steps

    def __await__(self) -> Generator[Any, Any, Any]:
        return self.steps


def _steps(inner: Any, index: int, tracer: _Tracer) -> Generator[Any, Any, Any]:
    """Drive ``inner`` (an ``__await__`` iterator) as ``await`` would, telling the tracer
    before and after each step, so a step that never returns is blamed on its sample."""
    value: Any = None
    error: BaseException | None = None
    while True:
        tracer.enter(index)
        try:
            yielded = inner.send(value) if error is None else inner.throw(error)
        except StopIteration as stop:
            return stop.value
        finally:
            tracer.leave()
        error = None
        try:
            value = yield yielded
        except GeneratorExit:
            inner.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - cancellation and the like go to the reward
            value, error = None, exc


def _traced_task_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kwargs: Any) -> asyncio.Task:
    """Tasks a reward spawns while scoring a sample are traced as that sample's work."""
    index, tracer = _SAMPLE.get(), _TRACER.get()
    if index >= 0 and tracer is not None and inspect.iscoroutine(coro) and not _is_ours(coro):
        coro = _traced_child(coro, index, tracer)
    return asyncio.Task(coro, loop=loop, **kwargs)


def _is_ours(coro: Any) -> bool:
    return getattr(coro, "cr_code", None) in (_one.__code__, _traced_child.__code__)


async def _traced_child(coro: Any, index: int, tracer: _Tracer) -> Any:
    return await _Stepped(_steps(coro.__await__(), index, tracer))


def _running_loop() -> asyncio.AbstractEventLoop | None:
    return asyncio._get_running_loop()


def _forget_current_loop(loop: asyncio.AbstractEventLoop) -> None:
    """A reward that called ``asyncio.set_event_loop`` must not leave a loop for sync rewards."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            policy = asyncio.get_event_loop_policy()
            local = getattr(policy, "_local", None)
            if local is not None and getattr(local, "_loop", None) is not None:
                policy.set_event_loop(None)
        except Exception:  # noqa: BLE001 - a policy we do not know: leave it
            pass
