"""Loading plugin code that may kill its process, without letting it kill ours.

``except BaseException`` cannot catch a plugin that calls ``os._exit``, segfaults, or sleeps
forever at import. Three layers keep a command alive:

- **A trust store** (``plugins.json`` in the user cache dir, ``$XDG_CACHE_HOME/grpo-host``):
  each entry point with a fingerprint of its installed files (version, dist-info, entry
  module's mtime and size) and a verdict. An entry point never seen, or changed since, is
  first imported (and its hooks called) in a child process; only one that survived there is
  imported in ours. A known-good one is imported in process directly, so a normal start pays
  nothing extra.
- **Breadcrumbs** (``loading/<pid>.json``): written before each in-process import or hook
  call and removed when loading ends. A start that finds the breadcrumb of a dead process
  knows which plugin killed it, warns, and checks that plugin in a child before trusting it.
- **Quarantine**: a plugin that killed its child (exit status, signal) stays out of process
  and is checked again in a child at every start until it survives; one that overran the
  import budget stays out until its files change or ``grpo-host plugins --recheck``.

In process, an import or hook call over the budget is interrupted (SIGALRM, main thread
only), and a ``KeyboardInterrupt`` only propagates when it came from a real SIGINT.

Environment: ``GRPO_HOST_PLUGIN_TIMEOUT`` (seconds one plugin may take to import and
register, default 10). With no writable cache dir the store and breadcrumbs are off and
plugins are imported in process, as before.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_BUDGET = 10.0
SLOW_IMPORT_S = 1.0  # an import slower than this is named in a warning
STORE_FILE = "plugins.json"
STORE_LIMIT = 400  # entries kept; the oldest seen go first
CHILD_START_BUDGET = 60.0  # the child's own start (python + grpo_host), before any plugin


class PluginTimeout(BaseException):
    """Raised into a plugin's import or hook that ran past the budget (BaseException: a
    plugin's ``except Exception`` must not swallow it)."""


@dataclass
class Candidate:
    """One entry point to load: what the guard needs to fingerprint and probe it."""

    key: str  # distribution:entry-point@dist-info path
    label: str  # the distribution, for messages
    name: str
    value: str
    fingerprint: str


@dataclass
class Verdict:
    status: str  # safe | killed | timeout
    reason: str = ""
    seconds: float = 0.0


def budget_from(environ: Mapping[str, str]) -> float:
    raw = environ.get("GRPO_HOST_PLUGIN_TIMEOUT", "").strip()
    if not raw:
        return DEFAULT_BUDGET
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        print(
            f"warning: GRPO_HOST_PLUGIN_TIMEOUT={raw!r} is not a positive number of seconds; "
            f"using {DEFAULT_BUDGET:g}",
            file=sys.stderr,
        )
        return DEFAULT_BUDGET
    return value


def cache_dir(environ: Mapping[str, str]) -> Path | None:
    """``$XDG_CACHE_HOME/grpo-host`` (``~/.cache/grpo-host``), else a per-user folder in the
    temp dir (a read-only home, as in some containers); None when neither is writable."""
    base = environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    for path in (Path(base) / "grpo-host", Path(tempfile.gettempdir()) / f"grpo-host-{uid}"):
        try:
            (path / "loading").mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(path / "loading", os.W_OK):
            return path
    return None


def fingerprint(version: str, dist_path: str | None, module: str) -> str:
    """What changes when the plugin is reinstalled or its entry module edited; no import."""
    parts = [version]
    if dist_path:
        parts.append(_stat(Path(dist_path) / "METADATA") or _stat(Path(dist_path) / "PKG-INFO"))
    parts.append(_module_stat(module))
    return "|".join(parts)


def _stat(path: Path) -> str:
    try:
        st = path.stat()
    except OSError:
        return ""
    return f"{st.st_mtime_ns}:{st.st_size}"


