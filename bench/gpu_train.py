"""GPU: a Qwen2-0.5B-shaped model through `grpo-host train` and through plain TRL, three ways.

The model is the built-in Qwen2 with the 0.5B shape (hidden 896, 24 layers, 14 heads, 2 KV
heads, intermediate 4864, vocab 32000; random weights, nothing downloaded). Each mode runs a
few GRPO steps through `grpo-host train` and then through the plain TRL script of
`train_overhead.py` (same model, data, GRPOConfig and reward code): full bf16 training, LoRA,
and 4-bit QLoRA (bitsandbytes NF4). Reported per mode and side: the median step time after
the first step, generated tokens per second (completion tokens of a step / its time), and
peak CUDA memory allocated.

    python bench/gpu_train.py --out results.json                 # on the GPU machine
    python bench/gpu_train.py --tiny --modes bf16,lora --steps 3  # the same path on CPU, tiny shape
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_overhead import host_run, plain_run  # noqa: E402

SHAPE_05B = {"hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
             "num_key_value_heads": 2, "vocab_size": 32000, "max_position_embeddings": 4096,
             "tie_word_embeddings": True}
MODES = {
    "bf16": [],
    "lora": ["peft.enabled=true", "peft.r=16", "peft.alpha=32", "grpo.learning_rate=1e-4"],
    "qlora": ["peft.enabled=true", "peft.r=16", "peft.alpha=32", "grpo.learning_rate=1e-4",
              "quantization.load_in_4bit=true", "warmup.steps=0"],  # 4-bit weights take no warm-up
}


def figures(run: dict, completions: int, skip: int = 1) -> dict:
    walls = run["walls"][max(0, skip - 1):] or run["walls"]
    records = run["records"][skip:] or run["records"]
    step = statistics.median(walls) if walls else statistics.median(run["step_time"])
    lengths = [r["completions/mean_length"] for r in records if "completions/mean_length" in r]
    tokens = statistics.mean(lengths) * completions if lengths else float("nan")
    return {"step_s": round(step, 3), "trl_step_time_s": round(statistics.median(run["step_time"][skip:] or run["step_time"]), 3),
            "gen_tokens_per_step": round(tokens, 1), "gen_tokens_per_s": round(tokens / step, 1),
            "peak_allocated_gib": None if run["peak_allocated_gib"] is None else round(run["peak_allocated_gib"], 2),
            "run_seconds": round(run["total"], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="bf16,lora,qlora")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--prompts", type=int, default=8, help="Prompts per step.")
    parser.add_argument("--generations", type=int, default=8, help="Completions per prompt.")
    parser.add_argument("--completion-length", type=int, default=256)
    parser.add_argument("--tiny", action="store_true", help="The default tiny shape (a CPU smoke test).")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="More overrides (both sides).")
    parser.add_argument("--out", help="Write the figures as JSON here (after every mode).")
    args = parser.parse_args()
    completions = args.prompts * args.generations
    base = [f"grpo.per_device_train_batch_size={completions}", f"grpo.num_generations={args.generations}",
            f"grpo.max_completion_length={args.completion_length}", "grpo.beta=0.0", "reward_workers=4",
            "rewards=[format, {name: length, params: {target: 200}}]",
            # Like for like: TRL's own generation on both sides. bench/gpu.py measures the host's
            # faster GPU default (generation.speed: auto) against plain TRL.
            "generation.speed=off"]
    if not args.tiny:
        base += [f"model.builtin.{k}={v}" for k, v in SHAPE_05B.items()]
    base += args.sets
    workdir = Path(tempfile.mkdtemp(prefix="gpu-train-"))
    results: dict = {"shape": "tiny" if args.tiny else SHAPE_05B, "completions_per_step": completions,
                     "completion_length": args.completion_length, "steps": args.steps, "modes": {}}
    for mode in args.modes.split(","):
        sets = base + MODES[mode]
        entry: dict = {}
        started = time.monotonic()
        try:
            host = host_run(workdir, args.steps, sets)
            entry["grpo-host"] = figures(host, completions)
            entry["grpo-host"]["attention"] = _attention(host["config"].parent)
            plain = plain_run(workdir, host["config"])
            entry["plain TRL"] = figures(plain, completions)
            entry["host/plain step"] = round(entry["grpo-host"]["step_s"] / entry["plain TRL"]["step_s"], 3)
        except Exception as exc:  # noqa: BLE001 - keep the other modes' figures
            entry["error"] = str(exc)[-3000:]
        entry["seconds"] = round(time.monotonic() - started, 1)
        results["modes"][mode] = entry
        print(mode, json.dumps(entry, indent=1), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))
    print(table(results))


def _attention(output_dir: Path) -> str | None:
    try:
        return json.loads((output_dir / "run.json").read_text()).get("attention")
    except (OSError, ValueError):
        return None


def table(results: dict) -> str:
    lines = ["| mode | side | median step | generated tokens/s | peak memory (allocated) |", "|---|---|---|---|---|"]
    for mode, entry in results["modes"].items():
        if "error" in entry:
            lines.append(f"| {mode} | failed | {entry['error'][-200:]!r} | | |")
            continue
        for side in ("grpo-host", "plain TRL"):
            f = entry[side]
            lines.append(f"| {mode} | {side} | {f['step_s']:.2f} s | {f['gen_tokens_per_s']:,.0f} | "
                         f"{f['peak_allocated_gib']} GiB |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
