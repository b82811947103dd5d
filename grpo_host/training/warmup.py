"""The warm-up: a few supervised steps that teach the model the completion's shape before GRPO.

A tiny model with random weights writes random bytes, so no reward but length has anything to
grade and GRPO learns nothing worth showing. ``warmup.steps`` supervised steps on the run's own
prompts, each paired with a target completion built from the row (``warmup.template``, by
default ``<think>{working}</think> <answer>{answer}</answer>``), fix that: the loss covers the
completion's tokens only, the prompt goes through the tokenizer's chat template exactly as TRL
sends it, and the run is seeded, so the same config warms up to the same weights. The budget
is kept short on purpose: the model leaves the warm-up writing the format but often the wrong
number, and the GRPO run that follows is what raises ``accuracy``. A resumed run skips it (the
checkpoint holds the weights).
"""

from __future__ import annotations

import json
import logging
import math
import random
import string
import time
from pathlib import Path
from typing import Any

from grpo_host.config import ConfigError, RunConfig

log = logging.getLogger("grpo_host.training")

WARMUP_FILE = "warmup.json"


def template_columns(template: str) -> set[str]:
    """The columns the template names (the config checked that it is a format string)."""
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def warmup_examples(config: RunConfig, tokenizer: Any, dataset: Any) -> list[tuple[list[int], list[int]]]:
    """``(prompt_ids, target_ids)`` per row: the prompt as TRL renders it, the target with EOS."""
    section = config.warmup
    wanted = template_columns(section.template)
    missing = sorted(wanted - set(dataset.column_names))
    if missing:
        raise ConfigError(
            f"warmup.template uses column(s) {', '.join(missing)}; the data has {', '.join(dataset.column_names)}. "
            "Set warmup.template to a target completion over those columns, e.g. "
            "'<think>{solution}</think> <answer>{answer}</answer>', or warmup.steps: 0 to train without a warm-up"
        )
    if section.wrong_answers:
        for key, column in (("answer_column", section.answer_column), ("wrong_column", section.wrong_column)):
            if column is not None and column not in dataset.column_names:
                raise ConfigError(
                    f"warmup.{key} {column!r} is not a column of the data ({', '.join(dataset.column_names)}); "
                    "name a column the data has, or set warmup.wrong_answers: 0"
                )
    eos = tokenizer.eos_token_id
    answers = list(dataset[section.answer_column]) if section.wrong_answers else []
    rng = random.Random(config.seed)
    examples = []
    for row in dataset:
        if answers and rng.random() < section.wrong_answers:
            wrong = row[section.wrong_column] if section.wrong_column else answers[rng.randrange(len(answers))]
            row = {**row, section.answer_column: wrong}
        prompt = row["prompt"]
        if isinstance(prompt, list):
            prompt = tokenizer.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        target = section.template.format(**row)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        target_ids = tokenizer(target, add_special_tokens=False)["input_ids"] + ([eos] if eos is not None else [])
        examples.append((prompt_ids, target_ids))
    if not examples:
        raise ConfigError("warmup.steps is set but the training data has no rows")
    return examples


def warm_up(config: RunConfig, built: Any, dataset: Any, *, output_dir: Path | None = None) -> dict[str, Any] | None:
    """Train ``built.model`` in place for ``warmup.steps`` supervised steps; a summary, or None when off."""
    section = config.warmup
    if section.steps == 0:
        if output_dir is not None:
            Path(output_dir, WARMUP_FILE).unlink(missing_ok=True)  # a previous run's, in the same dir
        return None
    # A 4-bit model cannot take the warm-up's full updates: the config refuses warmup.steps with
    # quantization.load_in_4bit (RunConfig._cross).
    import torch

    from grpo_host.training.callbacks import emit_progress

    emit_progress("phase", text=f"warm-up: {section.steps} supervised steps")
    started = time.monotonic()
    examples = warmup_examples(config, built.tokenizer, dataset)
    model = built.model
    device = next(model.parameters()).device
    if torch.cuda.is_available() and device.type == "cpu":
        device = torch.device("cuda", torch.cuda.current_device())
        model.to(device)
    pad = built.tokenizer.pad_token_id if built.tokenizer.pad_token_id is not None else 0
    rng = random.Random(config.seed)
    torch.manual_seed(config.seed)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=section.learning_rate, weight_decay=0.0)
    order: list[int] = []
    losses: list[float] = []
    was_training = model.training
    model.train()
    for step in range(section.steps):
        # Cosine decay to a tenth: a warm start, not a schedule anyone needs to tune.
        for group in optimizer.param_groups:
            group["lr"] = section.learning_rate * (0.55 + 0.45 * math.cos(math.pi * step / section.steps))
        batch = []
        for _ in range(section.batch_size):
            if not order:
                order = list(range(len(examples)))
                rng.shuffle(order)
            batch.append(examples[order.pop()])
        width = max(len(p) + len(t) for p, t in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        labels = torch.full((len(batch), width), -100, dtype=torch.long)
        mask = torch.zeros((len(batch), width), dtype=torch.long)
        for i, (prompt_ids, target_ids) in enumerate(batch):
            seq = prompt_ids + target_ids
            ids[i, : len(seq)] = torch.tensor(seq)
            labels[i, len(prompt_ids) : len(seq)] = torch.tensor(target_ids)
            mask[i, : len(seq)] = 1
        out = model(input_ids=ids.to(device), attention_mask=mask.to(device), labels=labels.to(device))
        if not torch.isfinite(out.loss):
            raise ConfigError(f"warm-up: the loss is {out.loss.item()} at step {step + 1}; lower warmup.learning_rate")
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(out.loss.item()))
    model.train(was_training)
    del optimizer
    summary = {
        "steps": section.steps,
        "batch_size": section.batch_size,
        "learning_rate": section.learning_rate,
        "template": section.template,
        "loss_first": round(losses[0], 4),
        "loss_last": round(sum(losses[-10:]) / len(losses[-10:]), 4),
        "seconds": round(time.monotonic() - started, 2),
    }
    log.info("warm-up: %d supervised steps in %.1f s, loss %.3f -> %.3f", section.steps, summary["seconds"],
             summary["loss_first"], summary["loss_last"])
    if output_dir is not None:
        Path(output_dir, WARMUP_FILE).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return summary