def _module_stat(module: str) -> str:
    """The entry module's file, found without importing anything (``find_spec`` of a dotted
    name would import its parent package, which is plugin code)."""
    from importlib.util import find_spec

    top, *rest = module.split(".")
    try:
        spec = find_spec(top)
    except (ImportError, ValueError):
        return "missing"
    if spec is None:
        return "missing"
    if not rest:
        return _stat(Path(spec.origin)) if spec.origin else "namespace"
    for base in spec.submodule_search_locations or ():
        stem = Path(base, *rest)
        for path in (stem.with_suffix(".py"), stem / "__init__.py"):
            found = _stat(path)
            if found:
                return found
    return _stat(Path(spec.origin)) if spec.origin else "namespace"


# -- the trust store ------------------------------------------------------------------------
class TrustStore:
    def __init__(self, root: Path):
        self.path = root / STORE_FILE
        self.entries = self._read()
        self._changed: dict[str, dict[str, Any] | None] = {}

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, candidate: Candidate) -> dict[str, Any] | None:
        entry = self.entries.get(candidate.key)
        if isinstance(entry, dict) and entry.get("fingerprint") == candidate.fingerprint:
            return entry
        return None

    def put(self, candidate: Candidate, verdict: Verdict) -> None:
        entry = {
            "fingerprint": candidate.fingerprint,
            "status": verdict.status,
            "reason": verdict.reason,
            "seconds": round(verdict.seconds, 4),
            "checked": time.time(),
        }
        self.entries[candidate.key] = entry
        self._changed[candidate.key] = entry

    def save(self) -> None:
        """Merge this process's verdicts into the file as it is now (other processes write it
        too; a lost update costs one more check in a child, never a wrong verdict)."""
        if not self._changed:
            return
        current = self._read()
        current.update(self._changed)
        if len(current) > STORE_LIMIT:
            keep = sorted(
                current, key=lambda k: current[k].get("checked", 0) if isinstance(current[k], dict) else 0
            )
            current = {k: current[k] for k in keep[-STORE_LIMIT:]}
        try:
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".plugins-", suffix=".json")
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(current, out, indent=1, sort_keys=True)
            os.replace(tmp, self.path)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._changed.clear()


# -- breadcrumbs ---------------------------------------------------------------------------
def _process_start(pid: int) -> str:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            return f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


@dataclass
class DeadStart:
    pid: int
    key: str
    label: str
    phase: str
    started: float


