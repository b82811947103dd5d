"""TrainerCallbacks of the training worker: the metrics record, progress, trackers.

``RunRecorder`` turns each of the trainer's log events into one record of ``metrics.jsonl``:
TRL's own metrics (``reward``, ``rewards/<name>/mean``, ``loss``, ``kl``, ``step_time``,
completion lengths, ...) plus the reward runtime's outcome counts per reward
(``rewards/<name>/ok|not_applicable|error|timeout``, summed over every process since the last
log; ``rewards/score_seconds``: the wall time spent waiting on scoring, the slowest process's)
and whatever the registered metric sources add (GPU metrics, reward-health flags). It keeps
a few sample completions with their scores (``samples.jsonl``), reports progress to the host,
and feeds the enabled trackers. ``BeforeAfterProbe`` writes the same prompts' completions at
the start and at the end of GRPO (``comparison.jsonl``). Only the main process writes files or calls trackers;
the outcome counts are gathered from every process first, which is why ``on_log`` runs
everywhere.

To add metrics, either put a callback before ``RunRecorder`` that adds keys to ``logs`` in its
``on_log``, or register a source: ``recorder.metric_sources.append(lambda: {"gpu/util": ...})``.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from grpo_host.observability.redact import redact
from grpo_host.rewards.spec import OUTCOMES

PROGRESS_PREFIX = "@grpo-host-progress "
METRICS_FILE = "metrics.jsonl"
EVAL_METRICS_FILE = "eval_metrics.jsonl"
SAMPLES_FILE = "samples.jsonl"
COMPARISON_FILE = "comparison.jsonl"


def emit_progress(event: str, **data: Any) -> None:
    """One machine-readable line for the host's progress bar (when the host asked for them)."""
    if os.environ.get("GRPO_HOST_PROGRESS") == "1":
        sys.stdout.write(PROGRESS_PREFIX + json.dumps({"event": event, **data}, default=_num) + "\n")
        sys.stdout.flush()


