"""The run report: one offline HTML file and the reward curves as a PNG.

``build_report(records, samples, provenance, summary, comparison=...)`` is a pure function over
what a run wrote (``metrics.jsonl`` records, ``samples.jsonl`` rows, ``reward_provenance.json``,
``run.json``, ``comparison.jsonl``: the same prompts before and after GRPO) and returns the
HTML; ``write_report(output_dir)`` reads those files and writes ``report.html`` and
``reward_curves.png``. The page leads with what the run changed: each reward's mean over the
first and the last fifth of the steps, the per-reward curves, and the same prompts'
completions side by side. The page is a list of sections, each built by one
function of ``SECTION_BUILDERS`` that takes a ``ReportInput`` and returns HTML or None: add a
builder (reward-health warnings, GPU charts) to extend the report. Charts are PNGs drawn with
matplotlib and inlined as base64, so the file opens anywhere with no network.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTCOME_COLORS = {"ok": "#4c9a2a", "not_applicable": "#9e9e9e", "error": "#d32f2f", "timeout": "#f57c00"}
REPORT_FILE = "report.html"
CURVES_FILE = "reward_curves.png"


@dataclass
class ReportInput:
    records: list[dict[str, Any]]
    samples: list[dict[str, Any]] = field(default_factory=list)
    provenance: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    comparison: list[dict[str, Any]] = field(default_factory=list)

    @property
    def reward_names(self) -> list[str]:
        return reward_names(self.records, self.provenance)


# -- reading -------------------------------------------------------------------------------------
def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue  # a line cut short by a hard kill
    return rows


def reward_names(records: Sequence[Mapping[str, Any]], provenance: Sequence[Mapping[str, Any]] = ()) -> list[str]:
    names = [p["name"] for p in provenance if "name" in p]
    for record in records:
        for key in record:
            if key.startswith("rewards/") and key.endswith("/mean"):
                name = key[len("rewards/") : -len("/mean")]
                if name not in names:
                    names.append(name)
    return names


def series(records: Sequence[Mapping[str, Any]], key: str) -> tuple[list[int], list[float]]:
    steps: list[int] = []
    values: list[float] = []
    for record in records:
        value = record.get(key)
        if isinstance(value, (int, float)) and math.isfinite(value):
            steps.append(int(record.get("step", len(steps))))
            values.append(float(value))
    return steps, values


def reward_rise(records: Sequence[Mapping[str, Any]], key: str = "reward") -> dict[str, Any] | None:
    """Mean of ``key`` over the first fifth of logged steps and over the last fifth."""
    _, values = series(records, key)
    if len(values) < 5:
        return None
    fifth = max(1, len(values) // 5)
    first, last = statistics.fmean(values[:fifth]), statistics.fmean(values[-fifth:])
    return {"first_fifth": first, "last_fifth": last, "rise": last - first, "logged_steps": len(values)}


def reward_rises(records: Sequence[Mapping[str, Any]], names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``reward_rise`` of the total (key ``reward``) and of each reward's mean, where logged."""
    keys = {"reward": "reward", **{name: f"rewards/{name}/mean" for name in names}}
    return {label: rise for label, key in keys.items() if (rise := reward_rise(records, key)) is not None}


def before_after(comparison: Sequence[Mapping[str, Any]]) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """``(before, after)`` per probed prompt of ``comparison.jsonl``, in the probe's order."""
    before = {r.get("index"): dict(r) for r in comparison if r.get("when") == "before"}
    after = {r.get("index"): dict(r) for r in comparison if r.get("when") == "after"}
    return [(before[i], after.get(i)) for i in sorted(before, key=lambda i: (i is None, i))]


