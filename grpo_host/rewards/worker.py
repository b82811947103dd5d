"""A reward worker process: imports rewards once, then scores chunks of samples on request.

Started by the pool as ``python -m grpo_host.rewards.worker`` in its own session and process
group (a fresh interpreter, so the caller's ``__main__`` is never re-run and no torch state is
inherited). Messages travel as pickles over the process's stdin and a private duplicate of its
stdout, each reply tagged with the task id of the chunk it answers; the reward's own prints go
to stderr so they cannot corrupt the stream. Before each sample the worker publishes the
task id, the sample's index and its start time in a small shared-memory record (two slots and a
sequence word, so a reader never sees a half-written record; no system call); that is how the
host times each sample and knows which one hung when it has to kill the worker.

Every sample starts from the same worker state: a change of working directory or environment
is undone after the sample, a process the sample forked is killed after it (the worker is a
child subreaper, so even daemonized grandchildren come back to it), a forked child never
speaks on the protocol stream, and every failure of a sample, including converting what the
reward returned, is that sample's ``error``.

An async reward's chunk is awaited on the worker's one event loop (``async_runner``, made on
the first async chunk), up to ``concurrency`` samples at once: the record then names the
sample whose step is running, or between steps the oldest one in flight, and results stream
back in order as the front of the chunk finishes. Its samples share the worker's state while
the chunk runs; cwd, environment and child processes are put back after the chunk.
"""

from __future__ import annotations

import mmap
import os
import signal
import struct
import sys
import time
from importlib import import_module
from multiprocessing.connection import Connection
from pickle import loads
from typing import Any

from grpo_host.rewards.item import memory_error_text

# The progress record. Word 0 is a sequence number; slot (seq & 1) holds the record it
# published: (task id, index of the sample in hand, its start on CLOCK_MONOTONIC). The writer
# fills the slot the readers are not looking at, then bumps the sequence in one aligned 8-byte
# store; a reader that sees the same sequence before and after reading the slot read a whole
# record. Index -1: the reward is being imported and built; DONE: the chunk is finished.
SEQ = struct.Struct("Q")
SLOT = struct.Struct("qqd")
SLOT_OFFSETS = (SEQ.size, SEQ.size + SLOT.size)
PROGRESS_SIZE = SEQ.size + 2 * SLOT.size
BUILDING = -1
DONE = -3
FLUSH_EVERY_S = 1.0

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36


def open_progress(path: str) -> mmap.mmap:
    with open(path, "r+b") as f:
        return mmap.mmap(f.fileno(), PROGRESS_SIZE)


class ProgressWriter:
    """The worker's side of the progress record (the only writer)."""

    def __init__(self, buffer: mmap.mmap):
        self.buffer = buffer
        self.seq = SEQ.unpack_from(buffer, 0)[0]

    def publish(self, task: int, index: int, started: float) -> None:
        seq = self.seq + 1
        SLOT.pack_into(self.buffer, SLOT_OFFSETS[seq & 1], task, index, started)
        SEQ.pack_into(self.buffer, 0, seq)
        self.seq = seq


def read_progress(buffer: mmap.mmap, tries: int = 1000) -> tuple[int, int, float] | None:
    """The last whole record: ``(task, index, started)``, or None when none could be read.

    A record read while the writer published another is read again; after ``tries`` such
    reads (a writer stopped mid-publish cannot cause that: the previous slot stays whole) the
    caller treats the record as unknown rather than trusting a torn one.
    """
    for _ in range(tries):
        seq = SEQ.unpack_from(buffer, 0)[0]
        record = SLOT.unpack_from(buffer, SLOT_OFFSETS[seq & 1])
        if SEQ.unpack_from(buffer, 0)[0] == seq:
            return record if seq else None
    return None