def _num(value: Any) -> Any:
    try:
        return float(value)
    except (TypeError, ValueError):
        return str(value)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def truncate_jsonl(path: Path, max_step: int) -> None:
    """Drop records past ``max_step``: a resumed run logs those steps again."""
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if json.loads(line).get("step", 0) <= max_step:
                kept.append(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a hard kill
    path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")


class NonFiniteTrainingError(RuntimeError):
    """The run's gradients or loss stopped being finite: the next step would only spread NaN."""


class NonFiniteGuard(TrainerCallback):
    """Stop the run, with a message that says what to change, at the first non-finite gradient norm.

    Once the gradient norm is NaN or inf (and no fp16 loss scaler is there to skip the step),
    the optimizer writes NaN into the weights, and the next generate samples from NaN
    probabilities; on a GPU that surfaces as ``CUDA error: device-side assert triggered`` deep in
    transformers, with nothing pointing back at training. bench/README.md (issue 22) saw exactly
    that with TRL's own generation and the host's fast path alike. Placed after ``RunRecorder``,
    so the step's record (``grad_norm: null``) is written first.
    """

    def on_log(self, args, state, control, logs=None, **kwargs):
        if getattr(args, "fp16", False):  # the fp16 scaler skips inf steps on its own, by design
            return
        for key in ("grad_norm", "loss"):
            value = (logs or {}).get(key)
            if isinstance(value, float) and not math.isfinite(value):
                raise NonFiniteTrainingError(
                    f"step {state.global_step}: {key} is {value}: training diverged and the weights are no "
                    "longer finite, so the next generate would sample from NaN (on a GPU: 'CUDA error: "
                    "device-side assert triggered'). Lower grpo.learning_rate, keep grpo.max_grad_norm set, "
                    "or try model.attn_implementation: eager (sdpa with heavily left-padded prompts was seen "
                    "to give NaN gradients here); rerunning the same command resumes from the last checkpoint.")


class RunRecorder(TrainerCallback):
    def __init__(
        self,
        output_dir: str | Path,
        reward_set: Any,
        *,
        is_main: bool,
        trackers: Any = None,
        samples_per_log: int = 4,
    ):
        self.output_dir = Path(output_dir)
        self.reward_set = reward_set
        self.reward_names = [r.name for r in reward_set.rewards]
        self.is_main = is_main
        self.trackers = trackers  # a grpo_host.tracking.TrackerSet (it isolates failures)
        self.samples_per_log = samples_per_log
        self.metric_sources: list[Callable[[], dict[str, Any]]] = []
        # Like metric_sources, but handed the record built so far (reward health reads it).
        self.record_sources: list[Callable[[dict[str, Any]], dict[str, Any]]] = []
        self._seen_batches = 0
        self._start = time.monotonic()
        self._last_step_logged = -1
        self.records_written = 0

    # -- trainer events ------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, **kwargs):
        self._start = time.monotonic()
        self._seen_batches = len(self.reward_set.step_log)
        if self.is_main:
            emit_progress("start", step=state.global_step, max_steps=state.max_steps, rewards=self.reward_names)

    def on_log(self, args, state, control, logs=None, **kwargs):
        logs = dict(logs or {})
        is_eval = any(k.startswith("eval_") for k in logs)
        is_train_step = "reward" in logs
        counts = self._outcome_counts() if (is_train_step and not is_eval) else {}
        if not self.is_main:
            return
        if not (is_train_step or is_eval):
            return  # the trainer's closing summary (train_runtime, ...): not a step
        record: dict[str, Any] = {"step": state.global_step}
        record.update({k: _clean(v) for k, v in logs.items() if isinstance(v, (int, float, str, type(None)))})
        record.update(counts)
        for source in [*self.metric_sources, *self.record_sources]:
            try:
                record.update((source(record) if source in self.record_sources else source()) or {})
            except Exception as exc:  # noqa: BLE001 - a metric source must not stop training
                record.setdefault("metric_source_errors", []).append(f"{type(exc).__name__}: {exc}")
        record["elapsed"] = round(time.monotonic() - self._start, 3)
        record = redact(record)  # a metric source's error text may quote a secret
        name = EVAL_METRICS_FILE if is_eval else METRICS_FILE
        with open(self.output_dir / name, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record, default=_num) + "\n")
        if is_eval:
            return
        self.records_written += 1
        self._write_samples(state.global_step)
        if self.trackers:
            self.trackers.log_metrics(state.global_step, record)
        emit_progress(
            "log",
            step=state.global_step,
            max_steps=state.max_steps,
            reward=record.get("reward"),
            rewards={n: record.get(f"rewards/{n}/mean") for n in self.reward_names},
            step_time=record.get("step_time"),
            bad={n: counts.get(f"rewards/{n}/error", 0) + counts.get(f"rewards/{n}/timeout", 0)
                 for n in self.reward_names},
        )
        if os.environ.get("GRPO_HOST_PROGRESS") != "1":
            parts = ", ".join(f"{n} {_fmt(record.get(f'rewards/{n}/mean'))}" for n in self.reward_names)
            print(f"step {state.global_step}/{state.max_steps}  reward {_fmt(record.get('reward'))} ({parts})  "
                  f"{_fmt(record.get('step_time'))} s/step", flush=True)

    # -- helpers -------------------------------------------------------------------------------
    def _outcome_counts(self) -> dict[str, float]:
        """Outcome counts of every batch scored since the last log, summed over all processes, and
        the wait on scoring (``rewards/score_seconds``)."""
        batches = self.reward_set.step_log[self._seen_batches :]
        self._seen_batches = len(self.reward_set.step_log)
        local = {f"rewards/{n}/{o}": 0 for n in self.reward_names for o in OUTCOMES}
        for batch in batches:
            for key in local:
                local[key] += int(batch.get(key, 0))
        # Wall time the trainer waited on reward scoring since the last log (the slowest process).
        wait = round(sum(float(b.get("rewards/score_seconds", 0.0)) for b in batches), 4)
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
            gathered: list[Any] = [None] * dist.get_world_size()
            dist.all_gather_object(gathered, (local, wait))
            local = {k: sum(g[0][k] for g in gathered) for k in local}
            wait = max(g[1] for g in gathered)
        return {**local, "rewards/score_seconds": wait}

    def _write_samples(self, step: int) -> None:
        if self.samples_per_log <= 0:
            return
        samples = list(getattr(self.reward_set, "last_samples", []) or [])
        batch = getattr(self.reward_set, "_batch", {}) or {}
        if not samples or step == self._last_step_logged:
            return
        self._last_step_logged = step
        # Spread the picks over the batch: different prompts, not one group's near-copies.
        stride = max(1, len(samples) // self.samples_per_log)
        rows = []
        for index in list(range(0, len(samples), stride))[: self.samples_per_log]:
            sample = samples[index]
            row = {"step": step, "prompt": _prompt_text(sample.get("prompt")), "completion": sample.get("completion", "")}
            for column in ("answer", "solution", "target"):
                if column in sample:
                    row[column] = sample[column]
            row["rewards"] = {}
            for name, results in batch.items():
                if index < len(results):
                    result = results[index]
                    row["rewards"][name] = {"score": result.score, "outcome": result.outcome,
                                            "details": result.details}
            rows.append(row)
        with open(self.output_dir / SAMPLES_FILE, "a", encoding="utf-8") as handle:
            for row in rows:  # a reward's error details may quote a secret of its environment
                handle.write(json.dumps(redact(json.loads(json.dumps(row, default=str)))) + "\n")


def _prompt_text(prompt: Any) -> str:
    if isinstance(prompt, list):
        return "\n".join(f"[{m.get('role', '?')}] {m.get('content', '')}" for m in prompt if isinstance(m, dict))
    return "" if prompt is None else str(prompt)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    try:
        return f"{float(value):.3f}"
    except (TypeError, ValueError):
        return str(value)


class BeforeAfterProbe(TrainerCallback):
    """Greedy completions of a few fixed prompts when GRPO starts and when it ends, scored by the
    run's rewards (``comparison.jsonl``): the same prompts before and after, which the per-step
    samples (different prompts every step, sampled) cannot show.

    Runs on a single process only: with several, a sharded model would need every rank to join
    each forward, and the per-step samples still cover the run.
    """

    def __init__(self, output_dir: str | Path, reward_set: Any, dataset: Any, tokenizer: Any, *,
                 is_main: bool, world_size: int, max_new_tokens: int, prompts: int = 4):
        self.output_dir = Path(output_dir)
        self.reward_set = reward_set
        self.tokenizer = tokenizer
        self.max_new_tokens = int(max_new_tokens)
        self.enabled = is_main and world_size == 1 and prompts > 0 and len(dataset) > 0
        self.rows: list[dict[str, Any]] = []
        if self.enabled:
            count = min(prompts, len(dataset))
            # Spread over the data set: not the first rows, which a file may sort by topic.
            self.rows = [dict(dataset[i * len(dataset) // count]) for i in range(count)]

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not self.enabled or model is None:
            return
        path = self.output_dir / COMPARISON_FILE
        if state.global_step > 0 and any(r.get("when") == "before" for r in _read_rows(path)):
            return  # resumed: the first start's "before" stands
        path.unlink(missing_ok=True)
        self._probe(model, "before", state.global_step)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        if self.enabled and model is not None:
            self._probe(model, "after", state.global_step)

    def _probe(self, model: Any, when: str, step: int) -> None:
        import torch

        from grpo_host.rewards.runtime import prepare_samples

        texts = [
            self.tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
            if isinstance(r["prompt"], list) else str(r["prompt"])
            for r in self.rows
        ]
        side = self.tokenizer.padding_side
        self.tokenizer.padding_side = "left"  # generation continues from the last token of each row
        try:
            encoded = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        finally:
            self.tokenizer.padding_side = side
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                out = model.generate(**encoded.to(device), do_sample=False, max_new_tokens=self.max_new_tokens,
                                     pad_token_id=self.tokenizer.pad_token_id)
        finally:
            model.train(was_training)
        completions = self.tokenizer.batch_decode(out[:, encoded["input_ids"].shape[1]:], skip_special_tokens=True)
        columns = {k: [r.get(k) for r in self.rows] for k in self.rows[0] if k != "prompt"}
        columns["prompt"] = [r["prompt"] for r in self.rows]
        scored = self.reward_set.runtime.score(prepare_samples(completions, columns))
        weights = {r.name: r.weight for r in self.reward_set.rewards}
        with open(self.output_dir / COMPARISON_FILE, "a", encoding="utf-8") as handle:
            for index, (row, completion) in enumerate(zip(self.rows, completions, strict=True)):
                rewards = {name: {"score": results[index].score, "outcome": results[index].outcome}
                           for name, results in scored.items()}
                total = sum(weights.get(n, 1.0) * (r["score"] or 0.0) for n, r in rewards.items() if r["outcome"] == "ok")
                record = {"when": when, "step": step, "index": index, "prompt": _prompt_text(row["prompt"]),
                          "completion": completion, "reward": total, "rewards": rewards}
                record.update({c: row[c] for c in ("answer", "solution", "target") if c in row})
                handle.write(json.dumps(record, default=str) + "\n")


def _read_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