class Breadcrumbs:
    # A record is rewritten in place (one pwrite, no open or truncate per plugin: opening
    # files is what costs on some file systems), padded with spaces, which JSON ignores.
    RECORD = 2048

    def __init__(self, root: Path):
        self.dir = root / "loading"
        self.path = self.dir / f"{os.getpid()}.json"
        self._me = _process_start(os.getpid())
        self._fd: int | None = None
        self._written = False

    def drop(self, candidate: Candidate, phase: str) -> None:
        record = json.dumps(
            {
                "pid": os.getpid(),
                "start": self._me,
                "key": candidate.key,
                "label": candidate.label,
                "phase": phase,
                "time": time.time(),
            }
        ).encode()
        try:
            if self._fd is None:
                self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            os.pwrite(self._fd, record.ljust(self.RECORD), 0)
            if len(record) > self.RECORD:
                os.ftruncate(self._fd, len(record))
            self._written = True
        except OSError:
            pass

    def clear(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
        if self._written:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self._written = False

    def dead(self) -> list[DeadStart]:
        """Breadcrumbs left by processes that died while loading a plugin (removed as read)."""
        found = []
        try:
            names = os.listdir(self.dir)
        except OSError:
            return []
        for name in names:
            try:
                pid = int(name.removesuffix(".json")) if name.endswith(".json") else -1
            except ValueError:
                continue
            if pid < 0 or (pid == os.getpid() and self._written):
                continue
            path = self.dir / name
            if pid != os.getpid() and _alive(pid):
                info = self._load(path)
                if info is None or not info.get("start") or info["start"] == _process_start(pid):
                    continue  # that process is loading its plugins right now
            found += self._read_dead(path)  # dead, or its pid reused by another process
        return found

    @staticmethod
    def _load(path: Path) -> dict[str, Any] | None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def _read_dead(self, path: Path) -> list[DeadStart]:
        info = self._load(path)
        with contextlib.suppress(OSError):
            path.unlink()
        if info is None or not isinstance(info.get("key"), str):
            return []
        return [
            DeadStart(
                int(info.get("pid", 0)),
                info["key"],
                str(info.get("label", "?")),
                str(info.get("phase", "import")),
                float(info.get("time", 0)),
            )
        ]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# -- in-process guard ----------------------------------------------------------------------
class InProcessGuard:
    """Around one plugin's import or hook calls: the breadcrumb, the budget, real Ctrl-C."""

    def __init__(self, crumbs: Breadcrumbs | None, budget: float):
        self.crumbs = crumbs
        self.budget = budget
        self.user_interrupted = False

    @contextlib.contextmanager
    def around(self, candidate: Candidate | None, phase: str) -> Iterator[None]:
        if self.crumbs is not None and candidate is not None:
            self.crumbs.drop(candidate, phase)
        main = threading.current_thread() is threading.main_thread()
        old_alarm = old_int = None
        use_alarm = main and hasattr(signal, "setitimer") and signal.getitimer(signal.ITIMER_REAL)[0] == 0
        if main:
            old_int = signal.getsignal(signal.SIGINT)

            def on_sigint(signum: int, frame: Any) -> None:
                self.user_interrupted = True
                raise KeyboardInterrupt

            with contextlib.suppress(ValueError, TypeError):
                signal.signal(signal.SIGINT, on_sigint)
        if use_alarm:

            def on_alarm(signum: int, frame: Any) -> None:
                raise PluginTimeout(f"took over {self.budget:g} s and was stopped")

            old_alarm = signal.signal(signal.SIGALRM, on_alarm)
            signal.setitimer(signal.ITIMER_REAL, self.budget)
        try:
            yield
        finally:
            if use_alarm:
                signal.setitimer(signal.ITIMER_REAL, 0)
                signal.signal(signal.SIGALRM, old_alarm)
            if main and old_int is not None:
                with contextlib.suppress(ValueError, TypeError):
                    signal.signal(signal.SIGINT, old_int)


# -- the child probe -----------------------------------------------------------------------
_CHILD = """
import json, os, sys
job = json.loads(sys.stdin.read())
sys.path[:] = job["path"]
from grpo_host.plugins.manager import child_main
child_main(job)
"""


def probe_in_child(candidates: Sequence[Candidate], budget: float) -> dict[str, Verdict]:
    """Import and register each candidate in a child process, one after another; a candidate
    that kills the child or overruns ``budget`` gets that verdict and a new child goes on with
    the rest. Every candidate gets a verdict ("safe" also when the child could not start)."""
    verdicts: dict[str, Verdict] = {}
    todo = list(candidates)
    while todo:
        done = _one_child(todo, budget, verdicts)
        todo = todo[done:]
    return verdicts


def _one_child(todo: list[Candidate], budget: float, verdicts: dict[str, Verdict]) -> int:
    """Run one child over ``todo``; returns how many candidates got a verdict."""
    import subprocess

    read_fd, write_fd = os.pipe()
    job = {
        "path": sys.path,
        "fd": write_fd,
        "items": [{"label": c.label, "name": c.name, "value": c.value} for c in todo],
    }
    with tempfile.TemporaryFile() as err:
        try:
            proc = subprocess.Popen(
                [sys.executable, "-c", _CHILD],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=err,
                pass_fds=(write_fd,),
                start_new_session=True,
                env={**os.environ, "PYTHONFAULTHANDLER": "1"},
            )
        except OSError as exc:
            os.close(read_fd)
            os.close(write_fd)
            for c in todo:
                verdicts[c.key] = Verdict("safe", f"not checked in a child ({exc})")
            return len(todo)
        os.close(write_fd)
        assert proc.stdin is not None  # stdin=PIPE
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
        except OSError:
            pass
        current, phase, timed_out = _follow_child(proc, read_fd, todo, budget, verdicts)
        return _blame(todo, verdicts, current, phase, timed_out, proc.returncode, err, budget)


def _follow_child(proc: Any, read_fd: int, todo: list[Candidate], budget: float,
                  verdicts: dict[str, Verdict]) -> tuple[int, str, bool]:
    """Read the child's progress lines until it ends or overruns the budget of the plugin it is
    on (then it is killed); ``(the plugin it was on, its phase, whether it timed out)``."""
    import selectors

    current, phase, started, buffer = -1, "start", time.monotonic(), b""
    selector = selectors.DefaultSelector()
    selector.register(read_fd, selectors.EVENT_READ)
    timed_out = False
    try:
        while True:
            limit = CHILD_START_BUDGET if current < 0 else budget
            left = started + limit - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            if not selector.select(timeout=left):
                continue
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                words = line.decode().split()
                if words[:1] == ["begin"]:
                    if int(words[1]) != current:
                        current, started = int(words[1]), time.monotonic()
                    phase = words[2]
                elif words[:1] == ["end"]:
                    verdicts[todo[int(words[1])].key] = Verdict("safe", "", float(words[2]))
    finally:
        selector.close()
        os.close(read_fd)
        if timed_out or proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return current, phase, timed_out


def _blame(todo: list[Candidate], verdicts: dict[str, Verdict], current: int, phase: str, timed_out: bool,
           code: int, err: Any, budget: float) -> int:
    """The verdict of the plugin the child died on (or overran with); how many have one now."""
    done = sum(1 for c in todo if c.key in verdicts)
    if done == len(todo):
        return done
    culprit = todo[done]
    if current != done:  # the child died before it began a plugin: nothing to blame
        tail = _tail(err).strip().splitlines()[-1:]
        for c in todo[done:]:
            verdicts[c.key] = Verdict(
                "safe", f"not checked in a child (it exited {code}: {' '.join(tail)})"
            )
        return len(todo)
    where = "at import" if phase == "import" else "in its hooks"
    if timed_out:
        verdicts[culprit.key] = Verdict(
            "timeout",
            f"took over {budget:g} s {where} and was stopped (GRPO_HOST_PLUGIN_TIMEOUT={budget:g})",
            budget,
        )
    else:
        verdicts[culprit.key] = Verdict(
            "killed",
            f"killed its process {where}: {_death(code)}"
            + _crash_site(_tail(err)),
        )
    return done + 1


def _tail(stream: Any, limit: int = 65536) -> str:
    """The end of the child's stderr (a plugin may write any amount there)."""
    stream.seek(0, os.SEEK_END)
    stream.seek(max(0, stream.tell() - limit))
    return stream.read().decode(errors="replace")


def _death(code: int) -> str:
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = (
            " (a crash in native code)"
            if name in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE", "SIGABRT")
            else ""
        )
        return f"{name}{hint}"
    return f"exit status {code} (os._exit or a C exit, which no except clause catches)"


def _crash_site(stderr: str) -> str:
    """Where faulthandler says the crash happened: the innermost frame and, when that is in the
    standard library (ctypes, ...), the innermost frame of the plugin's own code."""
    import sysconfig

    stdlib = tuple({sysconfig.get_paths()["stdlib"], sysconfig.get_paths()["platstdlib"]})
    frames = []
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith('File "') and "<frozen" not in line:
            path = line[6:].split('"', 1)[0]
            frames.append((line[5:], path.startswith(stdlib) or f"{os.sep}grpo_host{os.sep}" in path))
    if not frames:
        return ""
    site = f"; at {frames[0][0]}"
    own = next((text for text, ours in frames if not ours), None)
    if own is not None and own != frames[0][0]:
        site += f", called from {own}"
    return site
