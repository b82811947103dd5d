"""Hostile programs against the real sandbox: each is contained, scores 0, and leaves nothing.

Every test here runs real bubblewrap (setup.sh installs it). The fork bomb runs while the host
forks; the hostile batch runs beside honest samples, under CPU contention, with a secret in the
host's environment, a listener on the host's loopback and files to reach for; afterwards no
process of any sandbox is left. A worker the runtime kills takes its sandboxes down with it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from grpo_host.plugins.manager import get_plugin_manager
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples

pytest.importorskip("grpo_reward_code", reason="install plugins/grpo-reward-code (pip install -e)")

from grpo_reward_code.reward import CodeReward  # noqa: E402
from grpo_reward_code.sandbox import SLOT_UID_BASE, SLOT_UID_COUNT, find_bwrap  # noqa: E402

pytestmark = pytest.mark.skipif(
    find_bwrap() is None, reason="bubblewrap is not installed (setup.sh installs it)"
)

REPO = Path(__file__).resolve().parents[1]
SUM = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
SUM_TESTS = json.dumps({"inputs": ["1 2\n", "3 4\n"], "outputs": ["3\n", "7\n"]})
RUNNER_MARK = b"RESULT_FD = 3"  # in every sandbox runner's command line, and its forks'


def block(source: str) -> str:
    return f"```python\n{source}\n```"


def sandbox_processes() -> list[int]:
    """Processes of any sandbox: a runner or its forks, or anything running as a leased uid."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes()
            uid = int(Path(f"/proc/{entry}/status").read_text().split("\nUid:")[1].split()[0])
        except (OSError, IndexError, ValueError):
            continue
        if RUNNER_MARK in cmdline or SLOT_UID_BASE <= uid < SLOT_UID_BASE + SLOT_UID_COUNT:
            found.append(int(entry))
    return found


def wait_until_none_left(seconds: float = 10.0) -> list[int]:
    deadline = time.monotonic() + seconds
    while (left := sandbox_processes()) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


@pytest.fixture(autouse=True)
def no_sandbox_before_or_after():
    assert wait_until_none_left() == [], "sandbox processes left by an earlier test"
    yield
    assert wait_until_none_left() == [], "a sandbox process outlived its test"


FORK_BOMB = block("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")


@pytest.mark.slow
def test_a_fork_bomb_is_bounded_while_the_host_and_an_honest_sample_go_on():
    reward = CodeReward(time_limit=4, cpu_limit=4, max_processes=16, workers=2)
    tests = json.dumps({"inputs": [""], "outputs": ["done"]})
    scores: list = []
    worker = threading.Thread(
        target=lambda: scores.extend(reward.score_batch([FORK_BOMB, SUM], input_output=[tests, SUM_TESTS]))
    )
    worker.start()
    peak, host_forks = 0, 0
    while worker.is_alive():
        peak = max(peak, len(sandbox_processes()))
        # The host forks and runs programs during the bomb: it never exhausted the process table.
        done = subprocess.run(["true"], timeout=10)
        assert done.returncode == 0
        host_forks += 1
    worker.join()
    assert [s.value for s in scores] == [0.0, 1.0]
    assert scores[0].details["first_failure"]["status"] == "timeout"
    assert host_forks >= 5 and peak > 5, (host_forks, peak)  # the bomb did run while the host forked
    # 16 for the program, the runner, bwrap outside and the honest sample's sandbox (<= 3).
    assert peak <= 16 + 2 + 3, f"{peak} sandbox processes at once: the process limit did not bind"


