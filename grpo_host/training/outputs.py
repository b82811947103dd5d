"""What a run keeps in its output dir: the files' names, the checkpoints, and the dir's
preparation before training (where to resume from, what a fresh run clears).

Light on purpose (no torch): ``finished.py`` reads the summary's name from here, at CLI start
too. The step records' names (``metrics.jsonl``, ...) live with their writer,
``training/callbacks.py``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from grpo_host.config import ConfigError, RunConfig

log = logging.getLogger("grpo_host.training")

CONFIG_FILE = "run_config.yaml"
PROVENANCE_FILE = "reward_provenance.json"
SUMMARY_FILE = "run.json"
_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")


def complete_checkpoints(folder: str | Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints that finished saving, oldest first.

    The trainer writes ``trainer_state.json`` last, so a checkpoint cut short by a hard kill
    lacks it (or holds a truncated one) and is skipped.
    """
    folder = Path(folder)
    found: list[tuple[int, Path]] = []
    if not folder.is_dir():
        return found
    for child in folder.iterdir():
        match = _CHECKPOINT.match(child.name)
        if not match or not child.is_dir():
            continue
        try:
            json.loads((child / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        found.append((int(match.group(1)), child))
    return sorted(found)


def resume_problem(config: RunConfig) -> str | None:
    """Why ``checkpointing.resume`` cannot be used, or None: a folder given by path must be a
    complete checkpoint. Checked by the host before launching and by the worker before the model."""
    resume = config.checkpointing.resume
    if isinstance(resume, str) and not (Path(resume) / "trainer_state.json").is_file():
        return (
            f"checkpointing.resume: {resume!r} is not a complete checkpoint folder "
            "(no trainer_state.json); give a checkpoint-N folder, true or false"
        )
    return None


def resume_point(config: RunConfig) -> Path | None:
    problem = resume_problem(config)
    if problem:
        raise ConfigError(problem)
    resume = config.checkpointing.resume
    if isinstance(resume, str):
        return Path(resume)
    if resume is False:
        return None
    done = complete_checkpoints(config.checkpoint_dir)
    return done[-1][1] if done else None


@dataclass(frozen=True)
class Resume:
    """Where the run starts: a checkpoint (and its step, when its name tells it) or from scratch."""

    checkpoint: Path | None = None
    step: int | None = None

    @property
    def checkpoint_arg(self) -> str | None:
        """What ``trainer.train(resume_from_checkpoint=...)`` takes."""
        return str(self.checkpoint) if self.checkpoint else None


def find_resume(config: RunConfig) -> Resume:
    checkpoint = resume_point(config)
    match = _CHECKPOINT.match(checkpoint.name) if checkpoint else None
    return Resume(checkpoint, int(match.group(1)) if match else None)


def prepare_output_dir(config: RunConfig, resume: Resume, provenance: Any, *, is_main: bool) -> None:
    """The main process writes the run's config and reward provenance (redacted) and clears or
    cuts the step records: a fresh run starts them empty, a resumed one keeps the steps up to
    its checkpoint. ``checkpointing.resume: false`` drops the old checkpoints."""
    if not is_main:
        return
    from grpo_host.observability.redact import redact
    from grpo_host.training.callbacks import EVAL_METRICS_FILE, METRICS_FILE, SAMPLES_FILE, truncate_jsonl

    output_dir = Path(config.output.dir or ".")
    output_dir.mkdir(parents=True, exist_ok=True)
    if config.checkpointing.resume is False:
        for _, old in complete_checkpoints(config.checkpoint_dir):
            shutil.rmtree(old, ignore_errors=True)
    (output_dir / CONFIG_FILE).write_text(redact(config.to_yaml()), encoding="utf-8")
    (output_dir / PROVENANCE_FILE).write_text(json.dumps(redact(provenance), indent=2), encoding="utf-8")
    for name in (METRICS_FILE, SAMPLES_FILE, EVAL_METRICS_FILE):
        if resume.step is not None:
            truncate_jsonl(output_dir / name, resume.step)
        else:
            (output_dir / name).unlink(missing_ok=True)
    if resume.checkpoint is not None:
        log.info("resuming from %s", resume.checkpoint)
