"""GPU: how to sample from a LoRA/QLoRA policy: through its adapters or from a merged copy.

One process, the built-in Qwen2 with the 0.5B shape (random weights, adapters with random
non-zero B as after some training), one batch of arithmetic prompts as TRL builds them (left
padded, chat template), sampled the way GRPO samples (temperature 1, no top-k/top-p). Paths:

- ``adapters/default``: PEFT model, TRL's default (dynamic KV cache, no compile)
- ``adapters/static-compile``: PEFT model, static KV cache with transformers' compiled decode step
- ``merged/static-compile``: :class:`grpo_host.training.sampling_copy.MergedSampler` (base weights,
  4-bit ones dequantized, plus ``B @ A * scale``, written into a plain bf16 model before each call)

Each path: warm-up calls (compile), then timed calls; median tokens/s and range, peak memory
over the path, torch._dynamo frame compiles and graph breaks and inductor's cudagraph skips
after warm-up (a compile after warm-up is a recompile), and for the merged copy the share of
greedy tokens it agrees with the adapters on, position by position until the first difference.
Results are written to ``--out`` after every path, so a cut-off run keeps what it measured.

    python bench/gpu_sampling.py --modes lora,qlora --out $OUT/sampling.json
    python bench/gpu_sampling.py --tiny --modes lora --new-tokens 8   # the code path on CPU
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_train import MODES, SHAPE_05B  # noqa: E402

PATHS = ("adapters/default", "adapters/static-compile", "merged/static-compile")


def compile_counters() -> dict:
    from torch._dynamo.utils import counters

    return {"frames_ok": int(counters["frames"]["ok"]), "graph_breaks": int(sum(counters["graph_break"].values())),
            "cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0))}


def build(mode: str, tiny: bool):
    import torch
    from peft import get_peft_model

    from grpo_host.cli.common import parse_sets
    from grpo_host.config import load_config
    from grpo_host.training.data import load_datasets
    from grpo_host.training.model import build_model

    sets = list(MODES[mode]) + ([] if tiny else [f"model.builtin.{k}={v}" for k, v in SHAPE_05B.items()])
    config = load_config(None, parse_sets(sets))
    built = build_model(config, 0 if torch.cuda.is_available() else None)
    base = built.model if built.quantized or not torch.cuda.is_available() else built.model.to("cuda")
    model = get_peft_model(base, built.peft_config)
    gen = torch.Generator().manual_seed(0)
    for name, p in model.named_parameters():
        if "lora_B" in name:  # as after training: zero B would make every path the base model
            p.data.copy_(torch.randn(p.shape, generator=gen) * 0.02)
    model.train()  # TRL samples with the policy in train mode (LoRA dropout on), as here
    data, _ = load_datasets(config.data, built.tokenizer)
    return model, built, data


def prompts(built, data, batch: int, device):
    tok = built.tokenizer
    texts = []
    for i in range(batch):
        row = data[i % len(data)]["prompt"]
        texts.append(tok.apply_chat_template(row, add_generation_prompt=True, tokenize=False)
                     if isinstance(row, list) else row)
    enc = tok(texts, return_tensors="pt", padding=True, padding_side="left")
    return {k: v.to(device) for k, v in enc.items()}


def gen_config(built, new_tokens: int, path: str, greedy: bool = False):
    from transformers import GenerationConfig

    tok = built.tokenizer
    config = GenerationConfig(max_new_tokens=new_tokens, do_sample=not greedy, temperature=1.0, top_p=1.0, top_k=0,
                              pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id,
                              bos_token_id=tok.bos_token_id, disable_compile=True)
    if path.endswith("static-compile"):
        config.cache_implementation = "static"
        config.disable_compile = False
    return config


def run_path(model, built, inputs, path: str, args) -> tuple[dict, object]:
    import torch

    from grpo_host.training.sampling_copy import MergedSampler

    cuda = torch.cuda.is_available()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base_mem = torch.cuda.memory_allocated() if cuda else 0
    sampler = None
    built_at = time.perf_counter()
    if path.startswith("merged"):
        sampler = MergedSampler(model, torch.bfloat16 if cuda else torch.float32)
        generate = sampler.generate
    else:
        generate = model.generate
    copy_s = time.perf_counter() - built_at
    config = gen_config(built, args.new_tokens, path)
    times, tokens = [], []
    before = None
    for i in range(args.warmup + args.repeats):
        if i == args.warmup:
            before = compile_counters()
        if cuda:
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.no_grad():
            out = generate(**inputs, generation_config=config)
        if cuda:
            torch.cuda.synchronize()
        elapsed = time.perf_counter() - t
        new = out[:, inputs["input_ids"].shape[1]:]
        n = int((new != built.tokenizer.pad_token_id).sum())
        if i >= args.warmup:
            times.append(elapsed)
            tokens.append(n)
        else:
            print(f"  {path} warm-up call {i + 1}: {elapsed:.2f} s", flush=True)
    after = compile_counters()
    rates = [n / t for n, t in zip(tokens, times, strict=True)]
    fig = {"tokens_per_s": round(statistics.median(rates), 1), "tokens_per_s_range": [round(min(rates), 1),
           round(max(rates), 1)], "call_s": [round(t, 3) for t in times], "tokens_per_call": tokens,
           "warmup_calls": args.warmup, "recompiles_after_warmup": after["frames_ok"] - before["frames_ok"],
           "graph_breaks_after_warmup": after["graph_breaks"] - before["graph_breaks"], "counters": after,
           "peak_extra_gib": round((torch.cuda.max_memory_allocated() - base_mem) / 2**30, 3) if cuda else None}
    if sampler is not None:
        t = time.perf_counter()
        for _ in range(3):
            sampler.refresh()
        if cuda:
            torch.cuda.synchronize()
        fig["refresh_ms"] = round((time.perf_counter() - t) / 3 * 1000, 2)
        fig["copy_build_s"] = round(copy_s, 2)
    return fig, sampler


def agreement(model, sampler, built, inputs, args) -> dict:
    """Greedy tokens of the merged copy against the adapters (both static cache, both compiled)."""
    import torch

    model.eval()  # no dropout: the adapters' own greedy tokens are deterministic
    config = gen_config(built, args.agree_tokens, "x/static-compile", greedy=True)
    with torch.no_grad():
        a = model.generate(**inputs, generation_config=config)[:, inputs["input_ids"].shape[1]:]
        b = sampler.generate(**inputs, generation_config=config)[:, inputs["input_ids"].shape[1]:]
    model.train()
    same = (a == b).int()
    prefix = same.cumprod(dim=1).sum(dim=1)  # tokens equal before the first difference
    return {"rows_identical": int((prefix == a.shape[1]).sum()), "rows": a.shape[0],
            "mean_equal_prefix": round(float(prefix.float().mean()), 1), "tokens": a.shape[1]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modes", default="lora,qlora")
    parser.add_argument("--paths", default=",".join(PATHS))
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--agree-tokens", type=int, default=64)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true")
    parser.add_argument("--deadline", type=float, default=None, help="Seconds: start no path after this.")
    parser.add_argument("--out")
    args = parser.parse_args()
    import torch

    began = time.monotonic()
    results: dict = {"batch": args.batch, "new_tokens": args.new_tokens, "gpu": torch.cuda.get_device_name(0)
                     if torch.cuda.is_available() else "none (CPU)", "torch": torch.__version__, "modes": {}}

    def save() -> None:
        if args.out:
            Path(args.out).write_text(json.dumps(results, indent=2))

    for mode in args.modes.split(","):
        entry = results["modes"].setdefault(mode, {})
        try:
            model, built, data = build(mode, args.tiny)
        except Exception as exc:  # noqa: BLE001 - keep the other mode's figures
            entry["error"] = f"build: {exc!r}"[-2000:]
            save()
            continue
        device = next(model.parameters()).device
        inputs = prompts(built, data, args.batch, device)
        entry["prompt_tokens"] = int(inputs["input_ids"].shape[1])
        samplers = {}
        for path in args.paths.split(","):
            if args.deadline is not None and time.monotonic() - began > args.deadline:
                entry[path] = {"error": "skipped: deadline"}
                continue
            try:
                entry[path], samplers[path] = run_path(model, built, inputs, path, args)
            except Exception:  # noqa: BLE001
                import traceback

                entry[path] = {"error": traceback.format_exc()[-2500:]}
            print(mode, path, json.dumps(entry[path]), flush=True)
            save()
        sampler = samplers.get("merged/static-compile")
        if sampler is not None and (args.deadline is None or time.monotonic() - began < args.deadline):
            try:
                entry["greedy_agreement"] = agreement(model, sampler, built, inputs, args)
            except Exception as exc:  # noqa: BLE001
                entry["greedy_agreement"] = {"error": repr(exc)[-1500:]}
            print(mode, "greedy agreement", entry["greedy_agreement"], flush=True)
        save()
        del model, samplers, sampler
        if torch.cuda.is_available():
            torch._dynamo.reset()  # the next mode compiles its own graphs
            torch.cuda.empty_cache()
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
