"""A reward worker process: imports rewards once, then scores chunks of samples on request.

Started by the pool as ``python -m grpo_host.rewards.worker`` (a fresh interpreter, so the
caller's ``__main__`` is never re-run and no torch state is inherited). Messages travel as
pickles over the process's stdin and a private duplicate of its stdout; the reward's own
prints go to stderr so they cannot corrupt the stream. Before each sample the worker writes
the sample's index and start time into a small shared-memory slot (a few hundred
nanoseconds, no system call); that is how the host times each sample and knows which one hung
when it has to kill the worker. Results travel in one message per chunk, or per second of work.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
import time
from importlib import import_module
from multiprocessing.connection import Connection
from typing import Any


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the host dies, even if a reward is stuck in C."""
    try:
        import ctypes
        import signal

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - not Linux: the EOF on stdin still ends idle workers
        pass


def _limit_memory(megabytes: int | None) -> None:
    if not megabytes:
        return
    import resource

    limit = int(megabytes) * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _load(import_path: str) -> Any:
    from grpo_host.rewards.spec import spec_of

    module_name, _, attr = import_path.partition(":")
    obj: Any = import_module(module_name)
    for part in attr.split("."):
        obj = getattr(obj, part)
    spec = spec_of(obj)
    if spec is None:
        raise TypeError(f"{import_path} is not a grpo-host reward")
    return spec


# The progress slot: (index of the sample being scored, its start on CLOCK_MONOTONIC).
# -2: the chunk is not picked up yet; -1: the reward is being imported and built.
PROGRESS = struct.Struct("qd")
FLUSH_EVERY_S = 1.0


def open_progress(path: str) -> mmap.mmap:
    with open(path, "r+b") as f:
        return mmap.mmap(f.fileno(), PROGRESS.size)


def main() -> None:
    _die_with_parent()
    # Keep the protocol stream private: rewards that print write to stderr instead.
    out_fd = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    inbox, outbox = Connection(0, writable=False), Connection(out_fd, readable=False)

    from grpo_host.rewards.spec import to_outcome

    init = inbox.recv()
    sys.path[:] = [p for p in init.get("sys_path", []) if p] or sys.path
    _limit_memory(init.get("memory_mb"))
    progress = open_progress(init["progress"])
    built: dict[str, Any] = {}
    while True:
        try:
            message = inbox.recv()
        except EOFError:
            return
        if message[0] == "stop":
            return
        _, task, key, import_path, params, batched, samples = message
        PROGRESS.pack_into(progress, 0, -1, time.monotonic())
        try:
            if key not in built:
                built[key] = _load(import_path).build(params)
        except Exception as exc:  # noqa: BLE001 - every sample of the chunk reports the failure
            error = ("error", None, {"error": f"could not build reward: {type(exc).__name__}: {exc}"}, 0.0)
            outbox.send(("results", task, 0, [error] * len(samples)))
            continue
        score = built[key]
        if batched:
            PROGRESS.pack_into(progress, 0, 0, time.monotonic())
            start = time.perf_counter()
            try:
                raws = score(samples)
            except Exception as exc:  # noqa: BLE001
                raws = [exc] * len(samples)
            seconds = (time.perf_counter() - start) / max(len(samples), 1)
            if len(raws) != len(samples):
                bad = ValueError(f"score_batch returned {len(raws)} scores for {len(samples)} samples")
                raws = [bad] * len(samples)
            outbox.send(("results", task, 0, [(*_safe(to_outcome(r)), seconds) for r in raws]))
            continue
        pending: list[tuple] = []
        first, last_flush = 0, time.monotonic()
        for index, sample in enumerate(samples):
            start = time.monotonic()
            PROGRESS.pack_into(progress, 0, index, start)
            try:
                raw = score([sample])[0]
            except BaseException as exc:  # noqa: BLE001 - SystemExit in a reward is its error
                raw = exc if isinstance(exc, Exception) else RuntimeError(f"{type(exc).__name__}: {exc}")
            pending.append((*_safe(to_outcome(raw)), time.monotonic() - start))
            if time.monotonic() - last_flush > FLUSH_EVERY_S:
                outbox.send(("results", task, first, pending))
                first, pending, last_flush = index + 1, [], time.monotonic()
        outbox.send(("results", task, first, pending))


def _safe(outcome: tuple[str, float | None, dict]) -> tuple[str, float | None, dict]:
    """Details must survive pickling back to the host; anything odd becomes its repr."""
    name, score, details = outcome
    from grpo_host.rewards.spec import _jsonable

    return name, score, _jsonable(details)


if __name__ == "__main__":
    main()