# -- the sample's world ----------------------------------------------------------------------
class _State:
    """What a sample may change and the worker puts back: cwd, environment, child processes."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.home = os.getcwd()
        self.environ = dict(os.environ)
        # The raw (bytes) view as well: comparing it is one C-level dict compare, where the str
        # view decodes every key and value (~35 µs a chunk, as much as scoring a sample).
        self.raw_environ = dict(getattr(os.environ, "_data", {}))
        self.dirty = False  # set by the watchers below; checked after every sample
        self.forked = False
        self.keep: set[int] = set()  # children a reward started while being built: its helpers
        self.libc: Any = None

    def restore(self) -> None:
        self.dirty = False
        if _REAL_GETCWD() != self.home:
            _REAL_CHDIR(self.home)
        if os.environ != self.environ:  # compares the str view, as rewards see it
            for key in [k for k in os.environ if k not in self.environ]:
                _REAL_ENV_DEL(os.environ, key)
            for key, value in self.environ.items():
                if os.environ.get(key) != value:
                    _REAL_ENV_SET(os.environ, key, value)

    def drifted(self) -> bool:
        """A change the watchers cannot see (C code calling chdir or setenv): checked per chunk."""
        raw = getattr(os.environ, "_data", None)
        if raw is None or not self.raw_environ:
            return _REAL_GETCWD() != self.home or os.environ != self.environ
        return _REAL_GETCWD() != self.home or raw != self.raw_environ

    def end_sample_processes(self) -> None:
        """Kill the processes a sample started (and what they started); reap them."""
        self.forked = False
        for _ in range(8):  # killed children's own children come back to us: a few rounds
            strays = [pid for pid in _children() if pid not in self.keep]
            if not strays:
                break
            for pid in strays:
                for kill in (os.killpg, os.kill):  # its own group first, when it made one
                    try:
                        kill(pid, signal.SIGKILL)
                    except (OSError, ProcessLookupError):
                        pass
            for pid in strays:
                try:
                    os.waitpid(pid, 0)
                except ChildProcessError:
                    pass
        _reap()


_STATE: _State | None = None
_REAL_CHDIR = os.chdir
_REAL_GETCWD = os.getcwd
_REAL_ENV_SET = type(os.environ).__setitem__
_REAL_ENV_DEL = type(os.environ).__delitem__


def _children() -> list[int]:
    pids: list[int] = []
    try:
        for tid in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{tid}/children", encoding="ascii") as f:
                pids.extend(int(p) for p in f.read().split())
    except OSError:  # no /proc (not Linux): the pool still kills the whole group with the worker
        pass
    return pids


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _watch_state(state: _State) -> None:
    """Flag the calls that change what the next sample would see, so restoring costs nothing
    when nothing changed (checking cwd and environ after every sample would cost more than the
    rest of the per-sample work)."""

    def chdir(path: Any) -> None:
        state.dirty = True
        _REAL_CHDIR(path)

    def fchdir(fd: Any) -> None:
        state.dirty = True
        _REAL_FCHDIR(fd)

    class WatchedEnviron(type(os.environ)):  # type: ignore[misc]
        def __setitem__(self, key: str, value: str) -> None:
            state.dirty = True
            _REAL_ENV_SET(self, key, value)

        def __delitem__(self, key: str) -> None:
            state.dirty = True
            _REAL_ENV_DEL(self, key)

    def putenv(key: Any, value: Any) -> None:
        state.dirty = True
        _REAL_PUTENV(key, value)

    def unsetenv(key: Any) -> None:
        state.dirty = True
        _REAL_UNSETENV(key)

    _REAL_FCHDIR, _REAL_PUTENV, _REAL_UNSETENV = os.fchdir, os.putenv, os.unsetenv
    os.chdir, os.fchdir, os.putenv, os.unsetenv = chdir, fchdir, putenv, unsetenv
    os.environ.__class__ = WatchedEnviron


def _in_forked_child(protocol_fds: tuple[int, ...], libc: Any, worker_pid: int) -> None:
    """A reward forked: the child must never answer the host (its parent does) nor hold the
    protocol pipe open after the worker dies, and it dies with the worker."""
    global _STATE
    if _STATE is None:  # a grandchild: its parent already did all this
        return
    _STATE = None  # the loop below checks this and exits if the child ever comes back to it
    null = os.open(os.devnull, os.O_RDWR)
    for fd in protocol_fds:
        try:
            os.dup2(null, fd)  # not close: a later open in the child must not reuse the number
        except OSError:
            pass
    os.close(null)
    if libc is not None and os.getppid() == worker_pid:  # not a grandchild: a daemon's parent exits
        try:
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except Exception:  # noqa: BLE001 - best effort
            pass


def _mark_forked() -> None:
    if _STATE is not None:
        _STATE.forked = True


def _setup_process() -> Any:
    """Die with the host, even if a reward is stuck in C; adopt orphaned descendants."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1)
        return libc
    except Exception:  # noqa: BLE001 - not Linux: the EOF on stdin still ends idle workers
        return None


