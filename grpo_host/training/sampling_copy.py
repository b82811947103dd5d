"""A merged copy of a LoRA/QLoRA policy that TRL samples from, refreshed before every generate.

Decoding through unmerged adapters runs two extra small matmuls (and, for QLoRA, a 4-bit
dequantization of every weight) at each of the hundreds of decoding steps of a batch. Here the
policy's base weights (dequantized when they are 4-bit) plus each adapter's ``B @ A * scale``
are written, in place, into a plain model of the base's architecture once per generate call;
TRL's ``model.generate`` is pointed at that copy, so sampling runs the full-fine-tuning fast path
(static KV cache, compiled decode step). The copy is outside the trained model: it is not in its
state dict, its optimizer or its saved adapter; the loss and log-probs still run the policy's own
forward with live adapters on the sampled ids. In-place writes keep the copy's tensors at fixed
addresses, so CUDA graphs captured for its decode step read the new weights.

Only plain LoRA on ``nn.Linear`` (or bitsandbytes 4-bit linear) layers is merged; anything else
(DoRA, LoRA on embeddings or convolutions, ``modules_to_save``, several active adapters)
leaves the policy to sample through its adapters (:func:`unsupported` says why).
"""

from __future__ import annotations

import copy as _copy
from typing import Any


def unsupported(peft_model: Any) -> str | None:
    """Why this policy cannot be merged into a sampling copy, or None when it can."""
    from peft.tuners.lora import LoraLayer

    config = getattr(peft_model, "peft_config", {}).get(getattr(peft_model, "active_adapter", None))
    if config is None:
        return "not a PEFT LoRA model"
    if getattr(config, "use_dora", False):
        return "DoRA adapters"
    if getattr(config, "modules_to_save", None):
        return "peft.modules_to_save is set"
    for name, module in peft_model.get_base_model().named_modules():
        if not isinstance(module, LoraLayer):
            continue
        if len(module.active_adapters) != 1:
            return f"{name} has {len(module.active_adapters)} active adapters"
        base = module.get_base_layer()
        if type(base).__name__ not in ("Linear", "Linear4bit") or getattr(base, "weight", None) is None:
            return f"LoRA on {name} ({type(base).__name__}) is not a linear layer"
        if getattr(module, "lora_magnitude_vector", None) and any(module.lora_magnitude_vector.values()):
            return "DoRA adapters"
    return None


def copy_bytes(peft_model: Any, dtype: Any) -> int:
    """Bytes the copy's weights take (every base parameter at ``dtype``, 4-bit ones unpacked)."""
    import torch

    total = 0
    for _, p in _base_parameters(peft_model):
        numel = _logical_numel(p)
        total += numel * torch.empty((), dtype=dtype).element_size()
    return total


class MergedSampler:
    """The policy's merged weights in a plain model of its architecture, for ``generate``."""

    def __init__(self, peft_model: Any, dtype: Any) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        base = peft_model.get_base_model()
        device = next(p.device for p in base.parameters())
        config = _copy.deepcopy(base.config)
        for attr in ("quantization_config", "_pre_quantization_dtype"):
            if hasattr(config, attr):
                delattr(config, attr)
        config.use_cache = True
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(config, dtype=dtype,
                                                     attn_implementation=base.config._attn_implementation)
        self.model = model.to_empty(device=device).eval().requires_grad_(False)
        for t in [*self.model.parameters(), *self.model.buffers()]:  # no stale device memory, ever
            t.data.zero_()
        self.model.tie_weights()  # to_empty gave the tied head its own (unset) tensor
        self.model.generation_config = _copy.deepcopy(base.generation_config)
        self.peft_model = peft_model
        self.dtype = dtype
        self.refreshes = 0
        mine = dict(self.model.named_parameters())
        theirs = dict(_base_parameters(peft_model))
        missing = sorted(set(mine) - set(theirs))
        if missing:
            raise ValueError(f"the sampling copy has parameters the policy lacks: {missing[:5]}")
        self._pairs = [(mine[name], theirs[name], _lora_of(peft_model, name)) for name in mine]
        buffers = dict(base.named_buffers())
        for name, buf in self.model.named_buffers():  # rotary frequencies: to_empty left them unset
            src = buffers.get(name)
            if src is not None and src.shape == buf.shape:
                buf.copy_(src)
        self.refresh()
        bad = [n for n, t in [*self.model.named_parameters(), *self.model.named_buffers()]
               if t.is_floating_point() and not bool(torch.isfinite(t).all())]
        if bad:
            raise ValueError(f"the merged sampling copy has non-finite values in {bad[:5]}")

    def refresh(self) -> None:
        """Write base + adapter deltas into the copy, in place (fixed addresses for CUDA graphs)."""
        import torch

        with torch.no_grad():
            for target, source, lora in self._pairs:
                weight = _dequantized(source, self.dtype)
                if lora is not None and not lora.disable_adapters and not lora.merged:
                    for adapter in lora.active_adapters:
                        if adapter in lora.lora_A:
                            weight = weight + lora.get_delta_weight(adapter).to(self.dtype)
                target.copy_(weight)
        self.refreshes += 1

    def generate(self, *args: Any, **kwargs: Any) -> Any:
        self.refresh()
        return self.model.generate(*args, **kwargs)


def attach(peft_model: Any, sampler: MergedSampler) -> None:
    """Route ``peft_model.generate`` (what TRL calls) to the sampler; the instance attribute
    shadows PEFT's method and leaves the module tree, state dict and saving untouched."""
    peft_model.__dict__["generate"] = sampler.generate
    peft_model.__dict__["_grpo_host_sampler"] = sampler


def _base_parameters(peft_model: Any):
    """``(name in the plain architecture, tensor)`` for every base weight of the policy."""
    for name, p in peft_model.get_base_model().named_parameters():
        if "lora_" in name:
            continue
        yield name.replace(".base_layer.", "."), p


def _lora_of(peft_model: Any, param_name: str) -> Any | None:
    from peft.tuners.lora import LoraLayer

    module_name, _, leaf = param_name.rpartition(".")
    if leaf != "weight":
        return None
    try:
        module = peft_model.get_base_model().get_submodule(module_name)
    except AttributeError:
        return None
    return module if isinstance(module, LoraLayer) else None


def _logical_numel(p: Any) -> int:
    state = getattr(p, "quant_state", None)
    if state is not None:
        import math

        return math.prod(state.shape)
    return p.numel()


def _dequantized(p: Any, dtype: Any) -> Any:
    state = getattr(p, "quant_state", None)
    if state is None:
        return p.detach().to(dtype)
    import bitsandbytes.functional as bnbf

    return bnbf.dequantize_4bit(p.data, state).to(dtype)
