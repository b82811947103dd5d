"""GPU: the torchrun-fsdp backend on a Qwen2-0.5B-shaped model, bf16 and 4-bit QLoRA, then reload.

Each mode runs `grpo-host train --backend torchrun-fsdp` (world size 1: one process, FSDP2
over one GPU) for a few steps on the built-in Qwen2 with the 0.5B shape (random weights,
nothing downloaded), then loads what the run saved in plain transformers (bf16: the full
model; QLoRA: the 4-bit base plus the saved adapter through peft) and generates. Reported per
mode: the median wall time of a step after the first, TRL's own step_time, generated tokens
per second (completion tokens of a step / its wall time), peak CUDA memory allocated, what
FSDP holds on the rank (fsdp_shards.json) and the reload's generated tokens.

    python bench/gpu_torchrun_fsdp.py --out results.json              # on the GPU machine
    python bench/gpu_torchrun_fsdp.py --tiny --modes bf16 --steps 3   # the same path on CPU
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
from gpu_train import SHAPE_05B  # noqa: E402  the same 0.5B shape as the accelerate figures

MODES = {
    "bf16": [],
    "qlora": ["peft.enabled=true", "peft.r=16", "peft.alpha=32", "grpo.learning_rate=1e-4",
              "quantization.load_in_4bit=true", "warmup.steps=0"],  # 4-bit weights take no warm-up
    "lora": ["peft.enabled=true", "peft.r=16", "peft.alpha=32", "grpo.learning_rate=1e-4"],
}
# When 4-bit weights packed in bf16 cannot be sharded here, the same run with them kept whole.
MODES["qlora-uint8"] = [*MODES["qlora"], "backend.params.quant_storage=uint8"]
FALLBACK = {"qlora": "qlora-uint8"}


def train(out: Path, steps: int, sets: list[str], timeout: float) -> tuple[int, str, float]:
    cmd = [sys.executable, "-m", "grpo_host", "train", "--backend", "torchrun-fsdp", "--output-dir", str(out),
           "--set", f"grpo.max_steps={steps}", "--set", "checkpointing.steps=100000", "--set", "output.report=false"]
    for item in sets:
        cmd += ["--set", item]
    started = time.monotonic()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        code, log = proc.returncode, proc.stdout + proc.stderr
    except subprocess.TimeoutExpired as exc:
        partial = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        code, log = 124, f"timed out after {timeout:.0f} s\n{partial}"
    return code, log, time.monotonic() - started


def figures(out: Path, completions: int) -> dict:
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    elapsed = [r["elapsed"] for r in records]
    walls = [b - a for a, b in zip(elapsed, elapsed[1:], strict=False)] or elapsed
    step = statistics.median(walls)
    lengths = [r["completions/mean_length"] for r in records[1:] or records if "completions/mean_length" in r]
    tokens = statistics.mean(lengths) * completions if lengths else float("nan")
    peak = max((r.get("memory/peak_allocated_gib") or 0 for r in records), default=0) or None
    return {"steps_logged": len(records), "step_s": round(step, 3),
            "trl_step_time_s": round(statistics.median(r["step_time"] for r in records[1:] or records), 3),
            "gen_tokens_per_step": round(tokens, 1), "gen_tokens_per_s": round(tokens / step, 1),
            "peak_allocated_gib": peak, "reward_first": records[0].get("reward"), "reward_last": records[-1].get("reward")}


def reload_and_generate(out: Path, mode: str) -> dict:
    """Load what the run saved with plain transformers (and peft for the adapter) and generate."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((out / "run.json").read_text())
    cuda = torch.cuda.is_available()
    started = time.monotonic()
    if mode.startswith("qlora"):
        from peft import PeftModel
        from transformers import BitsAndBytesConfig

        from grpo_host.config import load_resolved
        from grpo_host.training.builtin import ensure_tiny_qwen2

        run_config = load_resolved(out / "run_config.yaml")
        base_dir = ensure_tiny_qwen2(run_config.model.builtin)
        quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                                   bnb_4bit_compute_dtype=torch.bfloat16)
        base = AutoModelForCausalLM.from_pretrained(base_dir, quantization_config=quant, device_map={"": 0},
                                                    dtype=torch.bfloat16)
        model = PeftModel.from_pretrained(base, str(out / "adapter"))
        tokenizer = AutoTokenizer.from_pretrained(out / "adapter")
        loaded = "4-bit base + adapter/ (peft)"
    else:
        model = AutoModelForCausalLM.from_pretrained(out, dtype=torch.bfloat16 if cuda else torch.float32)
        model = model.to("cuda" if cuda else "cpu")
        tokenizer = AutoTokenizer.from_pretrained(out)
        loaded = "full model (transformers)"
    batch = tokenizer(["What is 12 + 7?"], return_tensors="pt").to(model.device)
    with torch.no_grad():
        generated = model.generate(**batch, max_new_tokens=16, do_sample=False)
    new = generated[0, batch["input_ids"].shape[1]:]
    return {"loaded": loaded, "params": sum(p.numel() for p in model.parameters()),
            "new_tokens": int(new.numel()), "text": tokenizer.decode(new), "seconds": round(time.monotonic() - started, 1),
            "world_size": config.get("world_size")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="bf16,qlora")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--prompts", type=int, default=8, help="Prompts per step.")
    parser.add_argument("--generations", type=int, default=8, help="Completions per prompt.")
    parser.add_argument("--completion-length", type=int, default=128)
    parser.add_argument("--timeout", type=float, default=300, help="Seconds per training run.")
    parser.add_argument("--deadline", type=float, default=0, help="Seconds for everything (0: no limit); "
                        "a mode that cannot get 60 s is skipped.")
    parser.add_argument("--tiny", action="store_true", help="The default tiny shape (a CPU smoke test).")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="More overrides.")
    parser.add_argument("--out", help="Write the figures as JSON here (after every mode).")
    parser.add_argument("--logs", help="A folder for each run's log tail.")
    args = parser.parse_args()
    completions = args.prompts * args.generations
    base = [f"grpo.per_device_train_batch_size={completions}", f"grpo.num_generations={args.generations}",
            f"grpo.max_completion_length={args.completion_length}", "grpo.beta=0.0",
            "rewards=[format, {name: length, params: {target: 200}}]"]
    if not args.tiny:
        base += [f"model.builtin.{k}={v}" for k, v in SHAPE_05B.items()]
    base += args.sets
    os.environ.setdefault("GRPO_HOST_CACHE", str(Path(tempfile.gettempdir()) / "grpo-host-bench-cache"))
    workdir = Path(tempfile.mkdtemp(prefix="torchrun-fsdp-"))
    results: dict = {"shape": "tiny" if args.tiny else SHAPE_05B, "completions_per_step": completions,
                     "completion_length": args.completion_length, "steps": args.steps, "modes": {}}
    modes = args.modes.split(",")
    started = time.monotonic()
    for mode in modes:
        left = args.deadline - (time.monotonic() - started) - 25 if args.deadline else args.timeout
        if left < 60:
            results["modes"][mode] = {"skipped": f"{left:.0f} s left of --deadline"}
            continue
        out = workdir / mode
        code, log, seconds = train(out, args.steps, base + MODES[mode], min(args.timeout, left))
        entry: dict = {"exit_code": code, "run_seconds": round(seconds, 1)}
        if args.logs:
            Path(args.logs).mkdir(parents=True, exist_ok=True)
            (Path(args.logs) / f"{mode}.log").write_text(log[-60000:])
        try:
            if code != 0:
                raise RuntimeError(f"grpo-host train exited {code}:\n{log[-2500:]}")
            entry.update(figures(out, completions))
            shards = json.loads((out / "fsdp_shards.json").read_text())
            entry["fsdp"] = {k: shards[k] for k in ("world_size", "fsdp_version", "fsdp_units", "mixed_precision")}
            entry["fsdp"]["rank0"] = shards["ranks"][0]
            entry["reload"] = reload_and_generate(out, mode)
        except Exception as exc:  # noqa: BLE001 - keep the other modes' figures
            entry["error"] = str(exc)[-3000:]
        results["modes"][mode] = entry
        if "error" in entry and mode in FALLBACK and FALLBACK[mode] not in modes:
            modes.append(FALLBACK[mode])
        print(mode, json.dumps(entry, indent=1), flush=True)
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
