"""TrainerCallbacks that add GPU readings and reward health to every step's record.

Both run on the main process only and feed :class:`~grpo_host.training.callbacks.RunRecorder`,
so what they measure lands in ``metrics.jsonl``, the trackers and the report with the rest of
the step: ``GpuMetricsCallback`` samples the GPUs in a background thread
(:mod:`grpo_host.observability.gpu`); ``RewardHealthCallback`` computes per-group figures of every
batch the rewards scored (share of groups with all-equal scores, share at the maximum) and
runs :class:`~grpo_host.observability.health.RewardHealth` on each finished record. They live beside the
recorder rather than in it so that each stays small; :func:`observability_callbacks` wires
them in.

The per-group figures come from the main process's own batches: exact on one process, a
sample of the groups when several processes train (each process scores its share of the
groups; a group split across two processes is left out when its slice is not whole).
"""

from __future__ import annotations

import os
from typing import Any

from transformers import TrainerCallback

from grpo_host.observability.gpu import GpuSampler
from grpo_host.observability.health import HealthThresholds, RewardHealth, group_metrics

GPU_INTERVAL_ENV = "GRPO_HOST_GPU_SAMPLE_INTERVAL"  # seconds between GPU readings (default 1)


class GpuMetricsCallback(TrainerCallback):
    """GPU utilization, memory, power and temperature per logged step (mean and max)."""

    def __init__(self, sampler: GpuSampler | None = None):
        self.sampler = sampler or GpuSampler(float(os.environ.get(GPU_INTERVAL_ENV) or 1.0))

    def on_train_begin(self, args, state, control, **kwargs):
        self.sampler.start()

    def on_train_end(self, args, state, control, **kwargs):
        self.sampler.stop()

    def metrics(self) -> dict[str, float]:
        """A RunRecorder metric source: the readings since the last logged step."""
        return self.sampler.summary()


class RewardHealthCallback(TrainerCallback):
    """Per-group reward figures of each scored batch, and reward-health warnings per step."""

    def __init__(self, reward_set: Any, thresholds: HealthThresholds | None = None):
        self.reward_set = reward_set
        self.score_ranges = {r.name: r.spec.score_range for r in reward_set.rewards if r.spec.score_range}
        self.monitor = RewardHealth([r.name for r in reward_set.rewards], score_ranges=self.score_ranges,
                                    thresholds=thresholds)
        self._last_batch: Any = None
        self._pending: list[dict[str, float]] = []

    # A new batch is scored inside a training (micro-)step; look after each one.
    def on_substep_end(self, args, state, control, **kwargs):
        self._collect(args)

    def on_step_end(self, args, state, control, **kwargs):
        self._collect(args)

    def _collect(self, args: Any) -> None:
        batch = getattr(self.reward_set, "_batch", None)
        if not batch or batch is self._last_batch:
            return
        self._last_batch = batch
        group_size = int(getattr(args, "num_generations", 0) or 0)
        self._pending.append(group_metrics(batch, group_size, self.score_ranges))

    def metrics(self, record: dict[str, Any]) -> dict[str, Any]:
        """A RunRecorder record source: group figures and health for the record built so far."""
        if any(key.startswith("eval_") for key in record):
            return {}  # an evaluation record: health follows the training steps
        merged = _merge(self._pending)
        self._pending = []
        self.monitor.observe(int(record.get("step", 0)), {**record, **merged})
        out: dict[str, Any] = {**merged, **self.monitor.metrics()}
        active = self.monitor.active
        if active:
            out["health/active"] = "; ".join(w.key for w in active)
        return out


def _merge(batches: list[dict[str, float]]) -> dict[str, float]:
    """Figures of several batches as one: shares averaged, min of mins, max of maxes."""
    values: dict[str, list[float]] = {}
    for batch in batches:
        for key, value in batch.items():
            values.setdefault(key, []).append(value)
    merged = {}
    for key, items in values.items():
        if key.endswith("/min"):
            merged[key] = min(items)
        elif key.endswith("/max"):
            merged[key] = max(items)
        else:
            merged[key] = round(sum(items) / len(items), 4)
    return merged


def observability_callbacks(recorder: Any, reward_set: Any, *, is_main: bool) -> list[TrainerCallback]:
    """GPU metrics and reward health, wired into ``recorder``'s records; nothing off the main process."""
    if not is_main:
        return []
    gpu = GpuMetricsCallback()
    health = RewardHealthCallback(reward_set)
    recorder.metric_sources.append(gpu.metrics)
    recorder.record_sources.append(health.metrics)
    return [gpu, health]
