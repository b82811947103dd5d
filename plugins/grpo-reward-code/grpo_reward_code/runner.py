"""The program that runs inside the sandbox: one per sample, running each of its test cases.

It is started as ``python3 -I -S runner.py`` (its source passed with ``-c``), reads one JSON job
from stdin (the program, how to call it, the cases' inputs and the limits), and writes one
JSON list of per-case results to stdout. Expected outputs never enter the sandbox: the host
compares. Each case runs in a fresh process forked from this one before anything of the job
but the inputs is in memory, so no interpreter start is paid per case; the child resets its
streams, closes every descriptor but its own pipes and sets its rlimits before it runs the
program. Inside bubblewrap this process is PID 1 of the sandbox's PID namespace: signals from
the program cannot kill it, orphans are reparented to it, and after each case it kills every
other process in the namespace (``kill(-1)``) and reaps them, so no daemon outlives its case.

Standard library only, and nothing newer than Python 3.9 (``os.pidfd_open``): it runs under the
system's interpreter, not the trainer's.
"""

import json
import os
import resource
import select
import signal
import sys
import time

RESULT_FD = 3  # the child's channel for call results and the assert harness's pass marker
TOKEN_FD = 4  # where the assert harness reads its pass token, after the asserts
STDERR_KEEP = 2000  # characters of a case's stderr kept for details


PR_SET_DUMPABLE = 4


