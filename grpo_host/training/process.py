"""The training process itself, set up first: its place among the run's processes
(accelerate's ``PartialState``), logging, redaction, progress bars off, torch threads.

Launched as several processes (``accelerate launch``, ``torchrun``), every process trains and
only the main one writes shared files; :class:`Process` carries which one this is to the
later stages.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo_host.config import RunConfig, check_grpo_fields

log = logging.getLogger("grpo_host.training")


@dataclass(frozen=True)
class Process:
    """This process of the run, as every later stage needs it."""

    state: Any  # accelerate.PartialState
    output_dir: Path

    @property
    def is_main(self) -> bool:
        return bool(self.state.is_main_process)

    @property
    def world_size(self) -> int:
        return int(self.state.num_processes)

    def main_first(self) -> Any:
        """A context in which the main process goes first (it builds what the others then read)."""
        return self.state.main_process_first()

    def wait_for_everyone(self) -> None:
        self.state.wait_for_everyone()


def start_process(config: RunConfig) -> Process:
    from accelerate import PartialState

    # On CPUs the processes must join a gloo group: without cpu=True accelerate sees no GPU
    # and treats every process as a world of one.
    state = PartialState(cpu=not cuda())
    level = logging.INFO if state.is_main_process else logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", force=True)
    _quiet()
    check_grpo_fields(config.grpo)  # fast, before anything heavy
    from grpo_host.observability.redact import configure as configure_redaction

    configure_redaction(config.redact_env)
    return Process(state, Path(config.output.dir or "."))


def set_threads(config: RunConfig) -> None:
    threads = cpu_threads(config)
    if threads:
        import torch

        torch.set_num_threads(threads)
        log.info("CPU: %d torch thread(s) per process", threads)


def cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())


def cpu_threads(config: RunConfig) -> int | None:
    """Torch threads for a CPU run: tiny matrices run fastest on one thread (more threads
    spin against each other, badly so on a shared machine)."""
    if cuda():
        return None
    if config.cpu_threads:
        return config.cpu_threads
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    from grpo_host.config import BUILTIN_MODEL

    return 1 if config.model.id == BUILTIN_MODEL else None


def cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def local_world_size() -> int:
    return int(os.environ.get("LOCAL_WORLD_SIZE") or os.environ.get("WORLD_SIZE") or 1)


def _quiet() -> None:
    """Per-shard and per-map progress bars and transformers' own deprecation notes about the
    fields TRL still uses would bury the step lines; the host draws its own progress."""
    import warnings

    import datasets
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    warnings.filterwarnings(
        "ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning
    )