@pytest.mark.slow
def test_every_hostile_program_is_contained_beside_honest_samples_under_cpu_contention(tmp_path, monkeypatch):
    secret = "grpo-code-test-secret-4f1c"
    monkeypatch.setenv("GRPO_CODE_TEST_SECRET", secret)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    port = listener.getsockname()[1]
    outside = tmp_path / "escaped.txt"
    os.chmod(tmp_path, 0o777)  # so that only the sandbox, not file permissions, stops the write
    one = json.dumps({"inputs": [""], "outputs": ["yes"]})
    hostile = {
        "busy-loop": block("while True:\n    pass"),
        "memory-bomb": block("blocks = []\nwhile True:\n    blocks.append(bytearray(64 * 2**20))"),
        "endless-output": block("while True:\n    print('y' * 4096)"),
        "network": block(
            f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)\nprint('yes')"
        ),
        "write-outside": block(f"open({str(outside)!r}, 'w').write('x')\nprint('yes')"),
        "read-env": block(
            "import os\n"
            "found = os.environ.get('GRPO_CODE_TEST_SECRET') or open('/proc/1/environ').read()\n"
            f"print('yes' if {secret!r} in found else 'no')"
        ),
        "read-project": block(f"print('yes' if open({str(REPO / 'README.md')!r}).read() else 'no')"),
        "kill-parent-and-all": block(
            "import os, signal\n"
            "for pid in (os.getppid(), 1):\n"
            "    try:\n        os.kill(pid, signal.SIGKILL)\n    except OSError:\n        pass\n"
            "os.kill(-1, signal.SIGKILL)"
        ),
        "daemon": block(
            "import os, time\n"
            "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n"
            f"        time.sleep(3)\n        open({str(outside)!r}, 'w').write('late')\n    os._exit(0)\n"
            "print('no')"
        ),
        "ignore-sigterm": block(
            "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\ntime.sleep(600)"
        ),
        "fork-bomb": FORK_BOMB,
    }
    completions = [SUM, *hostile.values(), SUM]
    tests = [SUM_TESTS, *[one] * len(hostile), SUM_TESTS]
    bound = bind_reward(
        get_plugin_manager().get_reward("code"), {"time_limit": 2, "cpu_limit": 2, "max_output_kb": 256}
    )
    contention = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        with RewardRuntime([bound], workers=1) as runtime:
            runtime.score(prepare_samples([SUM], {"input_output": [SUM_TESTS]}))  # build outside the clock
            start = time.monotonic()
            results = runtime.score(prepare_samples(completions, {"input_output": tests}))["code"]
            seconds = time.monotonic() - start
    finally:
        for proc in contention:
            proc.kill()
            proc.wait()
    outcomes = dict(zip(["honest-first", *hostile, "honest-last"], results, strict=True))
    assert {name: (r.outcome, r.score) for name, r in outcomes.items()} == {
        name: ("ok", 1.0 if name.startswith("honest") else 0.0) for name in outcomes
    }, {name: r.details for name, r in outcomes.items()}
    # 11 hostile programs, most of them burning their whole 2 s, on 2 loaded cores: well within budget.
    assert seconds < 60, seconds
    assert outcomes["busy-loop"].details["first_failure"]["status"] == "timeout"
    assert outcomes["endless-output"].details["first_failure"]["status"] == "output_limit"
    with pytest.raises(TimeoutError):
        listener.accept()  # nothing reached the host's loopback
    listener.close()
    time.sleep(3.5)  # past the daemon's wake-up, had it survived its case
    assert not outside.exists()


@pytest.mark.slow
def test_a_worker_killed_by_the_runtime_takes_its_sandboxes_down():
    stuck = block("import time\ntime.sleep(600)")
    tests = json.dumps({"inputs": [""], "outputs": [""]})
    # The host's budget (2 s x 2 samples) runs out long before the sandbox's own 60 s clock.
    bound = bind_reward(get_plugin_manager().get_reward("code"), {"time_limit": 60, "timeout": 2})
    with RewardRuntime([bound], workers=1) as runtime:
        runtime.score(prepare_samples([SUM], {"input_output": [SUM_TESTS]}))
        results = runtime.score(
            prepare_samples([stuck, stuck.replace("600", "601")], {"input_output": [tests] * 2})
        )
    assert [r.outcome for r in results["code"]] == ["timeout", "timeout"]
    assert wait_until_none_left() == []


COUNT_FORKS = block(
    "import os, time\n"
    "n = 0\n"
    "for _ in range(40):\n"
    "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
    "    if pid == 0:\n        time.sleep(30)\n        os._exit(0)\n"
    "    n += 1\n"
    "print(n)"
)


def test_the_process_limit_binds_also_as_root():
    # Not a bomb: 40 sleeping children at most, so that the check is safe to run anywhere.
    reward = CodeReward(max_processes=8, workers=1)
    result = reward.score_batch(
        [COUNT_FORKS], input_output=[json.dumps({"inputs": [""], "outputs": ["40"]})]
    )[0]
    assert result.value == 0.0
    forked = int(result.details["first_failure"]["got"])
    assert 1 <= forked <= 8, f"the program forked {forked} children past max_processes=8 (uid {os.geteuid()})"


def test_the_seccomp_filter_denies_ptrace_and_new_namespaces():
    from grpo_reward_code.sandbox import seccomp_filter

    if seccomp_filter() is None:
        pytest.skip("no pyseccomp or libseccomp here: the sandbox runs without the filter")
    probe = block(
        "import ctypes, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "print(libc.ptrace(0, 0, 0, 0), libc.unshare(0x00020000), libc.unshare(0x10000000))"  # TRACEME, NEWNS, NEWUSER
    )
    tests = json.dumps({"inputs": [""], "outputs": ["0 0 0"]})
    result = CodeReward(workers=1).score_batch([probe], input_output=[tests])[0]
    assert result.value == 0.0 and result.details["first_failure"]["got"].split() == ["-1", "-1", "-1"]
    # Without the filter, ptrace itself is allowed (the namespaces still refuse the rest): the check can fail.
    unfiltered = CodeReward(workers=1, seccomp=False).score_batch([probe], input_output=[tests])[0]
    assert unfiltered.details["first_failure"]["got"].split()[0] == "0"