def set_dumpable(flag):
    """Non-dumpable, this process's /proc entries (its pipe to the host, its memory) are closed to
    the program, which runs as the same uid; a case's child turns it back on for itself."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, flag, 0, 0, 0)
    except Exception:  # noqa: BLE001 - seccomp and the namespaces still hold
        pass


def main():
    set_dumpable(0)
    job = json.loads(sys.stdin.buffer.read().decode("utf-8"))
    limits = job["limits"]
    pid1 = os.getpid() == 1
    out = os.dup(1)
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1):
        os.dup2(devnull, fd)
    os.close(devnull)
    nproc = int(limits["nproc"])
    set_limit(resource.RLIMIT_NPROC, nproc, nproc)
    results = []
    with open("solution.py", "w", encoding="utf-8") as f:
        f.write(job["program"])
    sample_deadline = time.monotonic() + float(limits["total_s"])
    for index, case in enumerate(job["cases"]):
        if time.monotonic() >= sample_deadline:
            break  # the sample's budget is spent: the cases left are not run
        result = run_case(job, case, index, limits, pid1, out, sample_deadline)
        results.append(result)
        if job.get("stop_on_fail") and result.get("status") != "exited":
            break
    data = json.dumps(results).encode("utf-8")
    view = memoryview(data)
    while view:
        view = view[os.write(out, view) :]


def run_case(job, case, index, limits, pid1, out, sample_deadline):
    stdin_data = (case.get("stdin") or "").encode("utf-8")
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    res_r, res_w = os.pipe()
    tok_r, tok_w = os.pipe()
    started = time.monotonic()
    pid = os.fork()
    if pid == 0:
        code = 127
        try:
            os.close(out)
            for fd in (in_w, out_r, err_r, res_r, tok_w):
                os.close(fd)
            code = child(job, case, limits, pid1, (in_r, out_w, err_w, res_w, tok_r))
        except BaseException:  # noqa: BLE001 - the child must never return into the runner
            pass
        os._exit(code)
    for fd in (in_r, out_w, err_w, res_w, tok_r):
        os.close(fd)
    # The assert harness proves it got past the asserts by echoing a token it can read only
    # then: a program that exits early with status 0 (a known hack) wrote no token.
    token = os.urandom(16).hex()
    try:
        os.write(tok_w, token.encode())
    except OSError:
        pass
    os.close(tok_w)
    pidfd = os.pidfd_open(pid)
    os.set_blocking(in_w, False)
    chunks = {out_r: [], err_r: [], res_r: []}
    sizes = {out_r: 0, err_r: 0, res_r: 0}
    cap = int(limits["output_bytes"])
    deadline = min(started + float(limits["time_s"]), sample_deadline)
    status, code, sig = None, None, None
    poller = select.poll()
    for fd in chunks:
        poller.register(fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    pending = memoryview(stdin_data)
    if pending:
        poller.register(in_w, select.POLLOUT)
    else:
        os.close(in_w)
        in_w = -1
    open_fds = set(chunks)
    exited = False
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            status = "timeout"
            break
        for fd, _event in poller.poll(remaining * 1000):
            if fd == pidfd:
                exited = True
            elif fd == in_w:
                try:
                    pending = pending[os.write(in_w, pending[:65536]) :]
                except BlockingIOError:
                    continue
                except OSError:  # the program closed its stdin: the rest is not read
                    pending = pending[:0]
                if not pending:
                    poller.unregister(in_w)
                    os.close(in_w)
                    in_w = -1
            else:
                data = os.read(fd, 65536)
                if not data:
                    poller.unregister(fd)
                    open_fds.discard(fd)
                    continue
                chunks[fd].append(data)
                sizes[fd] += len(data)
                if sizes[fd] > cap:
                    status = "output_limit"
        if status or exited:
            break
    if exited:
        _, wstatus = os.waitpid(pid, 0)
        if os.WIFSIGNALED(wstatus):
            status, sig = "signaled", os.WTERMSIG(wstatus)
        else:
            status, code = "exited", os.WEXITSTATUS(wstatus)
    seconds = time.monotonic() - started
    kill_all(pid1, pid)
    # Every writer is dead now: what is left in the pipes is all there is.
    for fd in list(open_fds):
        while sizes[fd] <= cap:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks[fd].append(data)
            sizes[fd] += len(data)
    if sizes[out_r] > cap or sizes[err_r] > cap * 4:
        status = "output_limit"
    for fd in (*chunks, pidfd):
        os.close(fd)
    if in_w >= 0:
        os.close(in_w)
    stdout = b"".join(chunks[out_r])[:cap].decode("utf-8", "replace")
    stderr = b"".join(chunks[err_r]).decode("utf-8", "replace")[-STDERR_KEEP:]
    result_text = b"".join(chunks[res_r])[:cap].decode("utf-8", "replace")
    result = {
        "status": status,
        "code": code,
        "signal": sig,
        "stdout": stdout,
        "stderr": stderr,
        "seconds": round(seconds, 4),
    }
    if job["kind"] == "call":
        result["result"] = result_text
    elif job["kind"] == "assert":
        result["passed"] = result_text == "passed " + token
    return result


def set_limit(which, soft, hard):
    """Set a limit, never above one inherited (the reward's worker may run under a lower cap)."""
    _, inherited = resource.getrlimit(which)
    if inherited != resource.RLIM_INFINITY:
        soft, hard = min(soft, inherited), min(hard, inherited)
    resource.setrlimit(which, (soft, hard))


def kill_all(pid1, pid):
    """Kill every process this case left (all of them, as the namespace's init) and reap them."""
    while True:
        try:
            if pid1:
                os.kill(-1, signal.SIGKILL)  # init is spared: everything else in the namespace dies
            else:
                os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            while True:
                reaped, _ = os.waitpid(-1, os.WNOHANG)
                if reaped == 0:
                    break
        except ChildProcessError:
            return
        if not pid1:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
            return
        time.sleep(0.001)


def child(job, case, limits, pid1, pipes):
    in_r, out_w, err_w, res_w, tok_r = pipes
    # Move every pipe above the target numbers first, so no dup2 overwrites one still needed.
    moved = [os.dup(fd) for fd in (in_r, out_w, err_w, res_w, tok_r)]
    for target, fd in enumerate(moved):  # 0, 1, 2, RESULT_FD, TOKEN_FD
        os.dup2(fd, target)
    os.closerange(TOKEN_FD + 1, 1 << 16)
    if not pid1:
        os.setpgid(0, 0)
    set_dumpable(1)
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    cpu = int(limits["cpu_s"])
    set_limit(resource.RLIMIT_CPU, cpu, cpu + 1)
    memory = int(limits["memory_mb"]) << 20
    set_limit(resource.RLIMIT_AS, memory, memory)
    fsize = int(limits["fsize_mb"]) << 20
    set_limit(resource.RLIMIT_FSIZE, fsize, fsize)
    nofile = int(limits["nofile"])
    set_limit(resource.RLIMIT_NOFILE, nofile, nofile)
    set_limit(resource.RLIMIT_CORE, 0, 0)

    import builtins
    import io
    import types

    sys.stdin = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8")
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr
    sys.argv = ["solution.py"]
    kind = job["kind"]
    main_module = types.ModuleType("__main__")
    main_module.__file__ = os.path.abspath("solution.py")
    main_module.__builtins__ = builtins
    sys.modules["__main__"] = main_module
    if kind != "stdin":
        main_module.__name__ = "solution"  # its `if __name__ == "__main__":` part is not the test
    write, read, close = os.write, os.read, os.close
    code = 0
    try:
        compiled = compile(job["program"], "solution.py", "exec")
        exec(compiled, main_module.__dict__)  # noqa: S102 - the sandbox is the point
        if kind == "call":
            value = _call(main_module.__dict__, job["fn_name"], case.get("args", []))
            payload = json.dumps(value, default=repr)
            sys.stdout.flush()
            write(RESULT_FD, payload.encode("utf-8"))
        elif kind == "assert":
            tests = compile(case.get("test", ""), "test.py", "exec")
            exec(tests, main_module.__dict__)  # noqa: S102
            entry = job.get("entry_point")
            check = main_module.__dict__.get("check")
            # HumanEval's tests define check(candidate) and leave the call to the harness.
            calls_check = any(line.startswith("check(") for line in case.get("test", "").splitlines())
            if entry and callable(check) and not calls_check:
                check(main_module.__dict__[entry])
            sys.stdout.flush()
            write(RESULT_FD, b"passed " + read(TOKEN_FD, 64))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        if exc.code is not None and not isinstance(exc.code, int):
            print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - a crash of the program is its result
        import traceback

        traceback.print_exc()
        code = 1
    close(RESULT_FD)
    try:
        import atexit

        atexit._run_exitfuncs()
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:  # noqa: BLE001
        code = code or 1
    return code


def _call(namespace, fn_name, args):
    fn = namespace.get(fn_name)
    if fn is None and isinstance(namespace.get("Solution"), type):
        fn = getattr(namespace["Solution"](), fn_name, None)  # LeetCode style
    if not callable(fn):
        raise NameError(f"the program defines no function {fn_name!r}")
    if not isinstance(args, list):
        args = [args]
    return fn(*args)


if __name__ == "__main__":
    main()