# -- charts --------------------------------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _smooth(values: Sequence[float], window: int) -> list[float]:
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def curves_figure(data: ReportInput):
    plt = _pyplot()
    keys = [("reward", "total reward (weighted)")] + [(f"rewards/{n}/mean", n) for n in data.reward_names]
    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.9 * rows), squeeze=False)
    for ax, (key, title) in zip(axes.flat, keys, strict=False):
        steps, values = series(data.records, key)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        if not values:
            ax.text(0.5, 0.5, "no scores", ha="center", va="center", transform=ax.transAxes, color="#777")
            continue
        ax.plot(steps, values, color="#90caf9", linewidth=1, label="per step")
        window = max(1, len(values) // 10)
        ax.plot(steps, _smooth(values, window), color="#1565c0", linewidth=2, label=f"mean of {window}")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(keys) :]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def outcomes_figure(data: ReportInput):
    plt = _pyplot()
    names = data.reward_names
    cols = min(3, max(1, len(names)))
    rows = math.ceil(max(1, len(names)) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.6 * rows), squeeze=False)
    for ax, name in zip(axes.flat, names, strict=False):
        steps = [int(r.get("step", i)) for i, r in enumerate(data.records)]
        stacks = [[float(r.get(f"rewards/{name}/{o}", 0) or 0) for r in data.records] for o in OUTCOME_COLORS]
        if steps:
            ax.stackplot(steps, *stacks, labels=list(OUTCOME_COLORS), colors=list(OUTCOME_COLORS.values()), alpha=0.85)
        ax.set_title(f"{name}: outcomes per step", fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    if names:
        axes.flat[0].legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def figure_png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    _pyplot().close(fig)
    return buffer.getvalue()


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


# -- sections ------------------------------------------------------------------------------------
def _fmt(value: Any, digits: int = 3) -> str:
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def section_summary(data: ReportInput) -> str | None:
    rise = reward_rise(data.records)
    s = data.summary
    rows = [("steps logged", len(data.records))]
    if s:
        rows += [(k, s[k]) for k in ("final_step", "world_size", "device", "dtype", "attention", "precision",
                                      "train_seconds", "resumed_from_step") if s.get(k) is not None]
    if rise:
        rows += [("mean reward, first fifth of steps", rise["first_fifth"]),
                 ("mean reward, last fifth of steps", rise["last_fifth"]),
                 ("rise", rise["rise"])]
    _, times = series(data.records, "step_time")
    if times:
        rows.append(("median step time (s)", statistics.median(times)))
    body = "".join(f"<tr><th>{html.escape(str(k))}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<h2>Summary</h2><table class='kv'>{body}</table>"


def section_comparison(data: ReportInput) -> str | None:
    """Each reward's mean over the first and the last fifth of the logged steps."""
    rises = reward_rises(data.records, data.reward_names)
    if not rises:
        return None
    fifth = next(iter(rises.values()))["logged_steps"] // 5
    rows = "".join(
        f"<tr><th>{html.escape('total (weighted)' if label == 'reward' else label)}</th>"
        f"<td>{_fmt(r['first_fifth'])}</td><td>{_fmt(r['last_fifth'])}</td>"
        f"<td class='{'up' if r['rise'] > 0.005 else 'down' if r['rise'] < -0.005 else ''}'>{r['rise']:+.3f}</td></tr>"
        for label, r in rises.items()
    )
    warm = data.summary.get("warmup") or {}
    note = (f"<p class='note'>GRPO started from a {warm['steps']}-step supervised warm-up "
            f"({_fmt(warm.get('seconds'), 1)} s) that taught the format.</p>" if warm.get("steps") else "")
    return (f"<h2>What GRPO changed</h2><p class='note'>Mean over the first {fifth} and the last {fifth} "
            f"logged steps.</p>{note}<table><tr><th>reward</th><th>first fifth</th><th>last fifth</th>"
            f"<th>change</th></tr>{rows}</table>")


def section_probes(data: ReportInput) -> str | None:
    """The same prompts, greedy, when GRPO started and when it ended (``comparison.jsonl``)."""
    pairs = before_after(data.comparison)
    if not pairs:
        return None
    names = data.reward_names

    def cell(row: Mapping[str, Any] | None) -> str:
        if row is None:
            return "<td>-</td>"
        scores = " ".join(
            f"<span class='score {html.escape(str(r.get('outcome', '')))}'>{html.escape(n)} "
            f"{_fmt(r['score']) if r.get('score') is not None else html.escape(str(r.get('outcome', '-')))}</span>"
            for n in names if (r := (row.get("rewards") or {}).get(n)) is not None
        )
        return f"<td><pre>{html.escape(str(row.get('completion', ''))[:600])}</pre><div class='scores'>{scores}</div></td>"

    first_step, last_step = pairs[0][0].get("step", 0), next((a.get("step") for _, a in pairs if a), None)
    head = (f"<tr><th>prompt</th><th>before (step {first_step})</th>"
            f"<th>after (step {last_step if last_step is not None else '-'})</th></tr>")
    rows = []
    for before, after in pairs:
        gold = f"<div class='gold'>answer: {html.escape(str(before['answer']))}</div>" if "answer" in before else ""
        prompt = html.escape(str(before.get("prompt", "")).splitlines()[-1] if before.get("prompt") else "")
        rows.append(f"<tr><td><pre>{prompt}</pre>{gold}</td>{cell(before)}{cell(after)}</tr>")
    return ("<h2>The same prompts, before and after</h2><p class='note'>Greedy completions of fixed prompts "
            f"when GRPO started and when it ended.</p><table class='samples'>{head}{''.join(rows)}</table>")


def section_curves(data: ReportInput) -> str | None:
    if not data.records:
        return "<h2>Reward curves</h2><p>No steps were logged.</p>"
    return f"<h2>Reward curves</h2>{_img(figure_png(curves_figure(data)), 'reward curves')}"


def section_outcomes(data: ReportInput) -> str | None:
    if not data.records or not data.reward_names:
        return None
    totals = []
    for name in data.reward_names:
        counts = {o: sum(int(r.get(f"rewards/{name}/{o}", 0) or 0) for r in data.records) for o in OUTCOME_COLORS}
        totals.append(f"<tr><th>{html.escape(name)}</th>" + "".join(f"<td>{counts[o]}</td>" for o in OUTCOME_COLORS) + "</tr>")
    head = "<tr><th>reward</th>" + "".join(f"<th>{o}</th>" for o in OUTCOME_COLORS) + "</tr>"
    return (f"<h2>Reward outcomes</h2>{_img(figure_png(outcomes_figure(data)), 'outcome counts')}"
            f"<table>{head}{''.join(totals)}</table>")


def section_samples(data: ReportInput, per_end: int = 6) -> str | None:
    if not data.samples:
        return None
    steps = sorted({s.get("step", 0) for s in data.samples})
    first, last = steps[0], steps[-1]
    picks = [s for s in data.samples if s.get("step") == first][:per_end]
    if last != first:
        picks += [s for s in data.samples if s.get("step") == last][:per_end]
    names = data.reward_names
    head = "<tr><th>step</th><th>prompt</th><th>completion</th>" + "".join(f"<th>{html.escape(n)}</th>" for n in names) + "</tr>"
    rows = []
    for sample in picks:
        cells = []
        for name in names:
            result = (sample.get("rewards") or {}).get(name) or {}
            score = result.get("score")
            outcome = result.get("outcome", "")
            details = result.get("details") or {}
            title = html.escape(json.dumps(details, default=str)[:400]) if details else ""
            text = _fmt(score) if score is not None else html.escape(outcome or "-")
            cells.append(f"<td class='score {html.escape(outcome)}' title='{title}'>{text}</td>")
        gold = f"<div class='gold'>answer: {html.escape(str(sample['answer']))}</div>" if "answer" in sample else ""
        rows.append(
            f"<tr><td>{sample.get('step')}</td><td><pre>{html.escape(str(sample.get('prompt', ''))[-300:])}</pre>{gold}</td>"
            f"<td><pre>{html.escape(str(sample.get('completion', ''))[:600])}</pre></td>{''.join(cells)}</tr>"
        )
    return (f"<h2>Sample completions (first and last logged steps)</h2>"
            f"<p class='note'>Hover a score for the reward's details.</p><table class='samples'>{head}{''.join(rows)}</table>")


def section_provenance(data: ReportInput) -> str | None:
    if not data.provenance:
        return None
    head = "<tr><th>reward</th><th>plugin</th><th>version</th><th>weight</th><th>timeout</th><th>params</th><th>hash</th></tr>"
    rows = "".join(
        f"<tr><td>{html.escape(str(p.get('name')))}</td><td>{html.escape(str(p.get('plugin')))}</td>"
        f"<td>{html.escape(str(p.get('version')))}</td><td>{_fmt(p.get('weight'))}</td><td>{_fmt(p.get('timeout'))}</td>"
        f"<td><code>{html.escape(json.dumps(p.get('params', {})))}</code></td><td><code>{html.escape(str(p.get('params_hash')))}</code></td></tr>"
        for p in data.provenance
    )
    return f"<h2>Rewards (provenance)</h2><table>{head}{rows}</table>"


def section_health(data: ReportInput) -> str | None:
    """Reward-health warnings, replayed from the records (thresholds: grpo_host/observability/health.py)."""
    from grpo_host.observability.health import analyse

    if not data.records:
        return None
    warnings = analyse(data.records)
    if not warnings:
        return ("<h2>Reward health</h2><p>No warnings: no reward was constant within its groups, saturated, "
                "mostly not applicable or failing, and no two rewards moved against each other.</p>")
    head = "<tr><th>warning</th><th>rewards</th><th>steps</th><th>value</th><th>what it means</th></tr>"
    rows = "".join(
        f"<tr><td class='warn'>{html.escape(w.kind)}</td><td>{html.escape(', '.join(w.rewards))}</td>"
        f"<td>{w.first_step}&ndash;{w.last_step}{'' if w.active else ' (cleared)'}</td><td>{_fmt(w.value, 2)}</td>"
        f"<td>{html.escape(w.message)}</td></tr>"
        for w in warnings
    )
    return f"<h2>Reward health</h2><table>{head}{rows}</table>"


GPU_READINGS = (("utilization/mean", "utilization (%)"), ("memory_used_gib/max", "memory used (GiB)"),
                ("power_w/mean", "power (W)"), ("temperature_c/max", "temperature (°C)"))


def gpu_devices(records: Sequence[Mapping[str, Any]]) -> list[str]:
    return sorted({k.split("/")[1] for r in records for k in r if k.startswith("gpu/") and k.count("/") == 3}, key=str)


def section_gpu(data: ReportInput) -> str | None:
    devices = gpu_devices(data.records)
    if not devices:
        return None
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(GPU_READINGS), figsize=(4.2 * len(GPU_READINGS), 2.8), squeeze=False)
    for ax, (reading, title) in zip(axes.flat, GPU_READINGS, strict=True):
        for device in devices:
            steps, values = series(data.records, f"gpu/{device}/{reading}")
            if values:
                ax.plot(steps, values, linewidth=1.5, label=f"GPU {device}")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.tick_params(labelsize=8)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7, loc="best")
    fig.tight_layout()
    head = "<tr><th>GPU</th><th>mean utilization (%)</th><th>peak memory (GiB)</th><th>mean power (W)</th><th>peak temperature (°C)</th></tr>"
    rows = []
    for device in devices:
        cells = []
        for reading, pick in (("utilization/mean", statistics.fmean), ("memory_used_gib/max", max),
                              ("power_w/mean", statistics.fmean), ("temperature_c/max", max)):
            _, values = series(data.records, f"gpu/{device}/{reading}")
            cells.append(f"<td>{_fmt(float(pick(values)), 1)}</td>" if values else "<td>-</td>")
        rows.append(f"<tr><th>{html.escape(device)}</th>{''.join(cells)}</tr>")
    return f"<h2>GPUs</h2>{_img(figure_png(fig), 'GPU metrics')}<table>{head}{''.join(rows)}</table>"


