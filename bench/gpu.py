"""GPU: `grpo-host train` on its GPU default against plain TRL's default, same shape, batch and lengths.

Each round runs plain TRL (``GRPOTrainer`` with TRL's own generation: dynamic KV cache, no
compile; the script of ``train_overhead.py``, which calls the same reward code in a loop) and
then ``grpo-host train`` with ``generation.speed`` at its default (``auto``: a static KV cache
with transformers' compiled decode step on a CUDA GPU), alternating when there are several
rounds. ``--host-off`` adds a host run with ``generation.speed=off`` (the plain-TRL settings:
the host's own overhead). Both sides train the built-in Qwen2 with the 0.5B shape (random
weights, nothing downloaded) on the same prompts with the same GRPOConfig. Reported per side:
the first step (compile and warm-up, separately), the median step after it, generated tokens/s,
the rewards' share of the step (the host's ``rewards/score_seconds``, the wall time the trainer
waited on its reward pool, over TRL's ``step_time``; the plain script scores inline and has no
such figure), peak CUDA memory allocated, and the ratios to plain TRL.

    python bench/gpu.py --out results.json                  # bf16 full fine-tuning, on the GPU machine
    python bench/gpu.py --modes bf16,lora,qlora --host-off  # every config, with the overhead side
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
    if partial:
        summary["generation"] = next((line for line in text.splitlines() if line.startswith("generation:")), None)
    return {"partial": partial,"walls": [b - a for a, b in zip(elapsed, elapsed[1:], strict=False)],
            "step_time": [r["step_time"] for r in records], "records": records, "total": total,
            "peak_allocated_gib": max((r["memory/peak_allocated_gib"] for r in records
                                       if "memory/peak_allocated_gib" in r), default=None),
            "generation": summary.get("generation"),
            "recompiles": sum("recompil" in line.lower() for line in text.splitlines())}


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="bf16", help="Comma-separated: bf16 (full), lora, qlora.")
    parser.add_argument("--steps", type=int, default=4, help="Steps per run (the first is reported apart).")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--prompts", type=int, default=8, help="Prompts per step.")
    parser.add_argument("--generations", type=int, default=8, help="Completions per prompt.")
    parser.add_argument("--completion-length", type=int, default=256)
    parser.add_argument("--host-off", action="store_true", help="Also run the host with generation.speed=off.")
    parser.add_argument("--tiny", action="store_true", help="The default tiny shape (a CPU smoke test).")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="More overrides (both sides).")
    parser.add_argument("--deadline", type=float, default=None, help="Seconds for the whole bench.")
    parser.add_argument("--reserve", type=float, default=95.0,
                        help="With --deadline: seconds kept for each run still to come in the last round.")
    parser.add_argument("--out", help="Write the figures as JSON here (after every run).")
    args = parser.parse_args()
    os.environ.setdefault("GRPO_HOST_CACHE", str(Path(tempfile.gettempdir()) / "grpo-host-bench-cache"))
    began = time.monotonic()
    completions = args.prompts * args.generations
    base = [f"grpo.per_device_train_batch_size={completions}", f"grpo.num_generations={args.generations}",
            f"grpo.max_completion_length={args.completion_length}", "grpo.beta=0.0", "reward_workers=4",
            f"grpo.max_steps={args.steps}", "rewards=[format, {name: length, params: {target: 200}}]"]
    if not args.tiny:
        base += [f"model.builtin.{k}={v}" for k, v in SHAPE_05B.items()]
    base += args.sets
    workdir = Path(tempfile.mkdtemp(prefix="gpu-bench-"))
    results: dict = {"shape": "tiny" if args.tiny else SHAPE_05B, "completions_per_step": completions,
                     "completion_length": args.completion_length, "steps": args.steps, "versions": _versions(),
                     "modes": {}}

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))

    for mode in args.modes.split(","):
        sets = base + MODES[mode]
        config_path = resolved_config(workdir, sets)
        entry: dict = {"runs": []}
        results["modes"][mode] = entry
        # The host first: its fast path is what the bench is for, should the deadline cut a run short.
        sides = ["grpo-host", "plain TRL"] + (["grpo-host off"] if args.host_off else [])
        for round_ in range(args.rounds):
            order = sides if round_ % 2 == 0 else sides[::-1]
            for i, side in enumerate(order):
                left = None if args.deadline is None else args.deadline - (time.monotonic() - began)
                if left is not None and round_ == args.rounds - 1:  # leave the runs after this one their time
                    left -= args.reserve * (len(order) - 1 - i)
                if left is not None and left < 20:
                    entry["runs"].append({"side": side, "round": round_, "error": "skipped: deadline"})
                    continue
                try:
                    if side == "plain TRL":
                        run = plain_run(workdir, config_path, left)
                    else:
                        extra = ["generation.speed=off"] if side == "grpo-host off" else []
                        run = host_run(workdir, sets + extra, left)
                    fig = figures(run, completions)
                    if run.get("partial"):
                        fig["partial"] = "stopped at the deadline; figures from the steps it finished"
                    if "generation" in run:
                        fig["generation"] = run["generation"]
                        fig["recompile_lines"] = run["recompiles"]
                except (RuntimeError, subprocess.TimeoutExpired, OSError, ValueError) as exc:
                    fig = {"error": str(exc)[-3000:]}
                entry["runs"].append({"side": side, "round": round_, **fig})
                print(mode, side, json.dumps(fig), flush=True)
                save()
        entry["summary"] = summarize(entry["runs"])
        save()
    print(table(results))


def summarize(runs: list[dict]) -> dict:
    by_side: dict[str, dict] = {}
    for side in {r["side"] for r in runs}:
        ok = [r for r in runs if r["side"] == side and "error" not in r]
        if not ok:
            continue
        by_side[side] = {
            "step_s": statistics.median(r["step_s"] for r in ok),
            "first_step_s": statistics.median(r["first_step_s"] for r in ok if r["first_step_s"] is not None),
            "gen_tokens_per_s": statistics.median(r["gen_tokens_per_s"] for r in ok),
            "reward_share": _median([r["reward_share"] for r in ok]),
            "peak_allocated_gib": _median([r["peak_allocated_gib"] for r in ok]),
        }
    plain = by_side.get("plain TRL")
    if plain:
        for side, f in by_side.items():
            if side != "plain TRL":
                f["step_vs_plain"] = round(f["step_s"] / plain["step_s"], 3)
                f["tokens_per_s_vs_plain"] = round(f["gen_tokens_per_s"] / plain["gen_tokens_per_s"], 3)
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
    lines = ["| mode | side | first step | median step | generated tokens/s | reward share | peak memory "
             "(allocated) | step vs plain | tokens/s vs plain |", "|---|---|---|---|---|---|---|---|---|"]
    for mode, entry in results["modes"].items():
        for run in entry["runs"]:
            if "error" in run:
                lines.append(f"| {mode} | {run['side']} | failed: {run['error'][-160:]!r} | | | | | | |")
        summary = entry.get("summary", {})
        for side in sorted(summary, key=lambda k: (k != "plain TRL", k)):
            f = summary[side]
            share = "n/a" if f["reward_share"] is None else f"{f['reward_share'] * 100:.1f}%"
            lines.append(f"| {mode} | {side} | {f['first_step_s']:.1f} s | {f['step_s']:.2f} s | "
                         f"{f['gen_tokens_per_s']:,.0f} | {share} | {f['peak_allocated_gib']} GiB | "
                         f"{f.get('step_vs_plain', 1.0):.3f} | {f.get('tokens_per_s_vs_plain', 1.0):.2f}x |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
