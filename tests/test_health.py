"""Reward health: each warning fires on rewards built to trip it, and stays quiet on healthy ones."""

from __future__ import annotations

import logging
import random

import pytest

from grpo_host.observability.health import HealthThresholds, RewardHealth, analyse, group_metrics
from grpo_host.rewards.runtime import SampleResult
from grpo_host.rewards.trl_adapter import batch_metrics

G = 8  # completions per prompt
PROMPTS = 4


def scored(values):
    """Per-sample results from floats, None (not applicable), "error" and "timeout"."""
    out = []
    for v in values:
        if v is None:
            out.append(SampleResult("not_applicable", None))
        elif isinstance(v, str):
            out.append(SampleResult(v, None))
        else:
            out.append(SampleResult("ok", float(v)))
    return out


def record(step, batch, ranges=None):
    """A metrics.jsonl row the way the training callback builds it."""
    batch = {name: scored(values) for name, values in batch.items()}
    return {"step": step, **batch_metrics(batch), **group_metrics(batch, G, ranges)}


def run(make_batch, steps=30, ranges=None, thresholds=None):
    monitor = RewardHealth(score_ranges=ranges, thresholds=thresholds)
    rows = []
    for step in range(1, steps + 1):
        row = record(step, make_batch(step), ranges)
        rows.append(row)
        monitor.observe(step, row)
    return monitor, rows


def kinds(warnings):
    return sorted((w.kind, w.rewards) for w in warnings)


def healthy(step, rng=None):
    """Two rewards that vary within groups and both improve: nothing to warn about."""
    rng = rng or random.Random(step)
    p = min(0.2 + step * 0.02, 0.8)
    accuracy = [float(rng.random() < p) for _ in range(G * PROMPTS)]
    fmt = [round(min(1.0, rng.random() * 0.6 + step * 0.01), 3) for _ in range(G * PROMPTS)]
    return {"accuracy": accuracy, "format": fmt}


RANGES = {"accuracy": (0.0, 1.0), "format": (0.0, 1.0)}


def test_healthy_rewards_raise_nothing():
    monitor, rows = run(healthy, steps=40, ranges=RANGES)
    assert monitor.warnings == []
    assert monitor.metrics()["health/warnings"] == 0
    assert analyse(rows, score_ranges=RANGES) == []
    # The window's figures are there for the curves.
    assert 0 <= monitor.metrics()["health/accuracy/frac_zero_std"] < 0.5


def test_constant_within_groups_fires():
    def batch(step):
        b = healthy(step)
        # Each prompt's group agrees with itself (all right or all wrong): no advantage signal.
        b["accuracy"] = [float(p % 2) for p in range(PROMPTS) for _ in range(G)]
        return b

    monitor, _ = run(batch, ranges=RANGES)
    assert kinds(monitor.active) == [("constant", ("accuracy",))]
    w = monitor.active[0]
    assert w.value == pytest.approx(1.0) and "GRPO learns nothing" in w.message
    assert w.first_step == HealthThresholds().min_steps
    assert monitor.metrics()["health/warnings"] == 1


def test_constant_from_step_std_alone_without_group_figures():
    # An older metrics.jsonl has no frac_zero_std: a batch std of 0 still tells.
    rows = [
        {"step": s, "rewards/len/mean": 0.5, "rewards/len/std": 0.0, "rewards/len/ok": 32} for s in range(1, 11)
    ]
    assert kinds(analyse(rows)) == [("constant", ("len",))]


def test_saturated_at_declared_maximum_fires():
    def batch(step):
        b = healthy(step)
        b["format"] = [1.0] * (G * PROMPTS - 2) + [0.5, 0.0]  # nearly everyone at the top
        return b

    monitor, _ = run(batch, ranges=RANGES)
    assert ("saturated", ("format",)) in kinds(monitor.active)
    assert ("constant", ("format",)) not in kinds(monitor.active)  # the last group varies: 3 of 4 < 0.8
    assert not any(w.rewards == ("accuracy",) for w in monitor.warnings)


def test_saturated_without_declared_range_uses_the_highest_score_seen():
    def batch(step):
        if step <= 5:
            return {"x": [float(i % 2) for i in range(G * PROMPTS)]}  # 0s and 1s: it has a top, 1
        return {"x": [1.0] * (G * PROMPTS)}

    monitor, _ = run(batch, steps=30)
    assert ("saturated", ("x",)) in kinds(monitor.active)


def test_mostly_not_applicable_fires():
    def batch(step):
        b = healthy(step)
        b["format"] = [None if i % 10 < 6 else 0.5 + (i % 3) / 10 for i in range(G * PROMPTS)]
        return b

    monitor, _ = run(batch, ranges=RANGES)
    assert kinds(monitor.active) == [("not_applicable", ("format",))]
    assert monitor.metrics()["health/format/not_applicable_share"] >= 0.5


def test_errors_and_timeouts_fire_failing():
    def batch(step):
        b = healthy(step)
        values = list(b["accuracy"])
        values[0], values[9], values[17] = "error", "timeout", "error"  # ~9% of samples
        b["accuracy"] = values
        return b

    monitor, _ = run(batch, ranges=RANGES)
    assert kinds(monitor.active) == [("failing", ("accuracy",))]
    assert "errors" in monitor.active[0].message and "timeouts" in monitor.active[0].message


