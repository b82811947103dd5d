"""Rewards in TRL's reward-function form: a :class:`RewardSet` of bound rewards.

TRL calls each reward function in turn with the same batch. The callables of one set (one
``grpo_host.load_rewards`` call) share a runtime: the first call of a batch scores it with every reward
of the set at once (in parallel, in the worker pool), and the others read their column. To TRL,
``error`` and ``timeout`` become ``None`` (left out of the advantage, as TRL does with NaN);
the runtime counts them, and the set stops the run with a clear message when a reward's share
of errors and timeouts passes the threshold.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from typing import Any

from grpo_host.errors import GrpoHostError, RewardHealthError
from grpo_host.rewards.binding import BoundReward
from grpo_host.rewards.runtime import RewardRuntime, SampleResult, prepare_samples

# What TRL passes besides dataset columns; never handed to a reward as a column.
TRL_EXTRAS = ("trainer_state", "log_extra", "log_metric", "environments", "completion_ids")


class RewardSet:
    """Rewards scored together, with counts and a health check across the run."""

    def __init__(
        self,
        rewards: Sequence[BoundReward],
        *,
        workers: int | None = None,
        memory_mb: int | None = None,
        error_threshold: float = 0.10,
        min_samples: int = 32,
        executor: str = "local",
        executor_options: Mapping[str, Any] | None = None,
    ):
        self.executor, self.executor_options = executor, dict(executor_options or {})
        check_executor(executor, self.executor_options)
        self.rewards = list(rewards)
        self.workers, self.memory_mb = workers, memory_mb
        self.error_threshold, self.min_samples = error_threshold, min_samples
        self._runtime: RewardRuntime | None = None
        self._batch_key: tuple[int, int, int] | None = None
        self._batch: dict[str, list[SampleResult]] = {}
        self.step_log: list[dict[str, Any]] = []  # one entry per scored batch
        self.last_samples: list[dict[str, Any]] = []

    @property
    def runtime(self) -> RewardRuntime:
        if self._runtime is None:
            self._runtime = RewardRuntime(
                self.rewards,
                workers=self.workers,
                memory_mb=self.memory_mb,
                executor=self.executor,
                executor_options=self.executor_options,
            )
        return self._runtime

    @property
    def weights(self) -> list[float]:
        """Pass as ``GRPOConfig(reward_weights=...)``: TRL applies the weights itself."""
        return [r.weight for r in self.rewards]

    def callables(self) -> list[TRLReward]:
        return [TRLReward(self, r.name) for r in self.rewards]

    def provenance(self) -> list[dict[str, Any]]:
        return [r.provenance() for r in self.rewards]

    def results_for(
        self,
        completions: Sequence[Any],
        prompts: Sequence[Any] | None,
        columns: Mapping[str, Any],
        completion_ids: Sequence[Sequence[int]] | None = None,
    ) -> dict[str, list[SampleResult]]:
        key = (id(completions), id(prompts), len(completions))
        if key != self._batch_key:
            cols = {k: v for k, v in columns.items() if k not in TRL_EXTRAS and isinstance(v, (list, tuple))}
            if prompts is not None:
                cols["prompt"] = list(prompts)
            # Token ids travel to the workers only when a reward asks for them (exact token counts).
            if completion_ids is not None and any("completion_ids" in r.spec.wants for r in self.rewards):
                cols["completion_ids"] = [[int(t) for t in ids] for ids in completion_ids]
            samples = prepare_samples(completions, cols)
            started = time.perf_counter()
            self._batch = self.runtime.score(samples)
            scored = time.perf_counter() - started
            self._batch_key = key
            self._anchor = (completions, prompts)  # keep ids valid while the key is in use
            self.last_samples = samples
            # The wall time of scoring the batch (every reward, the pool in parallel): the time the
            # trainer waits on rewards, which the per-reward `seconds` (summed per sample) are not.
            self.step_log.append({**batch_metrics(self._batch), "rewards/score_seconds": scored})
            self.check_health()
        return self._batch

    def check_health(self) -> None:
        for reward in self.rewards:
            totals = self.runtime.totals[reward.name]
            seen = sum(totals.values())
            bad = totals["error"] + totals["timeout"]
            if seen >= self.min_samples and bad / seen > self.error_threshold:
                examples = [
                    f"  - {r.outcome}: {r.details.get('error', '')} | completion: {s['completion'][:80]!r}"
                    for r, s in zip(self._batch[reward.name], self.last_samples, strict=False)
                    if r.outcome in ("error", "timeout")
                ][:3]
                raise RewardHealthError(
                    f"reward {reward.name!r} failed on {bad} of {seen} samples "
                    f"({totals['error']} errors, {totals['timeout']} timeouts), over the "
                    f"{self.error_threshold:.0%} threshold; stopping the run. Examples:\n" + "\n".join(examples)
                    + "\nFix the reward, raise its timeout, or raise rewards_error_threshold."
                )

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    def __getstate__(self) -> dict[str, Any]:  # picklable: the pool is rebuilt where it lands
        state = dict(self.__dict__)
        state.update(_runtime=None, _batch_key=None, _batch={}, _anchor=None, last_samples=[])
        return state


class TRLReward:
    """One reward of a set, callable the way TRL calls reward functions.

    Always a sync callable, async rewards included: TRL calls sync reward functions in turn and
    gathers ``async def`` ones on its own daemon event loop afterwards; the first of a set's
    callables scores the batch with every reward (async ones awaited concurrently in the
    workers), so nothing of ours runs on TRL's loop and the waits still overlap.
    """

    def __init__(self, reward_set: RewardSet, name: str):
        self.reward_set = reward_set
        self.__name__ = name
        self.weight = next(r.weight for r in reward_set.rewards if r.name == name)

    def __call__(
        self,
        prompts: Sequence[Any] | None = None,
        completions: Sequence[Any] | None = None,
        completion_ids: Sequence[Sequence[int]] | None = None,
        **kwargs: Any,
    ) -> list[float | None]:
        if completions is None:
            raise TypeError(f"reward {self.__name__!r} called without completions")
        results = self.reward_set.results_for(completions, prompts, kwargs, completion_ids)[self.__name__]
        return [r.score if r.outcome == "ok" else None for r in results]

    def __repr__(self) -> str:
        return f"<grpo-host reward {self.__name__}>"


def check_executor(executor: str, options: Mapping[str, Any]) -> None:
    """A clear error now, not at the first batch: an unknown executor or option, Ray missing,
    a Ray address that does not answer."""
    from grpo_host.rewards.runtime import EXECUTORS

    if executor not in EXECUTORS:
        raise GrpoHostError(f"unknown reward executor {executor!r}; choose one of: {', '.join(EXECUTORS)}")
    if executor == "ray":
        from grpo_host.rewards.ray_executor import check_options

        check_options(options)
    elif options:
        raise GrpoHostError(f"{', '.join(options)}: only the ray executor takes these options")


def batch_metrics(batch: Mapping[str, Sequence[SampleResult]]) -> dict[str, Any]:
    """Per reward: mean/std of ok scores, counts per outcome, seconds spent."""
    metrics: dict[str, Any] = {}
    for name, rows in batch.items():
        scores = [r.score for r in rows if r.outcome == "ok" and r.score is not None]
        prefix = f"rewards/{name}"
        if scores:
            metrics[f"{prefix}/mean"] = statistics.fmean(scores)
            metrics[f"{prefix}/std"] = statistics.pstdev(scores) if len(scores) > 1 else 0.0
        for outcome in ("ok", "not_applicable", "error", "timeout"):
            metrics[f"{prefix}/{outcome}"] = sum(r.outcome == outcome for r in rows)
        metrics[f"{prefix}/seconds"] = sum(r.seconds for r in rows)
    return metrics
