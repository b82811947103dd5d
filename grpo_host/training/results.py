"""What a finished training leaves: the model (or LoRA adapter, merged where it can be), the
summary ``run.json``, the report, the trackers' end, the Hub push and the host's last progress
line. Every process takes part in saving (sharded weights are gathered); only the main one
writes the rest.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from grpo_host.config import RunConfig
from grpo_host.training.outputs import SUMMARY_FILE
from grpo_host.training.process import Process

if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.training.inputs import Inputs
    from grpo_host.training.model import BuiltModel
    from grpo_host.training.outputs import Resume
    from grpo_host.training.parts import Parts
    from grpo_host.training.trainer import Outcome, Session

log = logging.getLogger("grpo_host.training")


def save_model(config: RunConfig, process: Process, inputs: Inputs, session: Session) -> None:
    from grpo_host.training.callbacks import emit_progress

    emit_progress("phase", text="saving the model")
    if not config.output.save_model:
        return
    trainer, built, output_dir = session.trainer, inputs.built, process.output_dir
    if built.peft_config is None:
        trainer.save_model(str(output_dir))  # model, tokenizer; gathers shards where needed
        return
    trainer.save_model(str(output_dir / "adapter"))
    if not (config.output.merge_lora and process.is_main):
        return
    if built.quantized:
        log.info(
            "kept the LoRA adapter only (in adapter/): merging into a 4-bit base would lose precision; "
            "merge it into the full-precision base with peft's merge_and_unload"
        )
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    if getattr(trainer, "is_fsdp_enabled", False):
        # Sharded weights cannot be merged by one process: merge the saved adapter into a fresh base.
        model = _adapter_on_fresh_base(built, config, output_dir / "adapter")
    merged = model.merge_and_unload()
    merged.save_pretrained(str(output_dir))
    built.tokenizer.save_pretrained(str(output_dir))


def _adapter_on_fresh_base(built: BuiltModel, config: RunConfig, adapter_dir: Path) -> Any:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(
        built.source,
        dtype=getattr(torch, built.dtype),
        trust_remote_code=config.model.trust_remote_code,
        **({"revision": config.model.revision} if config.model.revision else {}),
    )
    return PeftModel.from_pretrained(base, str(adapter_dir))


def summarize(
    config: RunConfig,
    process: Process,
    parts: Parts,
    inputs: Inputs,
    session: Session,
    resume: Resume,
    outcome: Outcome,
) -> dict[str, Any]:
    """The main process writes ``run.json`` (then the report, and ``run.json`` again with its
    paths), ends the trackers, pushes the model when asked and sends the host the summary.
    Other processes return ``{}``."""
    if not process.is_main:
        return {}
    from grpo_host.observability.redact import redact
    from grpo_host.observability.report import write_report
    from grpo_host.training.callbacks import emit_progress

    output_dir = process.output_dir
    summary = summary_of(config, process, parts, inputs, session, resume, outcome)
    (output_dir / SUMMARY_FILE).write_text(json.dumps(redact(summary), indent=2), encoding="utf-8")
    if config.output.report:
        emit_progress("phase", text="writing the report")
        summary["report"] = {k: str(v) for k, v in write_report(output_dir).items()}
        (output_dir / SUMMARY_FILE).write_text(json.dumps(redact(summary), indent=2), encoding="utf-8")
    parts.trackers.finish(str(output_dir))
    if config.output.push_to_hub:
        push(config, output_dir)
    emit_progress("end", **summary)
    return summary


def summary_of(
    config: RunConfig,
    process: Process,
    parts: Parts,
    inputs: Inputs,
    session: Session,
    resume: Resume,
    outcome: Outcome,
) -> dict[str, Any]:
    """``run.json``'s content: where the model is, how far it trained, on what, and how the reward rose."""
    from grpo_host.observability.report import read_jsonl, reward_rise
    from grpo_host.training.callbacks import METRICS_FILE

    state, built = session.trainer.state, inputs.built
    return {
        "run_name": config.run_name,
        "output_dir": str(process.output_dir),
        "model_dir": str(process.output_dir),
        "final_step": state.global_step,
        "max_steps": state.max_steps,
        "num_train_epochs": state.num_train_epochs,
        "resumed_from_step": resume.step,
        "train_seconds": round(time.time() - outcome.started, 2),
        "train_runtime": outcome.result.metrics.get("train_runtime"),
        "world_size": process.world_size,
        "device": str(inputs.args.device),
        "dtype": built.dtype,
        "attention": built.attention,
        "precision": inputs.precision,
        "generation": session.generation,
        "reward_rise": reward_rise(read_jsonl(process.output_dir / METRICS_FILE)),
        "rewards": [r.name for r in parts.reward_set.rewards],
    }


def push(config: RunConfig, output_dir: Path) -> None:
    from huggingface_hub import HfApi

    api = HfApi()
    repo = config.output.hub_model_id
    api.create_repo(repo, private=config.output.hub_private, exist_ok=True)
    api.upload_folder(folder_path=str(output_dir), repo_id=repo, ignore_patterns=["checkpoints/*"])
    log.info("pushed the model to https://huggingface.co/%s", repo)