def test_one_error_in_a_while_is_not_failing():
    def batch(step):
        b = healthy(step)
        if step % 10 == 0:
            b["accuracy"] = ["error"] + list(b["accuracy"][1:])
        return b

    monitor, _ = run(batch, ranges=RANGES)
    assert monitor.warnings == []


def opposed_batch(step, rng=None):
    """'length' climbs while 'accuracy' falls: the policy pads at the cost of being right."""
    rng = rng or random.Random(1000 + step)
    p = max(0.8 - step * 0.02, 0.1)
    accuracy = [float(rng.random() < p) for _ in range(G * PROMPTS)]
    length = [min(1.0, max(0.0, 0.2 + step * 0.02 + rng.gauss(0, 0.1))) for _ in range(G * PROMPTS)]
    return {"accuracy": accuracy, "length": length}


def test_opposed_rewards_fire_and_name_the_gamed_one():
    ranges = {"accuracy": (0.0, 1.0), "length": (0.0, 1.0)}
    monitor, rows = run(opposed_batch, steps=30, ranges=ranges)
    assert kinds(monitor.active) == [("opposed", ("accuracy", "length"))]
    message = monitor.active[0].message
    assert "'length' rose" in message and "'accuracy' fell" in message
    assert monitor.active[0].value <= -0.7
    # Replaying the records gives the same verdict, for `grpo-host report`.
    assert kinds(analyse(rows, score_ranges=ranges)) == [("opposed", ("accuracy", "length"))]


def test_rewards_rising_together_are_not_opposed():
    monitor, _ = run(healthy, steps=30, ranges=RANGES)
    assert monitor.metrics()["health/accuracy_vs_format/corr"] > 0
    assert not [w for w in monitor.warnings if w.kind == "opposed"]


def test_noisy_flat_rewards_are_not_opposed():
    def batch(step):
        rng = random.Random(step)
        return {
            "a": [float(rng.random() < 0.5) for _ in range(G * PROMPTS)],
            "b": [rng.random() for _ in range(G * PROMPTS)],
        }

    monitor, _ = run(batch, steps=40, ranges={"a": (0, 1), "b": (0, 1)})
    assert monitor.warnings == []


def test_no_verdict_before_min_steps_and_warning_logged_once(caplog):
    def batch(step):
        return {"x": [0.0] * (G * PROMPTS)}

    with caplog.at_level(logging.INFO, logger="grpo_host.observability.health"):
        monitor = RewardHealth(score_ranges={"x": (0, 1)})
        fired_at = []
        for step in range(1, 16):
            if monitor.observe(step, record(step, batch(step), {"x": (0, 1)})):
                fired_at.append(step)
    assert fired_at == [5]
    logged = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(logged) == 1 and "step 5" in logged[0].getMessage()


def test_warning_clears_and_reopens():
    def batch(step):
        if 8 <= step <= 30:  # varied for long enough to flush the window
            return healthy(step)
        return {"accuracy": [0.0] * (G * PROMPTS), "format": healthy(step)["format"]}

    monitor, _ = run(batch, steps=50, ranges=RANGES)
    constant = [w for w in monitor.warnings if w.kind == "constant"]
    assert len(constant) == 1  # one warning, reopened rather than duplicated
    assert constant[0].first_step == 5 and constant[0].active and constant[0].last_step == 50


def test_group_metrics_reads_groups_in_order_and_skips_non_ok():
    batch = {
        "r": scored([1, 1, 1, 1] + [0, 1, 0, 1] + [None, "error", 2, None]),
    }
    m = group_metrics(batch, 4, {"r": (0, 2)})
    # group 3 has one ok score: not judged. Group 1 is constant, group 2 is not.
    assert m["rewards/r/frac_zero_std"] == 0.5
    assert m["rewards/r/frac_at_max"] == pytest.approx(1 / 9)
    assert (m["rewards/r/min"], m["rewards/r/max"]) == (0.0, 2.0)
    # Plain floats (None for anything not ok) work too.
    assert group_metrics({"r": [0.5, 0.5, 0.6, 0.7, None, 0.1]}, 2)["rewards/r/frac_zero_std"] == 0.5


def test_report_lists_the_warnings_and_says_so_when_there_are_none():
    pytest.importorskip("matplotlib")
    from grpo_host.observability.report import ReportInput, build_report, section_health

    ranges = {"accuracy": (0.0, 1.0), "length": (0.0, 1.0)}
    _, rows = run(opposed_batch, steps=30, ranges=ranges)
    page = build_report(rows)
    assert "<h2>Reward health</h2>" in page and "opposed" in page and "gaming" in page
    _, rows = run(healthy, steps=30, ranges=RANGES)
    assert "No warnings" in section_health(ReportInput(rows))


def test_grpo_host_report_rebuilds_the_report_from_metrics_jsonl(tmp_path):
    pytest.importorskip("matplotlib")
    import json

    from .conftest import run_cli

    ranges = {"accuracy": (0.0, 1.0), "length": (0.0, 1.0)}
    _, rows = run(opposed_batch, steps=30, ranges=ranges)
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps({**r, "reward": 0.5}) + "\n" for r in rows))
    result = run_cli("report", str(tmp_path), "--json")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["steps"] == 30 and [w["kind"] for w in out["health_warnings"]] == ["opposed"]
    assert "opposed" in (tmp_path / "report.html").read_text() and (tmp_path / "reward_curves.png").is_file()
    missing = run_cli("report", str(tmp_path / "nope"))
    assert missing.returncode == 2 and "has no metrics.jsonl" in missing.stderr