SectionBuilder = Callable[[ReportInput], "str | None"]
SECTION_BUILDERS: list[SectionBuilder] = [
    section_comparison, section_curves, section_probes, section_summary, section_health, section_outcomes,
    section_samples, section_gpu, section_provenance,
]

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1300px;color:#222;padding:0 1em}
h1{margin-bottom:0}.sub{color:#666;margin-top:.2em}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #ddd;padding:4px 8px;font-size:13px;vertical-align:top}
th{background:#f5f5f5;text-align:left}table.kv th{width:18em}
pre{white-space:pre-wrap;margin:0;font-size:12px;max-width:520px}
td.score{text-align:right;font-variant-numeric:tabular-nums}td.error,td.timeout{background:#fdecea}
td.not_applicable{color:#888}td.warn{color:#b26a00;font-weight:600}.gold{color:#555;font-size:12px;margin-top:4px}.note{color:#666;font-size:13px}
img{max-width:100%}td.up{color:#2e7d32;font-weight:600}td.down{color:#c62828;font-weight:600}
.scores{font-size:12px;color:#444;margin-top:4px}.scores span{margin-right:.8em}
"""


def build_report(
    records: Sequence[Mapping[str, Any]],
    samples: Sequence[Mapping[str, Any]] = (),
    provenance: Sequence[Mapping[str, Any]] = (),
    summary: Mapping[str, Any] | None = None,
    *,
    comparison: Sequence[Mapping[str, Any]] = (),
    title: str | None = None,
    builders: Iterable[SectionBuilder] | None = None,
) -> str:
    data = ReportInput([dict(r) for r in records], [dict(s) for s in samples],
                       [dict(p) for p in provenance], dict(summary or {}), [dict(c) for c in comparison])
    parts = []
    for builder in builders if builders is not None else SECTION_BUILDERS:
        try:
            section = builder(data)
        except Exception as exc:  # noqa: BLE001 - one broken section must not cost the report
            section = f"<h2>{html.escape(builder.__name__)}</h2><p>could not build: {html.escape(repr(exc))}</p>"
        if section:
            parts.append(f"<section>{section}</section>")
    heading = html.escape(title or data.summary.get("run_name") or "grpo-host run")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{heading}</title><style>{_CSS}</style></head>"
            f"<body><h1>{heading}</h1><p class='sub'>grpo-host training report</p>{''.join(parts)}</body></html>")


def write_report(output_dir: str | Path) -> dict[str, Path]:
    """Build ``report.html`` and ``reward_curves.png`` from the files a run wrote."""
    output_dir = Path(output_dir)
    records = read_jsonl(output_dir / "metrics.jsonl")
    samples = read_jsonl(output_dir / "samples.jsonl")
    provenance = _read_json(output_dir / "reward_provenance.json", [])
    summary = _read_json(output_dir / "run.json", {})
    if not summary:
        summary = {"run_name": output_dir.name}
    warmup = _read_json(output_dir / "warmup.json", None)
    if isinstance(warmup, dict):
        summary = {**summary, "warmup": warmup}
    comparison = read_jsonl(output_dir / "comparison.jsonl")
    from grpo_host.observability.redact import redact

    # Before the page escapes them: a report is shared, a secret in a reward's error is not.
    records, samples, provenance, summary, comparison = redact(
        (records, samples, provenance, summary, comparison)
    )
    data = ReportInput(records, samples, provenance, summary, comparison)
    paths = {"html": output_dir / REPORT_FILE}
    if records:
        (output_dir / CURVES_FILE).write_bytes(figure_png(curves_figure(data)))
        paths["png"] = output_dir / CURVES_FILE
    paths["html"].write_text(build_report(records, samples, provenance, summary, comparison=comparison),
                             encoding="utf-8")
    return paths


def _read_json(path: Path, default: Any) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return default
