"""How the policy samples its completions (``generation.speed``): TRL's default, a static KV
cache, or a static cache with transformers' compiled decode step; with LoRA/QLoRA, from a merged
copy of the weights (``training/sampling_copy.py``) where one fits.

Applied to the built trainer (its ``generation_config``), so the loss and log-probs are computed
as before; the choice and why are logged and kept in ``run.json``.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from typing import TYPE_CHECKING, Any

from grpo_host.config import GENERATION_OWNERS, ConfigError, RunConfig
from grpo_host.training.process import cuda

if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.training.model import BuiltModel

log = logging.getLogger("grpo_host.training")


def generation_choice(config: RunConfig, *, cuda: bool, sharded: bool) -> tuple[str, str]:
    """``(path, why)`` for ``generation.speed``: path is ``off``, ``static`` or ``static-compile``.

    The auto rule follows what bench/README.md measured (one H200, 0.5B shape): a static KV
    cache lets transformers compile the decode step (CUDA graphs), several times TRL's default
    tokens/s, because the default loop pays per-token launch overhead, not math. That holds for
    full fine-tuning, LoRA and QLoRA (LoRA/QLoRA sample from a merged copy where one fits:
    :func:`apply_generation_speed`); FSDP/DeepSpeed keep TRL's default unless asked explicitly.
    """
    speed = config.generation.speed
    # An explicit speed beside one of these is refused when the config is loaded (RunConfig._cross).
    owner = next((k for k in GENERATION_OWNERS if config.grpo.get(k)), None)
    if owner:
        return "off", f"grpo.{owner} is set: TRL's own generation settings apply"
    if speed != "auto":
        why = "set in the config"
        if speed == "static-compile" and not cuda:
            why += " (no CUDA GPU: transformers compiles only there, so this runs as a static cache alone)"
        return speed, why
    if not cuda:
        return "off", "auto on CPU: TRL's default (transformers compiles the decode step only on GPUs)"
    if sharded:
        return "off", "auto with FSDP/DeepSpeed: TRL's default (the fast path is untested on sharded weights)"
    kind = "QLoRA" if config.quantization.load_in_4bit else "LoRA" if config.peft.enabled else None
    return "static-compile", "auto on a CUDA GPU" + (
        f" ({kind})" if kind else ""
    ) + ": static KV cache with a compiled decode step"


# A merged sampling copy is taken only while it leaves most of the GPU to training.
_COPY_SHARE_OF_FREE = 0.5
_SAMPLING_ENV = "GRPO_HOST_LORA_SAMPLING"  # merged | adapters: forces one (bench/gpu_sampling.py)


def apply_generation_speed(trainer: Any, config: RunConfig, built: BuiltModel) -> dict[str, Any]:
    """Set the trainer's generation config for ``generation.speed``; say which path and why.

    TRL builds ``trainer.generation_config`` once, with ``disable_compile=True``, and passes it
    to every ``model.generate`` call; changing it after the trainer is built is the one place
    that reaches sampling without touching how the loss or the log-probs are computed (those run
    the model's ordinary forward on the sampled ids). Compiled decoding stays valid while the
    optimizer updates the weights: it updates them in place, so the captured graphs read the
    new values. With LoRA/QLoRA the policy samples from a merged copy (:func:`lora_sampling`).
    """
    sharded = bool(
        getattr(trainer, "is_fsdp_enabled", False) or getattr(trainer, "is_deepspeed_enabled", False)
    )
    path, why = generation_choice(config, cuda=cuda(), sharded=sharded)
    gen = getattr(trainer, "generation_config", None)
    if path != "off" and gen is None:
        path, why = "off", "TRL generates without a transformers generation config here (vLLM)"
    result: dict[str, Any] = {"path": path, "why": why}
    if path != "off" and gen is not None:
        gen.cache_implementation = "static"
        gen.disable_compile = path != "static-compile"
        kwargs = getattr(trainer, "generation_kwargs", None)
        if isinstance(kwargs, dict):  # TRL's copy of the same settings (used on transformers < 5)
            kwargs["cache_implementation"] = "static"
        if (
            hasattr(gen, "max_cache_len")
            and os.environ.get("GRPO_HOST_STATIC_CACHE_LEN", "").lower() != "off"
        ):
            gen.max_cache_len = static_cache_length(trainer)
            result["max_cache_len"] = gen.max_cache_len
        if built.peft_config is not None:
            result["sampling"], result["sampling_why"] = lora_sampling(trainer, config, built)
    log.info(
        "generation: %s (%s)%s",
        path,
        why,
        f"; sampling from {result['sampling']} ({result['sampling_why']})" if "sampling" in result else "",
    )
    if path == "off" and not config.grpo.get("use_vllm") and importlib.util.find_spec("vllm") is not None:
        log.info("generation: vllm is installed; grpo.use_vllm: true makes TRL generate with it instead")
    return result


_PROMPTS_MEASURED = 2048
_CACHE_ROUND = 64


def static_cache_length(trainer: Any) -> int | None:
    """The static KV cache's length: the longest prompt of (the first rows of) the training data
    plus ``max_completion_length``, rounded up to 64 tokens.

    transformers sizes a static cache for the call at hand and reallocates it, and recompiles
    the decode step, whenever a later batch has a longer prompt; with prompts of varying length
    that is a recompile every few steps. Sized once for the data, the cache is reused. A prompt
    longer than any measured still works: transformers grows the cache that once."""
    data = getattr(trainer, "train_dataset", None)
    tok = getattr(trainer, "processing_class", None)
    completion = getattr(trainer, "max_completion_length", None)
    if data is None or tok is None or not completion or "prompt" not in getattr(data, "column_names", ()):
        return None
    longest = 0
    for i in range(min(len(data), _PROMPTS_MEASURED)):
        prompt = data[i]["prompt"]
        try:
            ids = (
                tok.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True, return_dict=False)
                if isinstance(prompt, list)
                else tok(prompt)["input_ids"]
            )
        except Exception:  # noqa: BLE001 - a prompt TRL will shape itself (images, tools): leave sizing to it
            return None
        longest = max(longest, len(ids))
    return -(-(longest + completion) // _CACHE_ROUND) * _CACHE_ROUND


def lora_sampling(trainer: Any, config: RunConfig, built: BuiltModel) -> tuple[str, str]:
    """``("merged copy" | "adapters", why)``: where a LoRA/QLoRA policy samples from.

    bench/README.md measured a merged bf16 copy (base weights, 4-bit ones dequantized, plus the
    adapters' deltas, rewritten before every generate) against decoding through the adapters:
    the copy decodes like a fully fine-tuned model. It costs one bf16 copy of the base weights,
    so it is taken only where that fits in half the free GPU memory; otherwise, and for adapter
    kinds it cannot merge, the policy samples through its adapters.
    """
    import torch

    from grpo_host.training import sampling_copy

    model = trainer.accelerator.unwrap_model(trainer.model)
    forced = os.environ.get(_SAMPLING_ENV, "").strip().lower()
    if forced not in ("", "merged", "adapters"):
        raise ConfigError(f"{_SAMPLING_ENV}={forced!r}: use merged or adapters (or leave it unset)")
    if forced == "adapters":
        return "adapters", f"{_SAMPLING_ENV}=adapters"
    reason = sampling_copy.unsupported(model)
    if reason:
        return "adapters", f"no merged copy: {reason}"
    dtype = getattr(torch, config.quantization.compute_dtype if built.quantized else built.dtype, None)
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        dtype = torch.float32
    need = sampling_copy.copy_bytes(model, dtype)
    if cuda() and forced != "merged":
        free, _ = torch.cuda.mem_get_info()
        if need > _COPY_SHARE_OF_FREE * free:
            return "adapters", (
                f"a merged copy needs {need / 2**30:.1f} GiB, over half the {free / 2**30:.1f} GiB free"
            )
    sampling_copy.attach(model, sampling_copy.MergedSampler(model, dtype))
    return (
        "merged copy",
        f"{need / 2**30:.2f} GiB, {str(dtype).removeprefix('torch.')}, refreshed before each generate",
    )


def compile_counters() -> dict[str, int]:
    """torch.compile's running totals in this process (a frame compiled after warm-up is a
    recompile): logged each step on the compiled path so a run shows whether it recompiles."""
    from torch._dynamo.utils import counters

    return {
        "generation/compiled_frames": int(counters["frames"]["ok"]),
        "generation/graph_breaks": int(sum(counters["graph_break"].values())),
        "generation/cudagraph_skips": int(counters["inductor"].get("cudagraph_skips", 0)),
    }