class _MemoryCap:
    """The worker's data-segment limit (``RLIMIT_DATA``: heap and private mappings, not the
    address space that shared libraries and thread reservations take). Set as a soft limit per
    chunk, so each reward can have its own."""

    def __init__(self) -> None:
        try:
            import resource

            self.resource: Any = resource
        except ImportError:  # not POSIX
            self.resource = None
        self.megabytes: int | None = None

    def set(self, megabytes: int | None) -> None:
        if megabytes == self.megabytes or self.resource is None:
            return
        res = self.resource
        _, hard = res.getrlimit(res.RLIMIT_DATA)
        soft = res.RLIM_INFINITY if not megabytes else int(megabytes) * 1024 * 1024
        if hard != res.RLIM_INFINITY and (soft == res.RLIM_INFINITY or soft > hard):
            soft = hard
        res.setrlimit(res.RLIMIT_DATA, (soft, hard))
        self.megabytes = megabytes


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


def main() -> None:
    """Serve chunks until the host says stop or its pipe closes."""
    libc = _setup_process()
    inbox, outbox, protocol_fds = _private_streams()
    _Session(libc, inbox, outbox, protocol_fds).serve()


def _private_streams() -> tuple[Connection, Connection, tuple[int, int]]:
    """Keep the protocol stream private: rewards that print write to stderr instead, and a
    program a reward runs reads /dev/null, not the host's messages (the duplicates are
    close-on-exec; a Python fork is handled by _in_forked_child)."""
    in_fd, out_fd = os.dup(0), os.dup(1)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return Connection(in_fd, writable=False), Connection(out_fd, readable=False), (in_fd, out_fd)


