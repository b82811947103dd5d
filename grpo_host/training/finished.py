"""Is the output dir's run already finished? Then training it again would only add a step.

A finished run leaves ``run.json`` with ``final_step == max_steps``. Resuming it from its last
checkpoint with the same ``max_steps`` would train one more step past the end and overwrite
the model, each time the command is rerun. So the host (before launching) and the worker
(before building anything) ask :func:`finished_run`: a run is trained again only when the config
asks for more (a higher ``grpo.max_steps``, or more ``grpo.num_train_epochs`` than the run
covered) or with ``grpo-host train --overwrite``, which starts over. A run that crashed never
wrote ``run.json``; it resumes as before.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from grpo_host.training.outputs import SUMMARY_FILE


def finished_run(config: Any) -> dict[str, Any] | None:
    """The summary of the finished run in ``config.output.dir`` that ``config`` would not
    extend, or None when there is something to train."""
    summary = read_summary(Path(config.output.dir))
    if summary is None:
        return None
    final, done_max = summary.get("final_step"), summary.get("max_steps")
    if not isinstance(final, int) or not isinstance(done_max, int) or final < done_max:
        return None
    wanted = config.grpo.get("max_steps", -1)
    if isinstance(wanted, int) and wanted > 0:
        return None if wanted > final else summary
    from grpo_host.trl_schema import grpo_fields

    epochs = config.grpo.get("num_train_epochs", grpo_fields().get("num_train_epochs", {}).get("default"))
    covered = summary.get("num_train_epochs")
    if isinstance(epochs, (int, float)) and isinstance(covered, (int, float)) and epochs > covered:
        return None
    return summary


def end_if_finished(config: Any, *, is_main: bool) -> dict[str, Any] | None:
    """In the worker: the finished run's summary, told to the host as the run's end, when this
    config would not extend it (then nothing is trained); None when there is something to train.
    The host checks first; this covers a worker launched by hand or by a job."""
    done = finished_run(config)
    if done is not None and is_main:
        import logging

        from grpo_host.training.callbacks import emit_progress

        logging.getLogger("grpo_host.training").info("%s", finished_message(done, config.output.dir))
        emit_progress("end", **done)
    return done


def read_summary(output_dir: Path) -> dict[str, Any] | None:
    try:
        summary = json.loads((output_dir / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) else None


def finished_message(summary: dict[str, Any], output_dir: str | Path) -> str:
    final = summary.get("final_step")
    more = 2 * final if isinstance(final, int) else "N"
    return (
        f"{output_dir} holds a finished run (step {final} of max_steps {summary.get('max_steps')}); "
        f"nothing to train. To train it further, raise grpo.max_steps (e.g. --set grpo.max_steps={more}); "
        "to start over, add --overwrite."
    )


def forget_finished(output_dir: str | Path) -> None:
    """``--overwrite``: the old summary goes first, so a crash of the new run is not taken for the old end."""
    (Path(output_dir) / SUMMARY_FILE).unlink(missing_ok=True)
