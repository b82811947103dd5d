"""The runtime's protocol: progress records a reader never sees torn, deadlines only from this
chunk's records, and no spurious timeout under CPU contention."""

from __future__ import annotations

import mmap
import subprocess
import sys
import textwrap
import time

import pytest

from grpo_host.plugins.installed import load_rewards
from grpo_host.plugins.manager import PluginManager
from grpo_host.rewards.runtime import BUILD_BUDGET_S, RewardRuntime, bind_reward, prepare_samples
from grpo_host.rewards.worker import (
    PROGRESS_SIZE,
    SLOT,
    SLOT_OFFSETS,
    ProgressWriter,
    open_progress,
    read_progress,
)

from .conftest import write_distribution

# A writer in another process, publishing records whose three fields always agree
# (task == index == started); "naive" writes them in place, field by field, as a blank-then-fill
# protocol does.
WRITER = """
    import sys, time
    from grpo_host.rewards.worker import SLOT, SLOT_OFFSETS, ProgressWriter, open_progress
    import struct
    buffer = open_progress(sys.argv[1])
    naive = sys.argv[2] == "naive"
    writer = ProgressWriter(buffer)
    field = struct.Struct("q")
    end = time.monotonic() + float(sys.argv[3])
    k = 1
    while time.monotonic() < end:
        if naive:
            SLOT.pack_into(buffer, SLOT_OFFSETS[0], 0, 0, 0.0)  # blank, then fill
            field.pack_into(buffer, SLOT_OFFSETS[0], k)
            field.pack_into(buffer, SLOT_OFFSETS[0] + 8, k)
            struct.pack_into("d", buffer, SLOT_OFFSETS[0] + 16, float(k))
        else:
            writer.publish(k, k, float(k))
        k += 1
"""


def progress_file(tmp_path):
    path = tmp_path / "progress"
    path.write_bytes(b"\0" * PROGRESS_SIZE)
    return str(path), open_progress(str(path))


def torn_reads(tmp_path, mode: str, seconds: float = 1.5) -> tuple[int, int]:
    path, buffer = progress_file(tmp_path)
    script = tmp_path / "writer.py"
    script.write_text(textwrap.dedent(WRITER))
    writer = subprocess.Popen([sys.executable, str(script), path, mode, str(seconds)])
    torn = reads = 0
    time.sleep(0.3)  # let it start writing
    while writer.poll() is None:
        if mode == "naive":
            record = SLOT.unpack_from(buffer, SLOT_OFFSETS[0])
        else:
            record = read_progress(buffer)
            if record is None:
                continue
        reads += 1
        task, index, started = record
        torn += not (task == index == started)
    assert writer.wait() == 0
    return torn, reads


def test_a_reader_never_sees_a_half_written_progress_record(tmp_path):
    torn, reads = torn_reads(tmp_path, "seqlock")
    assert reads > 1000 and torn == 0, (torn, reads)


def test_the_torn_read_check_can_fail(tmp_path):
    # The same reader loop over a record blanked then filled in place (the old protocol) sees
    # torn records: this is what the test above would catch.
    torn, reads = torn_reads(tmp_path, "naive")
    assert torn > 0, reads


def test_a_writer_killed_mid_publish_leaves_the_last_whole_record(tmp_path):
    _, buffer = progress_file(tmp_path)
    writer = ProgressWriter(buffer)
    writer.publish(7, 3, 100.0)
    # Half of the next publish: the slot readers do not look at is filled, the sequence is not.
    SLOT.pack_into(buffer, SLOT_OFFSETS[(writer.seq + 1) & 1], 8, 0, 0.0)
    assert read_progress(buffer) == (7, 3, 100.0)
    blank = mmap.mmap(-1, PROGRESS_SIZE)
    assert read_progress(blank) is None  # nothing published yet: no record, not "sample 0 at time 0"


@pytest.fixture
def manager(plugin_dir):
    source = """
        import grpo_host

        @grpo_host.reward(name="chars", timeout=2.0)
        def chars(completion: str, **columns):
            '''Length-like and cheap: what format and length cost.'''
            return float(len(completion))

        @grpo_host.hookimpl
        def grpo_rewards():
            return [chars]
    """
    write_distribution(plugin_dir, "grpo-reward-chars", {"chars_plugin": source}, {"c": "chars_plugin"})
    return PluginManager()


def test_deadlines_come_only_from_records_of_the_chunk_in_hand(manager):
    with RewardRuntime([bind_reward(manager.get_reward("chars"))], workers=1) as runtime:
        runtime.score(prepare_samples(["ab"]))
        worker = next(iter(runtime._all))
        pool = runtime.pool
        # The record left by the last chunk says "sample 0 started at time 0" (the shape of
        # the blank the old protocol exposed); a new chunk must not be judged by it.
        ProgressWriter(worker.progress).publish(worker.task_id, 0, 0.0)
        worker.task_id += 1
        worker.chunk = _chunk_for(runtime)
        worker.sent_at = time.monotonic()
        deadline, poll_soon = pool._deadline(worker)
        assert deadline >= worker.sent_at + BUILD_BUDGET_S - 1 and poll_soon
        # the same record with this chunk's task id is believed
        ProgressWriter(worker.progress).publish(worker.task_id, 0, 50.0)
        assert pool._deadline(worker) == (52.0, False)
        worker.chunk = None


def _chunk_for(runtime):
    from grpo_host.rewards.runtime import Chunk

    bound = runtime.rewards[0]
    return Chunk(0, bound, [0], [{"completion": "x", "messages": None}])


BUSY = "import time\nend = time.monotonic() + {seconds}\nwhile time.monotonic() < end:\n    pass\n"


@pytest.mark.slow
def test_no_spurious_timeout_under_cpu_contention(manager):
    """A cheap reward, 128 completions a batch, in a loop through load_rewards, while two
    processes keep both cores busy: every score exact, no timeout, no stale reply."""
    hogs = [subprocess.Popen([sys.executable, "-c", BUSY.format(seconds=60)]) for _ in range(2)]
    try:
        funcs = load_rewards([{"name": "chars", "timeout": 0.5}], workers=2, manager=manager)
        completions = ["x" * (i % 97) for i in range(128)]
        want = [float(len(c)) for c in completions]
        batches, end = 0, time.monotonic() + 12
        while time.monotonic() < end:
            assert funcs[0](prompts=["p"] * 128, completions=completions) == want
            batches += 1
        runtime = funcs[0].reward_set.runtime
        assert runtime.totals["chars"]["timeout"] == 0 and runtime.replaced_workers == 0
        assert runtime.stale_replies == 0 and batches * 128 == runtime.totals["chars"]["ok"]
        assert batches >= 20, batches
        funcs[0].reward_set.close()
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()
    assert not [p for p in hogs if p.poll() is None]
