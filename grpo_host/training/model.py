"""Build the policy: weights dtype, attention implementation, 4-bit quantization, LoRA.

Attention: Flash Attention 2 when ``flash_attn`` imports and a CUDA GPU is there, else SDPA;
the choice is logged. 4-bit NF4 goes through bitsandbytes, imported only when asked for.
LoRA is returned as a ``peft.LoraConfig`` for GRPOTrainer to apply (it also handles the
reference model by switching the adapter off).
"""

from __future__ import annotations

import importlib
import logging
import os
from dataclasses import dataclass
from typing import Any

from grpo_host.config import BUILTIN_MODEL, ConfigError, RunConfig

log = logging.getLogger("grpo_host.training")


@dataclass
class BuiltModel:
    model: Any
    tokenizer: Any
    peft_config: Any | None
    dtype: str
    attention: str
    quantized: bool
    source: str  # the folder or id the weights came from


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def resolve_dtype(name: str) -> str:
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bfloat16"
    return "float32"


def resolve_precision(name: str) -> str:
    """``auto`` -> ``bf16`` on a GPU that supports it, else ``no``."""
    import torch

    if name != "auto":
        return name
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def resolve_attention(name: str) -> tuple[str, str]:
    """``(implementation, why)``."""
    if name != "auto":
        return name, "set in model.attn_implementation"
    if not cuda_available():
        return "sdpa", "no CUDA GPU"
    try:
        importlib.import_module("flash_attn")
    except Exception as exc:  # noqa: BLE001 - missing, or built for another torch/CUDA
        return "sdpa", f"flash_attn does not import ({type(exc).__name__})"
    return "flash_attention_2", "flash_attn imports"


def build_model(config: RunConfig, device_index: int | None = None) -> BuiltModel:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    section = config.model
    source = section.id
    if source == BUILTIN_MODEL:  # another builtin: id, or model.builtin without it, is refused by the config
        from grpo_host.training.builtin import ensure_tiny_qwen2

        source = str(ensure_tiny_qwen2(section.builtin))

    dtype = resolve_dtype(section.dtype)
    attention, why = resolve_attention(section.attn_implementation)
    kwargs: dict[str, Any] = {
        "dtype": getattr(torch, dtype),
        "attn_implementation": attention,
        "trust_remote_code": section.trust_remote_code,
    }
    if section.revision:
        kwargs["revision"] = section.revision
    quant = config.quantization
    if quant.load_in_4bit:
        if not cuda_available():
            raise ConfigError("quantization.load_in_4bit needs a CUDA GPU (bitsandbytes 4-bit); none is visible")
        try:
            importlib.import_module("bitsandbytes")
        except Exception as exc:  # noqa: BLE001
            raise ConfigError(
                f"quantization.load_in_4bit needs bitsandbytes, which does not import here ({exc}); "
                "`pip install 'grpo-host[quant]'`"
            )
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=quant.quant_type,
            bnb_4bit_use_double_quant=quant.double_quant,
            bnb_4bit_compute_dtype=getattr(torch, quant.compute_dtype),
            # A sharding backend (torchrun-fsdp) asks for the 4-bit weights packed in a float
            # dtype: FSDP shards float tensors only. Default: bitsandbytes' uint8.
            bnb_4bit_quant_storage=getattr(torch, os.environ.get("GRPO_HOST_BNB_QUANT_STORAGE") or "uint8"),
        )
        kwargs["device_map"] = {"": device_index or 0}
    log.info("model %s: dtype %s, attention %s (%s)%s", section.id, dtype, attention, why,
             ", 4-bit " + quant.quant_type if quant.load_in_4bit else "")
    try:
        model = AutoModelForCausalLM.from_pretrained(source, **kwargs)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.id: could not load {section.id!r}: {exc}")
    tokenizer = AutoTokenizer.from_pretrained(
        section.tokenizer or source, padding_side="left", trust_remote_code=section.trust_remote_code,
        **({"revision": section.revision} if section.revision and not section.tokenizer else {}),
    )
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    if quant.load_in_4bit:
        from peft import prepare_model_for_kbit_training

        # Casts the norms and embeddings to fp32 and lets gradients reach the adapters through
        # checkpointed blocks, as QLoRA needs.
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    return BuiltModel(model, tokenizer, lora_config(config), dtype, attention, quant.load_in_4bit, source)


def lora_config(config: RunConfig) -> Any | None:
    section = config.peft
    if not section.enabled:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=section.r,
        lora_alpha=section.alpha,
        lora_dropout=section.dropout,
        target_modules=section.target_modules,
        bias=section.bias,
        modules_to_save=section.modules_to_save,
        task_type="CAUSAL_LM",
    )
