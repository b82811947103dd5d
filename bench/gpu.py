"""GPU: `grpo-host train` on its GPU default against plain TRL's default, same shape, batch and lengths.

Each round runs ``grpo-host train`` with ``generation.speed`` at its default (``auto``: a static
KV cache with transformers' compiled decode step on a CUDA GPU; LoRA/QLoRA sample from a merged
copy), plain TRL (``GRPOTrainer`` with TRL's own generation: dynamic KV cache, no compile; the
script of ``train_overhead.py``, which calls the same reward code in a loop) and the host with
``generation.speed=off`` (the plain-TRL settings: the host's own overhead); the order reverses
every round, so each side runs early and late. Per side: the median over rounds and the range;
per round, the ratios to that round's plain run (overhead: off / plain step time), with their
median and range. ``--host-steps`` gives the fast side a long run (20+ steps over prompts of
varying length: recompiles and cache growth show); its torch.compile frame count is logged
every step (``generation/compiled_frames``), and a frame compiled after the first step is a
recompile, reported per run. Both sides train the built-in Qwen2 with the 0.5B shape (random
weights, nothing downloaded) on the same prompts with the same GRPOConfig. Reported per side:
the first step (compile and warm-up, separately), the median step after it, generated tokens/s,
the rewards' share of the step (the host's ``rewards/score_seconds``, the wall time the trainer
waited on its reward pool, over TRL's ``step_time``; the plain script scores inline and has no
such figure), peak CUDA memory allocated, and the ratios to plain TRL.

    python bench/gpu.py --out results.json                  # bf16 full fine-tuning, on the GPU machine
    python bench/gpu.py --modes lora --rounds 2 --host-steps 20  # LoRA, alternating, long fast runs
    python bench/gpu.py --tiny --steps 3                    # the same path on CPU, tiny shape

``--deadline`` (seconds) stops starting runs that cannot finish in time and bounds each run, so a
limited machine still returns the figures measured so far (written to ``--out`` after every run).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_train import MODES, SHAPE_05B  # noqa: E402

TRAIN_OVERHEAD = Path(__file__).resolve().parent / "train_overhead.py"


def resolved_config(workdir: Path, sets: list[str]) -> Path:
    """The run config both sides read (the plain side reads it as the host's worker does)."""
    from grpo_host.cli.common import parse_sets
    from grpo_host.config import load_config

    config = load_config(None, parse_sets(sets), output_dir=str(workdir / "resolved"))
    path = workdir / "run_config.yaml"
    path.write_text(config.to_yaml())
    return path


def host_run(workdir: Path, sets: list[str], timeout: float) -> dict:
    out = workdir / f"host-{time.monotonic_ns()}"
    cmd = [sys.executable, "-m", "grpo_host", "train", "--output-dir", str(out), "--set", "checkpointing.steps=100000",
           "--set", "output.report=false", "--set", "output.save_model=false"]
    for item in sets:
        cmd += ["--set", item]
    started = time.monotonic()
    partial = False
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd=workdir, timeout=timeout)
        text = proc.stdout + proc.stderr
        if proc.returncode != 0:
            raise RuntimeError(f"grpo-host train failed:\n{text[-3000:]}")
    except subprocess.TimeoutExpired as exc:  # keep the steps it finished
        text, partial = _text(exc.stdout) + _text(exc.stderr), True
        if not (out / "metrics.jsonl").is_file():
            raise
    total = time.monotonic() - started
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    if not records:
        raise RuntimeError(f"grpo-host train logged no step before it was stopped:\n{text[-3000:]}")
    elapsed = [r["elapsed"] for r in records]
    summary = json.loads((out / "run.json").read_text()) if (out / "run.json").is_file() else {}
    if partial or not summary:
        summary["generation"] = next((line for line in text.splitlines() if "generation:" in line), None)
    return {"partial": partial,"walls": [b - a for a, b in zip(elapsed, elapsed[1:], strict=False)],
            "step_time": [r["step_time"] for r in records], "records": records, "total": total,
            "peak_allocated_gib": max((r["memory/peak_allocated_gib"] for r in records
                                       if "memory/peak_allocated_gib" in r), default=None),
            "generation": summary.get("generation"), "compiles": _compiles(records)}


def _compiles(records: list[dict]) -> dict | None:
    """torch.compile frames per step (the worker logs running totals on the compiled path)."""
    frames = [r["generation/compiled_frames"] for r in records if "generation/compiled_frames" in r]
    if not frames:
        return None
    last = records[-1]
    return {"after_step_1": frames[0], "at_end": frames[-1], "recompiles_after_step_1": frames[-1] - frames[0],
            "steps_that_compiled": sum(b > a for a, b in zip(frames, frames[1:], strict=False)),
            "graph_breaks": last.get("generation/graph_breaks"), "cudagraph_skips": last.get("generation/cudagraph_skips")}


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