class _Session:
    """One worker's life: the host's init message, then one chunk per ``score`` message, each
    scored by a built reward (built once per reward and params)."""

    def __init__(self, libc: Any, inbox: Connection, outbox: Connection, protocol_fds: tuple[int, int]):
        global _STATE
        init = inbox.recv()
        sys.path[:] = [p for p in init.get("sys_path", []) if p] or sys.path
        self.inbox, self.outbox = inbox, outbox
        self.progress = ProgressWriter(open_progress(init["progress"]))
        self.cap = _MemoryCap()
        state = self.state = _STATE = _State()
        state.libc = libc
        _watch_state(state)
        os.register_at_fork(
            after_in_child=lambda: _in_forked_child(protocol_fds, libc, state.pid),
            after_in_parent=_mark_forked,
        )
        self.built: dict[str, Any] = {}
        self.runner: Any = None  # the event loop of async rewards, made on the first async chunk

    def send(self, message: tuple) -> None:
        if _STATE is None or os.getpid() != self.state.pid:  # a forked child that came back here
            os._exit(0)
        self.outbox.send(message)

    def serve(self) -> None:
        state = self.state
        while True:
            try:
                message = self.inbox.recv()
            except (EOFError, OSError):
                break
            if _STATE is None or os.getpid() != state.pid:
                os._exit(0)
            if message[0] == "stop":
                break
            self.score_chunk(*message[1:])
        state.keep = set()
        state.end_sample_processes()

    def score_chunk(self, task: int, key: str, import_path: str, params: dict, batched: bool,
                    memory_mb: int | None, name: str, samples: list[Any], timeout: float,
                    concurrency: int) -> None:
        """Score one chunk and send its results (the per-sample kind in parts, as it goes)."""
        self.cap.set(memory_mb)
        if key not in self.built and not self.build(task, key, import_path, params, memory_mb, name, len(samples)):
            return
        score = self.built[key]
        if concurrency:  # an async reward
            self.score_async(task, score, samples, batched, timeout, concurrency, memory_mb, name)
            return
        if batched:
            first, rows = 0, self.score_batch(task, score, samples, memory_mb, name)
        else:
            first, rows = self.score_each(task, score, samples, memory_mb, name)
            if not rows and first:  # the last flush already carried the last result
                self.end_chunk(task)
                return
        self.end_chunk(task)
        self.send(("results", task, first, rows))

    def build(self, task: int, key: str, import_path: str, params: dict, memory_mb: int | None,
              name: str, count: int) -> bool:
        """Import and build the reward; on failure every sample of the chunk gets the error."""
        from grpo_host.rewards.spec import conversion_error

        state = self.state
        self.progress.publish(task, BUILDING, time.monotonic())
        try:
            self.built[key] = _load(import_path).build_scorer(params)
        except BaseException as exc:  # noqa: BLE001 - every sample of the chunk reports the failure
            text = conversion_error(exc)
            if isinstance(exc, MemoryError) and memory_mb:
                text = f"MemoryError: {memory_error_text(memory_mb, name)}"
            error = ("error", None, {"error": f"could not build reward: {text}"}, 0.0)
            self.progress.publish(task, DONE, time.monotonic())
            self.send(("results", task, 0, [error] * count))
            return False
        finally:
            if state.dirty or state.drifted():
                state.restore()
        state.keep = set(_children())
        return True

    def score_async(self, task: int, score: Any, samples: list[Any], batched: bool, timeout: float,
                    concurrency: int, memory_mb: int | None, name: str) -> None:
        if self.runner is None:
            from grpo_host.rewards.async_runner import AsyncRunner

            self.runner = AsyncRunner()
        samples = [loads(s) if s.__class__ is bytes else s for s in samples]
        first, rows = _score_async(
            self.runner, score, samples, task, batched, timeout, concurrency, memory_mb, name,
            self.progress, self.send,
        )
        if self.state.dirty:
            self.state.restore()
        self.end_chunk(task)
        if rows or not first:
            self.send(("results", task, first, rows))

    def score_batch(self, task: int, score: Any, samples: list[Any], memory_mb: int | None,
                    name: str) -> list[tuple]:
        start = time.monotonic()
        self.progress.publish(task, 0, start)
        samples = [loads(s) if s.__class__ is bytes else s for s in samples]
        try:
            raws = list(score(samples))
        except BaseException as exc:  # noqa: BLE001
            raws = [exc] * len(samples)
        return _batch_rows(raws, len(samples), time.monotonic() - start, memory_mb, name)

    def score_each(self, task: int, score: Any, samples: list[Any], memory_mb: int | None,
                   name: str) -> tuple[int, list[tuple]]:
        """Sample by sample, each from the same worker state; results flushed every second.
        Returns the index of the first row not sent yet, and those rows."""
        from grpo_host.rewards.spec import sample_outcome

        state, publish, send, monotonic = self.state, self.progress.publish, self.send, time.monotonic
        rows: list[tuple] = []
        first, last_flush = 0, monotonic()
        for index, sample in enumerate(samples):
            if sample.__class__ is bytes:  # a sample with lists or dicts: a fresh copy
                sample = loads(sample)
            start = monotonic()
            publish(task, index, start)
            try:
                raw = score(sample)
            except BaseException as exc:  # noqa: BLE001 - SystemExit in a reward is its error
                raw = exc
            if _STATE is None:  # the reward forked and this is the child, returning
                os._exit(0)
            if state.dirty:
                state.restore()
            if state.forked:
                state.end_sample_processes()
            end = monotonic()
            rows.append((*sample_outcome(raw, memory_mb, name), end - start))
            if end - last_flush > FLUSH_EVERY_S:
                send(("results", task, first, rows))
                first, rows, last_flush = index + 1, [], end
        return first, rows

    def end_chunk(self, task: int) -> None:
        self.progress.publish(task, DONE, time.monotonic())
        _end_chunk(self.state)


