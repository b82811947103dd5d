"""TRL's ``GRPOTrainer`` for the run, and the training itself.

The trainer gets the host's callbacks in this order: the backend's, the ``RunRecorder``
(``metrics.jsonl``, samples, progress, trackers), the observability callbacks (GPU metrics,
reward health), ``NonFiniteGuard`` (after the recorder, so the step that went non-finite is
recorded before the run stops) and the before/after probe. Then the generation path is set
(``training/generation.py``). A new callback of the run goes in :func:`build_trainer`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from grpo_host.config import RunConfig
from grpo_host.errors import GrpoHostError
from grpo_host.training.process import Process, cuda

if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.training.callbacks import RunRecorder
    from grpo_host.training.inputs import Inputs
    from grpo_host.training.outputs import Resume
    from grpo_host.training.parts import Parts


@dataclass(frozen=True)
class Session:
    """The built trainer, its recorder and the generation path chosen (``{"path", "why", ...}``)."""

    trainer: Any  # trl.GRPOTrainer
    recorder: RunRecorder
    generation: dict[str, Any]


@dataclass(frozen=True)
class Outcome:
    result: Any  # transformers.TrainOutput
    started: float  # time.time() when training began


def build_trainer(config: RunConfig, process: Process, parts: Parts, inputs: Inputs) -> Session:
    from transformers import PrinterCallback
    from trl import GRPOTrainer

    from grpo_host.observability.callbacks import observability_callbacks
    from grpo_host.training.callbacks import BeforeAfterProbe, NonFiniteGuard, RunRecorder, emit_progress
    from grpo_host.training.generation import apply_generation_speed, compile_counters

    built, reward_set, is_main = inputs.built, parts.reward_set, process.is_main
    recorder = RunRecorder(
        process.output_dir,
        reward_set,
        is_main=is_main,
        trackers=parts.trackers,
        samples_per_log=config.output.samples_per_log,
    )
    if cuda():
        recorder.metric_sources.append(peak_memory)
    emit_progress("phase", text="starting the trainer")
    trainer = GRPOTrainer(
        model=built.model,
        reward_funcs=reward_set.callables(),
        args=inputs.args,
        train_dataset=inputs.train_ds,
        eval_dataset=inputs.eval_ds,
        processing_class=built.tokenizer,
        peft_config=built.peft_config,
        callbacks=[
            *inputs.backend.callbacks,
            recorder,
            *observability_callbacks(recorder, reward_set, is_main=is_main),
            NonFiniteGuard(),
            BeforeAfterProbe(
                process.output_dir,
                reward_set,
                inputs.train_ds,
                built.tokenizer,
                is_main=is_main,
                world_size=process.world_size,
                max_new_tokens=inputs.args.max_completion_length,
            ),
        ],
    )
    trainer.remove_callback(PrinterCallback)  # the recorder prints one readable line per step
    generation = apply_generation_speed(trainer, config, built)
    if generation["path"] == "static-compile":
        recorder.metric_sources.append(compile_counters)
    refuse_silent_unsharded(trainer)
    return Session(trainer, recorder, generation)


def train(
    config: RunConfig, process: Process, parts: Parts, inputs: Inputs, session: Session, resume: Resume
) -> Outcome:
    """Start the trackers, train, and close the reward set however training ends; a run that
    did not finish tells its trackers so (FAILED, or KILLED on Ctrl-C)."""
    parts.trackers.start(run_info(config, process, parts, inputs, session, resume))
    started = time.time()
    status = "FAILED"
    try:
        result = session.trainer.train(resume_from_checkpoint=resume.checkpoint_arg)
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        parts.reward_set.close()
        if status != "FINISHED":
            parts.trackers.finish(str(process.output_dir), status=status)
    return Outcome(result, started)


def run_info(
    config: RunConfig, process: Process, parts: Parts, inputs: Inputs, session: Session, resume: Resume
) -> dict[str, Any]:
    """What the trackers are told when the run starts."""
    built = inputs.built
    return {
        "run_name": config.run_name,
        "output_dir": str(process.output_dir),
        "config": config.model_dump(mode="json"),
        "rewards": parts.reward_set.provenance(),
        "tracking_params": config.tracking_params,
        "world_size": process.world_size,
        "resumed_from": resume.checkpoint_arg,
        "model": {
            "id": config.model.id,
            "dtype": built.dtype,
            "attention": built.attention,
            "quantized": built.quantized,
        },
        "generation": session.generation,
    }


def peak_memory() -> dict[str, float]:
    """This process's peak CUDA memory so far (allocated by tensors, and reserved by the cache)."""
    import torch

    return {
        "memory/peak_allocated_gib": round(torch.cuda.max_memory_allocated() / 2**30, 3),
        "memory/peak_reserved_gib": round(torch.cuda.max_memory_reserved() / 2**30, 3),
    }


def refuse_silent_unsharded(trainer: Any) -> None:
    """An accelerate FSDP config on a machine where accelerate does not apply it (it does so on
    GPUs only) would train unsharded, as plain data parallel, while the user believes in FSDP."""
    asked = os.environ.get("ACCELERATE_USE_FSDP", "").lower() in ("1", "true")
    if asked and not getattr(trainer, "is_fsdp_enabled", False):
        kind = trainer.accelerator.distributed_type
        raise GrpoHostError(
            f"the accelerate config asks for FSDP, but accelerate did not enable it here (distributed type "
            f"{kind}): the run would train unsharded. On CPUs use --backend torchrun-fsdp, which shards "
            "over gloo; on GPUs check the config file's distributed_type and fsdp_config."
        )