def plain_run(workdir: Path, config_path: Path, timeout: float) -> dict:
    times = workdir / f"plain-{time.monotonic_ns()}.json"
    started = time.monotonic()
    proc = subprocess.run([sys.executable, str(TRAIN_OVERHEAD), "--plain-worker", str(config_path), str(times)],
                          capture_output=True, text=True, cwd=workdir, timeout=timeout)
    total = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(f"plain TRL run failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}")
    data = json.loads(times.read_text())
    stamps = data["stamps"]
    return {"walls": [b - a for a, b in zip(stamps, stamps[1:], strict=False)], "step_time": data["step_time"],
            "records": data["records"], "total": total, "peak_allocated_gib": data["peak_allocated_gib"]}


def figures(run: dict, completions: int) -> dict:
    """Steps after the first: the first step carries compile and warm-up, reported apart."""
    walls = run["walls"] or run["step_time"]
    records = run["records"][1:] or run["records"]
    step = statistics.median(walls)
    lengths = [r["completions/mean_length"] for r in records if "completions/mean_length" in r]
    tokens = statistics.mean(lengths) * completions if lengths else float("nan")
    shares = [r["rewards/score_seconds"] / r["step_time"] for r in records
              if r.get("rewards/score_seconds") is not None and r.get("step_time")]
    return {"first_step_s": round(run["step_time"][0], 2) if run["step_time"] else None,
            "step_s": round(step, 3), "steps_measured": len(walls),
            "gen_tokens_per_step": round(tokens, 1), "gen_tokens_per_s": round(tokens / step, 1),
            "reward_share": round(statistics.median(shares), 4) if shares else None,
            "peak_allocated_gib": None if run["peak_allocated_gib"] is None else round(run["peak_allocated_gib"], 2),
            "run_seconds": round(run["total"], 1)}


AUTO, PLAIN, OFF = "grpo-host (auto)", "plain TRL", "grpo-host (off)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="bf16", help="Comma-separated: bf16 (full), lora, qlora.")
    parser.add_argument("--steps", type=int, default=4, help="Steps per run (the first is reported apart).")
    parser.add_argument("--host-steps", type=int, default=None,
                        help="Steps for the host's auto side (default --steps): a long run shows recompiles.")
    parser.add_argument("--rounds", type=int, default=2, help="Rounds; the side order reverses every round.")
    parser.add_argument("--sides", default=f"{AUTO},{PLAIN},{OFF}", help="Comma-separated sides of a round.")
    parser.add_argument("--prompts", type=int, default=8, help="Prompts per step.")
    parser.add_argument("--generations", type=int, default=8, help="Completions per prompt.")
    parser.add_argument("--completion-length", type=int, default=256)
    parser.add_argument("--host-off", action="store_true", help="(kept for old commands: the off side is a default)")
    parser.add_argument("--tiny", action="store_true", help="The default tiny shape (a CPU smoke test).")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="More overrides (both sides).")
    parser.add_argument("--deadline", type=float, default=None, help="Seconds for the whole bench.")
    parser.add_argument("--reserve", type=float, default=95.0,
                        help="With --deadline: seconds kept for each run still to come.")
    parser.add_argument("--out", help="Write the figures as JSON here (after every run).")
    args = parser.parse_args()
    os.environ.setdefault("GRPO_HOST_CACHE", str(Path(tempfile.gettempdir()) / "grpo-host-bench-cache"))
    began = time.monotonic()
    completions = args.prompts * args.generations
    sides = [x.strip() for x in args.sides.split(",") if x.strip()]
    unknown = set(sides) - {AUTO, PLAIN, OFF}
    if unknown:
        parser.error(f"--sides: unknown {sorted(unknown)}; use {AUTO!r}, {PLAIN!r}, {OFF!r}")
    base = [f"grpo.per_device_train_batch_size={completions}", f"grpo.num_generations={args.generations}",
            f"grpo.max_completion_length={args.completion_length}", "grpo.beta=0.0", "reward_workers=4",
            "rewards=[format, {name: length, params: {target: 200}}]"]
    if not args.tiny:
        base += [f"model.builtin.{k}={v}" for k, v in SHAPE_05B.items()]
    base += args.sets
    workdir = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    results: dict = {"shape": "tiny" if args.tiny else SHAPE_05B, "completions_per_step": completions,
                     "completion_length": args.completion_length, "steps": args.steps,
                     "host_steps": args.host_steps or args.steps, "sets": args.sets, "versions": _versions(),
                     "modes": {}}

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))

    plan = [(mode, round_, side) for mode in args.modes.split(",") for round_ in range(args.rounds)
            for side in (sides if round_ % 2 == 0 else sides[::-1])]
    for n, (mode, round_, side) in enumerate(plan):
        sets = base + MODES[mode]
        entry = results["modes"].setdefault(mode, {"runs": []})
        steps = (args.host_steps or args.steps) if side == AUTO else args.steps
        left = None if args.deadline is None else args.deadline - (time.monotonic() - began)
        if left is not None:
            left -= args.reserve * (len(plan) - 1 - n)  # leave the runs after this one their time
        if left is not None and left < 20:
            entry["runs"].append({"side": side, "round": round_, "error": "skipped: deadline"})
            continue
        try:
            run_sets = sets + [f"grpo.max_steps={steps}"]
            if side == PLAIN:
                run = plain_run(workdir, resolved_config(workdir, run_sets), left)
            else:
                run = host_run(workdir, run_sets + (["generation.speed=off"] if side == OFF else []), left)
            fig = figures(run, completions)
            if run.get("partial"):
                fig["partial"] = "stopped at the deadline; figures from the steps it finished"
            if "generation" in run:
                fig["generation"] = run["generation"]
                fig["compiles"] = run["compiles"]
        except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
            fig = {"error": str(exc)[-3000:]}
        entry["runs"].append({"side": side, "round": round_, **fig})
        print(mode, side, f"round {round_}", json.dumps(fig), flush=True)
        entry["summary"] = summarize(entry["runs"])
        save()
    print(table(results))


