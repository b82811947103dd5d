"""Samples in, JSON results out: what the reward server and the exported files share.

A result is one sample's ``{"rewards": {name: {"score", "outcome", "seconds", "details"}},
"total": weighted sum of the ok scores or null}``, the form ``try-reward --json`` prints and the
server's ``/score`` returns. ``local_scorer`` keeps one runtime per process and reward list, so
an exported file called once per sample (verl's naive reward manager) starts its worker pool once.
"""

from __future__ import annotations

import atexit
import json
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from grpo_host.errors import GrpoHostError
from grpo_host.rewards.runtime import BoundReward, RewardRuntime, SampleResult, prepare_samples


def bind_rewards(items: Sequence[Any], manager: Any = None) -> list[BoundReward]:
    """Reward items (names, ``(name, params)``, or dicts as in a run config) bound and checked."""
    from grpo_host.rewards.trl_adapter import resolve_reward_item

    bound = [resolve_reward_item(item if isinstance(item, str) else _as_item(item), manager) for item in items]
    if not bound:
        raise GrpoHostError("name at least one reward")
    return bound


def _as_item(item: Any) -> Any:
    if isinstance(item, (list, tuple)) and len(item) == 2:  # JSON turns a tuple into a list
        return (item[0], dict(item[1] or {}))
    return item


def results_json(bound: Sequence[BoundReward], results: Mapping[str, Sequence[SampleResult]], count: int,
                 *, details: bool = True) -> list[dict[str, Any]]:
    from grpo_host.cli.rewards_cmd import total_score

    weights = {b.name: b.weight for b in bound}
    rows = []
    for i in range(count):
        per = {b.name: results[b.name][i] for b in bound}
        shown = {}
        for name, result in per.items():
            item = result.to_json()
            if not details:
                item.pop("details", None)
                if result.outcome in ("error", "timeout"):  # the reason stays: a failure must say why
                    item["error"] = result.details.get("error", "")
            shown[name] = item
        rows.append({"rewards": shown, "total": total_score(per, weights)})
    return rows


def check_samples(samples: Any) -> list[dict[str, Any]]:
    """The runtime's samples from a JSON list of ``{"completion": ..., <columns>}``, or a
    GrpoHostError saying which sample is wrong and how."""
    if not isinstance(samples, list):
        raise GrpoHostError(f"'samples' must be a list of objects, not {type(samples).__name__}")
    for i, sample in enumerate(samples):
        if not isinstance(sample, dict):
            raise GrpoHostError(f"samples[{i}] must be an object with a 'completion', not {type(sample).__name__}")
        if "completion" not in sample:
            raise GrpoHostError(f"samples[{i}] has no 'completion' (keys: {', '.join(sample) or 'none'})")
    keys = sorted({k for s in samples for k in s if k != "completion"})
    try:
        return prepare_samples([s["completion"] for s in samples], {k: [s.get(k) for s in samples] for k in keys})
    except TypeError as exc:
        raise GrpoHostError(f"samples: {exc}") from None


class LocalScorer:
    """Rewards scored in this process's own worker pool; thread-safe (one batch at a time)."""

    def __init__(self, items: Sequence[Any], workers: int | None = None):
        self.bound = bind_rewards(items)
        self.names = [b.name for b in self.bound]
        self.runtime = RewardRuntime(self.bound, workers=workers)
        self._lock = threading.Lock()

    def score_json(self, samples: list[dict[str, Any]], *, details: bool = True) -> list[dict[str, Any]]:
        prepared = check_samples(samples)
        with self._lock:
            results = self.runtime.score(prepared)
        return results_json(self.bound, results, len(prepared), details=details)

    def close(self) -> None:
        self.runtime.close()


_SCORERS: dict[str, LocalScorer] = {}
_SCORERS_LOCK = threading.Lock()


def local_scorer(items: Sequence[Any], workers: int | None = None) -> LocalScorer:
    key = json.dumps([list(items), workers], sort_keys=True, default=str)
    with _SCORERS_LOCK:
        if key not in _SCORERS:
            _SCORERS[key] = scorer = LocalScorer(items, workers)
            atexit.register(scorer.close)
        return _SCORERS[key]
