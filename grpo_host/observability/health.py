"""Reward health: warnings for rewards that cannot teach the policy anything, or are being gamed.

GRPO learns from differences between the completions of one prompt's group. A reward that
gives every completion of a group the same score contributes nothing; one that everybody
maxes out, that rarely applies, or that mostly fails is dead weight; and two rewards that move
in opposite directions usually mean the policy found a way to raise one at the other's cost.
No trainer says so. :class:`RewardHealth` reads the per-step reward records of a run (the
``rewards/<name>/...`` keys of ``metrics.jsonl``) over a sliding window and raises:

============== ============================================================= =================
kind           fires when, over the last ``window`` steps (default 20)        default threshold
============== ============================================================= =================
constant       mean share of groups whose scores are all equal                >= 0.80
               (``frac_zero_std``, TRL's idea, per reward)
saturated      mean share of scores at the reward's maximum                   >= 0.90
               (the declared ``score_range``, else the highest score seen)
not_applicable share of samples the reward returned None for                  >= 0.50
failing        share of samples that errored or timed out                     >= 0.05
               (the runtime stops the run at 0.10 by default; this warns first)
opposed        correlation of two rewards' step means <= -0.70 while one      corr <= -0.70,
               rose and the other fell, each by >= 10% of its scale            trend >= 0.10
============== ============================================================= =================

No verdict is given before ``min_steps`` steps (default 5) with data; ``opposed`` needs
``opposed_min_steps`` (default 10). A warning is logged when it first fires (again only after
a window's worth of steps), stays in the list when it clears, and reopens when it fires again.

Per-group figures come from :func:`group_metrics`, which the training callback runs on every
scored batch; records without them (an older ``metrics.jsonl``) fall back to what the step's
mean, std, min and max allow: a step whose std is 0 had every group constant.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

log = logging.getLogger(__name__)

OUTCOMES = ("ok", "not_applicable", "error", "timeout")
KINDS = ("constant", "saturated", "not_applicable", "failing", "opposed")
# Scores closer than this (relative to the reward's scale, at least 1) count as equal.
EQUAL_EPS = 1e-6


@dataclass(frozen=True)
class HealthThresholds:
    """When each warning fires; see the module docstring for what each means."""

    window: int = 20
    min_steps: int = 5
    constant_frac: float = 0.80
    saturated_frac: float = 0.90
    saturated_gap: float = 0.02  # without per-sample data: a step whose mean is this close to the top
    not_applicable_share: float = 0.50
    failing_share: float = 0.05
    opposed_corr: float = -0.70
    opposed_min_trend: float = 0.10  # change over the window, as a share of the reward's scale
    opposed_min_steps: int = 10


@dataclass
class HealthWarning:
    kind: str
    rewards: tuple[str, ...]
    message: str
    first_step: int
    last_step: int
    value: float
    active: bool = True

    @property
    def key(self) -> str:
        return f"{self.kind}:{'~'.join(self.rewards)}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rewards"] = list(self.rewards)
        return data


# -- per-group figures, from one scored batch ------------------------------------------------


def group_metrics(
    batch: Mapping[str, Sequence[Any]],
    group_size: int,
    score_ranges: Mapping[str, Sequence[float] | None] | None = None,
) -> dict[str, float]:
    """Per reward: ``frac_zero_std`` (share of groups with all scores equal), ``frac_at_max``
    (share of scores at the declared maximum), ``min`` and ``max`` of the ok scores.

    ``batch`` maps a reward's name to its per-sample results in batch order: objects with
    ``outcome`` and ``score`` (the runtime's ``SampleResult``), or plain floats with ``None``
    for anything but ok. Consecutive runs of ``group_size`` samples are one prompt's group, as
    TRL lays them out. Groups with fewer than two ok scores are left out of ``frac_zero_std``.
    """
    score_ranges = score_ranges or {}
    metrics: dict[str, float] = {}
    for name, rows in batch.items():
        scores = [_ok_score(r) for r in rows]
        ok = [s for s in scores if s is not None]
        prefix = f"rewards/{name}"
        if not ok:
            continue
        metrics[f"{prefix}/min"] = min(ok)
        metrics[f"{prefix}/max"] = max(ok)
        span = _span(score_ranges.get(name))
        eps = EQUAL_EPS * max(1.0, span or 0.0)
        if group_size >= 2 and len(scores) >= group_size:
            groups = [scores[i : i + group_size] for i in range(0, len(scores) - group_size + 1, group_size)]
            judged = [g for g in ([s for s in g if s is not None] for g in groups) if len(g) >= 2]
            if judged:
                metrics[f"{prefix}/frac_zero_std"] = sum(max(g) - min(g) <= eps for g in judged) / len(judged)
        top = _top(score_ranges.get(name))
        if top is not None:
            metrics[f"{prefix}/frac_at_max"] = sum(s >= top - eps for s in ok) / len(ok)
    return metrics


def _ok_score(row: Any) -> float | None:
    if row is None:
        return None
    if hasattr(row, "outcome"):
        return float(row.score) if row.outcome == "ok" and row.score is not None else None
    value = float(row)
    return value if math.isfinite(value) else None


def _span(score_range: Sequence[float] | None) -> float | None:
    if not score_range or len(score_range) != 2:
        return None
    lo, hi = score_range
    if lo is None or hi is None or not math.isfinite(lo) or not math.isfinite(hi) or hi <= lo:
        return None
    return float(hi) - float(lo)


def _top(score_range: Sequence[float] | None) -> float | None:
    return float(score_range[1]) if _span(score_range) is not None else None


# -- the monitor -----------------------------------------------------------------------------


class RewardHealth:
    """Feed it each logged step's record; it keeps the window and the warnings."""

    def __init__(
        self,
        rewards: Iterable[str] | None = None,
        *,
        score_ranges: Mapping[str, Sequence[float] | None] | None = None,
        thresholds: HealthThresholds | None = None,
        logger: logging.Logger | None = None,
    ):
        self.rewards: list[str] = list(rewards or [])
        self.score_ranges = {k: tuple(v) for k, v in (score_ranges or {}).items() if _span(v) is not None}
        self.t = thresholds or HealthThresholds()
        self.log = logger or log
        self._window: deque[tuple[int, Mapping[str, Any]]] = deque(maxlen=self.t.window)
        self._seen_lo: dict[str, float] = {}  # lowest score / step mean seen in the run, per reward
        self._seen_hi: dict[str, float] = {}
        self._warnings: dict[str, HealthWarning] = {}
        self._logged_at: dict[str, int] = {}
        self._stats: dict[str, float] = {}

    @property
    def warnings(self) -> list[HealthWarning]:
        """Every warning of the run so far, active or cleared, in the order they first fired."""
        return list(self._warnings.values())

    @property
    def active(self) -> list[HealthWarning]:
        return [w for w in self._warnings.values() if w.active]

    def observe(self, step: int, record: Mapping[str, Any]) -> list[HealthWarning]:
        """Take one logged step's record; return the warnings that fired at this step."""
        for name in _reward_names(record):
            if name not in self.rewards:
                self.rewards.append(name)
        self._window.append((step, record))
        for name in self.rewards:
            lows = [record.get(f"rewards/{name}/min"), record.get(f"rewards/{name}/mean")]
            highs = [record.get(f"rewards/{name}/max"), record.get(f"rewards/{name}/mean")]
            for v in lows:
                if _num(v) is not None:
                    self._seen_lo[name] = min(self._seen_lo.get(name, v), v)
            for v in highs:
                if _num(v) is not None:
                    self._seen_hi[name] = max(self._seen_hi.get(name, v), v)
        found = self._evaluate()
        fired: list[HealthWarning] = []
        for key, (kind, rewards, value, message) in found.items():
            warning = self._warnings.get(key)
            if warning is None:
                warning = self._warnings[key] = HealthWarning(kind, rewards, message, step, step, value)
                fired.append(warning)
            else:
                if not warning.active:
                    fired.append(warning)
                warning.active, warning.last_step, warning.value, warning.message = True, step, value, message
        for key, warning in self._warnings.items():
            if warning.active and key not in found:
                warning.active = False
                self.log.info("reward health: cleared at step %d: %s", step, warning.message)
        for warning in fired:
            last = self._logged_at.get(warning.key)
            if last is None or step - last >= self.t.window:
                self.log.warning("reward health (step %d): %s", step, warning.message)
                self._logged_at[warning.key] = step
        return fired

    def metrics(self) -> dict[str, float]:
        """The window's figures and the count of active warnings, for the step's metrics."""
        return {**self._stats, "health/warnings": float(len(self.active))}

    # -- checks ----------------------------------------------------------------------------
    def _evaluate(self) -> dict[str, tuple[str, tuple[str, ...], float, str]]:
        t, steps = self.t, list(self._window)
        found: dict[str, tuple[str, tuple[str, ...], float, str]] = {}
        self._stats = {}

        def add(kind: str, rewards: tuple[str, ...], value: float, message: str) -> None:
            found[f"{kind}:{'~'.join(rewards)}"] = (kind, rewards, value, message)

        for name in self.rewards:
            records = [r for _, r in steps if _num(r.get(f"rewards/{name}/mean")) is not None or _count(r, name) > 0]
            if not records:
                continue
            counts = {o: sum(_num(r.get(f"rewards/{name}/{o}")) or 0 for r in records) for o in OUTCOMES}
            total = sum(counts.values())
            if total:
                na = counts["not_applicable"] / total
                failing = (counts["error"] + counts["timeout"]) / total
                self._stats[f"health/{name}/not_applicable_share"] = round(na, 4)
                self._stats[f"health/{name}/failing_share"] = round(failing, 4)
            enough = len(records) >= t.min_steps
            if total and enough and na >= t.not_applicable_share:
                add("not_applicable", (name,), na,
                    f"reward {name!r} returned None (not applicable) for {na:.0%} of samples over the last "
                    f"{len(records)} steps: it barely takes part; check the data columns it needs or drop it")
            if total and enough and failing >= t.failing_share:
                add("failing", (name,), failing,
                    f"reward {name!r} failed on {failing:.0%} of samples over the last {len(records)} steps "
                    f"({counts['error']:.0f} errors, {counts['timeout']:.0f} timeouts): those samples carry no "
                    f"signal; fix the reward or raise its timeout")
            zero_std = [v for v in (self._zero_std(r, name) for r in records) if v is not None]
            if zero_std:
                frac = statistics.fmean(zero_std)
                self._stats[f"health/{name}/frac_zero_std"] = round(frac, 4)
                if len(zero_std) >= t.min_steps and frac >= t.constant_frac:
                    add("constant", (name,), frac,
                        f"reward {name!r} gave every completion of a group the same score for {frac:.0%} of "
                        f"prompts over the last {len(zero_std)} steps: GRPO learns nothing from it there "
                        f"(too hard, too easy, or too coarse a score)")
            at_max = [v for v in (self._at_max(r, name) for r in records) if v is not None]
            if at_max:
                frac = statistics.fmean(at_max)
                self._stats[f"health/{name}/frac_at_max"] = round(frac, 4)
                if len(at_max) >= t.min_steps and frac >= t.saturated_frac:
                    add("saturated", (name,), frac,
                        f"reward {name!r} is saturated: {frac:.0%} of scores at its maximum over the last "
                        f"{len(at_max)} steps; it no longer separates completions (lower its weight or "
                        f"make it harder)")
        for i, a in enumerate(self.rewards):
            for b in self.rewards[i + 1 :]:
                opposed = self._opposed(steps, a, b)
                if opposed is not None:
                    add("opposed", opposed[0], opposed[1], opposed[2])
        return found

    def _zero_std(self, record: Mapping[str, Any], name: str) -> float | None:
        value = _num(record.get(f"rewards/{name}/frac_zero_std"))
        if value is not None:
            return value
        std, ok = _num(record.get(f"rewards/{name}/std")), _num(record.get(f"rewards/{name}/ok"))
        if std is not None and ok is not None and ok >= 2 and std <= EQUAL_EPS * max(1.0, self._scale(name)):
            return 1.0  # the whole batch scored alike, so every group did
        return None  # groups unknown

    def _at_max(self, record: Mapping[str, Any], name: str) -> float | None:
        value = _num(record.get(f"rewards/{name}/frac_at_max"))
        if value is not None:
            return value
        mean = _num(record.get(f"rewards/{name}/mean"))
        if mean is None:
            return None
        if name in self.score_ranges:
            lo, hi = self.score_ranges[name]
        else:
            lo, hi = self._seen_lo.get(name), self._seen_hi.get(name)
            if lo is None or hi is None or hi - lo <= EQUAL_EPS:
                return None  # never varied: no idea where the top is
        return 1.0 if (hi - mean) / (hi - lo) <= self.t.saturated_gap else 0.0

    def _scale(self, name: str) -> float:
        if name in self.score_ranges:
            lo, hi = self.score_ranges[name]
            return hi - lo
        lo, hi = self._seen_lo.get(name), self._seen_hi.get(name)
        return (hi - lo) if lo is not None and hi is not None else 0.0

    def _opposed(self, steps, a: str, b: str):
        t = self.t
        pairs = [
            (_num(r.get(f"rewards/{a}/mean")), _num(r.get(f"rewards/{b}/mean"))) for _, r in steps
        ]
        pairs = [(x, y) for x, y in pairs if x is not None and y is not None]
        if len(pairs) < t.opposed_min_steps:
            return None
        xs, ys = [p[0] for p in pairs], [p[1] for p in pairs]
        corr = _correlation(xs, ys)
        if corr is None:
            return None
        self._stats[f"health/{a}_vs_{b}/corr"] = round(corr, 4)
        if corr > t.opposed_corr:
            return None
        trend_a, trend_b = _trend(xs), _trend(ys)
        scale_a, scale_b = self._scale(a), self._scale(b)
        if scale_a <= EQUAL_EPS or scale_b <= EQUAL_EPS:
            return None
        rel_a, rel_b = trend_a / scale_a, trend_b / scale_b
        if min(abs(rel_a), abs(rel_b)) < t.opposed_min_trend or rel_a * rel_b >= 0:
            return None
        (up, d_up), (down, d_down) = ((a, trend_a), (b, trend_b)) if rel_a > 0 else ((b, trend_b), (a, trend_a))
        message = (
            f"rewards {up!r} and {down!r} move in opposite directions: {up!r} rose by {d_up:+.3g} while "
            f"{down!r} fell by {d_down:+.3g} over the last {len(pairs)} steps (correlation {corr:.2f}); "
            f"the policy may be gaming {up!r} at {down!r}'s cost: look at sample completions"
        )
        return (a, b), corr, message


def analyse(
    records: Iterable[Mapping[str, Any]],
    *,
    score_ranges: Mapping[str, Sequence[float] | None] | None = None,
    thresholds: HealthThresholds | None = None,
) -> list[HealthWarning]:
    """Replay a run's records (``metrics.jsonl`` rows) and return every warning it raised."""
    quiet = logging.getLogger(f"{__name__}.replay")
    quiet.disabled = True
    monitor = RewardHealth(score_ranges=score_ranges, thresholds=thresholds, logger=quiet)
    for i, record in enumerate(records):
        if any(k.startswith("rewards/") for k in record):
            monitor.observe(int(record.get("step", i)), record)
    return monitor.warnings


# -- small numeric helpers -------------------------------------------------------------------


def _reward_names(record: Mapping[str, Any]) -> list[str]:
    names: list[str] = []
    for key in record:
        if key.startswith("rewards/") and key.count("/") >= 2:
            name = key[len("rewards/") : key.rindex("/")]
            if name not in names:
                names.append(name)
    return names


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _count(record: Mapping[str, Any], name: str) -> float:
    return sum(_num(record.get(f"rewards/{name}/{o}")) or 0 for o in OUTCOMES)


def _correlation(xs: Sequence[float], ys: Sequence[float]) -> float | None:
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sx = math.fsum((x - mx) ** 2 for x in xs)
    sy = math.fsum((y - my) ** 2 for y in ys)
    if sx <= 0 or sy <= 0:
        return None
    return math.fsum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / math.sqrt(sx * sy)


def _trend(values: Sequence[float]) -> float:
    """Change over the window along the least-squares line (robust to one noisy end point)."""
    n = len(values)
    if n < 2:
        return 0.0
    mx = (n - 1) / 2
    mv = statistics.fmean(values)
    slope = math.fsum((i - mx) * (v - mv) for i, v in enumerate(values)) / math.fsum((i - mx) ** 2 for i in range(n))
    return slope * (n - 1)


__all__ = ["HealthThresholds", "HealthWarning", "RewardHealth", "analyse", "group_metrics", "KINDS"]