def summarize(runs: list[dict]) -> dict:
    """Per side: median and range over rounds; per round: the ratios to that round's plain run."""
    ok = [r for r in runs if "error" not in r]
    by_side: dict[str, dict] = {}
    for side in sorted({r["side"] for r in ok}):
        mine = [r for r in ok if r["side"] == side]
        by_side[side] = {"runs": len(mine)}
        for key in ("step_s", "first_step_s", "gen_tokens_per_s", "gen_tokens_per_step", "reward_share",
                    "peak_allocated_gib"):
            values = [r[key] for r in mine if r.get(key) is not None]
            if values:
                by_side[side][key] = statistics.median(values)
                by_side[side][key + "_range"] = [min(values), max(values)]
    plains = {r["round"]: r for r in ok if r["side"] == PLAIN}
    for side, f in by_side.items():
        if side == PLAIN:
            continue
        pairs = [(r, plains[r["round"]]) for r in ok if r["side"] == side and r["round"] in plains]
        for key, name in (("step_s", "step_vs_plain"), ("gen_tokens_per_s", "tokens_per_s_vs_plain")):
            ratios = [round(r[key] / p[key], 4) for r, p in pairs if p.get(key)]
            if ratios:
                f[name] = statistics.median(ratios)
                f[name + "_per_round"] = ratios
                f[name + "_range"] = [min(ratios), max(ratios)]
    return by_side


def _median(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def _versions() -> dict:
    out = {}
    for name in ("torch", "transformers", "trl", "accelerate"):
        try:
            from importlib.metadata import version

            out[name] = version(name)
        except Exception:  # noqa: BLE001 - a missing package is reported as such
            out[name] = None
    try:
        import torch

        out["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none (CPU)"
    except Exception:  # noqa: BLE001
        out["gpu"] = None
    return out


def table(results: dict) -> str:
    lines = ["| mode | side | runs | first step | median step (range) | generated tokens/s (range) | reward share | "
             "peak memory (allocated) | step vs plain, per round | tokens/s vs plain |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for mode, entry in results["modes"].items():
        for run in entry["runs"]:
            if "error" in run:
                lines.append(f"| {mode} | {run['side']} | failed: {run['error'][-160:]!r} | | | | | | | |")
        summary = entry.get("summary", {})
        for side in sorted(summary, key=lambda k: (k != PLAIN, k)):
            f = summary[side]
            share = "n/a" if f.get("reward_share") is None else f"{f['reward_share'] * 100:.1f}%"
            lo, hi = f["step_s_range"]
            tlo, thi = f["gen_tokens_per_s_range"]
            per_round = ", ".join(f"{x:.3f}" for x in f.get("step_vs_plain_per_round", [1.0]))
            lines.append(f"| {mode} | {side} | {f['runs']} | {f.get('first_step_s', float('nan')):.1f} s | "
                         f"{f['step_s']:.2f} s ({lo:.2f}-{hi:.2f}) | {f['gen_tokens_per_s']:,.0f} ({tlo:,.0f}-{thi:,.0f}) | "
                         f"{share} | {f.get('peak_allocated_gib')} GiB | {f.get('step_vs_plain', 1.0):.3f} ({per_round}) | "
                         f"{f.get('tokens_per_s_vs_plain', 1.0):.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