def _batch_rows(raws: list[Any], n: int, seconds: float, memory_mb: int | None, name: str) -> list[tuple]:
    from grpo_host.rewards.spec import sample_outcome

    if len(raws) != n:
        raws = [ValueError(f"score_batch returned {len(raws)} scores for {n} samples")] * n
    per = seconds / max(n, 1)
    return [(*sample_outcome(r, memory_mb, name), per) for r in raws]


def _score_async(
    runner: Any,
    score: Any,
    samples: list[Any],
    task: int,
    batched: bool,
    timeout: float,
    concurrency: int,
    memory_mb: int | None,
    name: str,
    progress: ProgressWriter,
    send: Any,
) -> tuple[int, list[tuple]]:
    """An async reward's chunk: ``(index of the first row not sent yet, those rows)``."""
    from grpo_host.rewards.async_runner import TimedOut
    from grpo_host.rewards.spec import sample_outcome

    worker_pid = os.getpid()

    def publish(index: int, started: float) -> None:
        if _STATE is None or os.getpid() != worker_pid:  # a forked child stepping the loop
            os._exit(0)
        progress.publish(task, index, started)

    def row(raw: Any, seconds: float) -> tuple:
        if isinstance(raw, TimedOut):
            return ("timeout", None, {"error": raw.describe()}, seconds)
        return (*sample_outcome(raw, memory_mb, name), seconds)

    n = len(samples)
    start = time.monotonic()
    publish(0, start)
    if batched:
        try:
            raw = runner.score_batch(score, samples, timeout * n, publish)
            raw = raw if isinstance(raw, (TimedOut, BaseException)) else list(raw)
        except BaseException as exc:  # noqa: BLE001 - the chunk's error, not the worker's end
            raw = exc
        seconds = time.monotonic() - start
        if isinstance(raw, TimedOut):
            return 0, [("timeout", None, {"error": raw.describe()}, seconds / max(n, 1))] * n
        if isinstance(raw, BaseException):
            return 0, _batch_rows([raw] * n, n, seconds, memory_mb, name)
        return 0, _batch_rows(raw, n, seconds, memory_mb, name)
    rows: list[tuple | None] = [None] * n
    sent: dict[str, Any] = {"first": 0, "at": start}

    def finished(index: int, raw: Any, seconds: float) -> None:
        rows[index] = row(raw, seconds)
        now = time.monotonic()
        if now - sent["at"] > FLUSH_EVERY_S:  # the finished front of the chunk, in order
            first = end = sent["first"]
            while end < n and rows[end] is not None:
                end += 1
            if end > first:
                send(("results", task, first, rows[first:end]))
                sent["first"], sent["at"] = end, now

    lost = "lost result"
    try:
        runner.score_samples(
            score, samples, timeout=timeout, concurrency=concurrency, finished=finished, progress=publish
        )
    except BaseException as exc:  # noqa: BLE001 - a failure of the loop itself: the unfinished samples'
        from grpo_host.rewards.spec import conversion_error

        lost = f"the async reward's event loop failed: {conversion_error(exc)}"
    first = sent["first"]
    return first, [r if r is not None else ("error", None, {"error": lost}, 0.0) for r in rows[first:]]


def _end_chunk(state: _State) -> None:
    if state.drifted():
        state.restore()
    state.end_sample_processes()


if __name__ == "__main__":
    main()
