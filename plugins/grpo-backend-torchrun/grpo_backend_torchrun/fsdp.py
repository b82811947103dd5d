"""The worker side of the torchrun-fsdp backend: FSDP through the trainer's own FSDP support.

``prepare_worker`` runs in every process torchrun starts, once the model is built. It finds
the layer class to wrap (the model's ``_no_split_modules``, e.g. ``Qwen2DecoderLayer``),
checks what cannot work, and returns the GRPOConfig fields that turn FSDP on
(``fsdp`` + ``fsdp_config``: FSDP2, full shard, auto wrap of those layers, activation
checkpointing, CPU offload, the full state dict gathered on save) plus a callback that
records what each rank really holds.

Why the record: a run can ask for FSDP and silently get plain data parallelism (the
reference scripts this project replaces did). Accelerate 1.15, for one, keeps a FSDP plugin
only on GPU-like devices: on CPUs it drops it and wraps the model in DDP. So on CPUs this
module lets accelerate's own FSDP2 path run over the gloo group (``_allow_fsdp_on_cpu``), and
on every device ``ShardRecord`` writes ``fsdp_shards.json`` (each rank's local parameter
count against the full count) and stops the run when the model came out unsharded.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections import Counter
from pathlib import Path
from typing import Any

from grpo_backend_torchrun.launch import QUANT_STORAGE_ENV, BackendError
from grpo_host.backends import WorkerSetup

log = logging.getLogger("grpo_host.training")

SHARDS_FILE = "fsdp_shards.json"


# -- the layer to wrap ---------------------------------------------------------------------------
def module_class_counts(model: Any) -> Counter:
    return Counter(type(m).__name__ for m in model.modules())


def wrap_layer_classes(model: Any, wanted: Any = "auto") -> list[str]:
    """The decoder-layer classes FSDP wraps one unit each: ``wanted`` when given, else the model's
    ``_no_split_modules`` (transformers' list of blocks that must stay whole)."""
    counts = module_class_counts(model)
    if wanted not in ("auto", None, "", []):
        names = [wanted] if isinstance(wanted, str) else [str(w) for w in wanted]
        missing = [n for n in names if n not in counts]
        if missing:
            raise BackendError(
                f"wrap_layers names {', '.join(missing)}, which {type(model).__name__} does not contain; "
                f"repeated blocks in this model: {_repeated(counts)}")
        return names
    declared = getattr(model, "_no_split_modules", None) or []
    names = [n for n in declared if n in counts]
    if not names:
        raise BackendError(
            f"{type(model).__name__} names no decoder layer to wrap (its _no_split_modules is "
            f"{list(declared) or 'empty'}), so FSDP would shard it as one unit; set "
            f"backend.params.wrap_layers to the class of its repeated block: {_repeated(counts)}")
    return names


def _repeated(counts: Counter) -> str:
    skip = {"Linear", "Dropout", "Embedding", "ModuleList", "Identity", "LayerNorm", "Conv1D", "SiLU", "GELU",
            "ReLU", "Linear4bit", "Linear8bitLt", "ParametrizationList"}
    found = [f"{name} (x{n})" for name, n in counts.most_common() if n > 1 and name not in skip
             and not name.endswith(("Norm", "Activation", "RotaryEmbedding", "Act"))]
    return ", ".join(found[:6]) or "(none found)"


# -- checks that need the worker's view ---------------------------------------------------------
def check_local_devices(cuda: bool) -> None:
    import torch

    local = int(os.environ.get("LOCAL_WORLD_SIZE") or 1)
    if cuda and local > torch.cuda.device_count():
        raise BackendError(
            f"{local} processes on this node but {torch.cuda.device_count()} CUDA devices: set "
            f"backend.params.nproc_per_node to {torch.cuda.device_count()} or fewer")


def check_gloo_sharding() -> None:
    """FSDP2 on CPUs reduce-scatters and all-gathers over gloo; a torch whose gloo cannot is
    refused here with a clear message, before the trainer fails deep inside a backward."""
    import torch
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return
    world = dist.get_world_size()
    try:
        out = torch.zeros(1)
        dist.reduce_scatter_tensor(out, torch.ones(world))
        gathered = torch.zeros(world)
        dist.all_gather_into_tensor(gathered, out)
    except (RuntimeError, NotImplementedError, AttributeError) as exc:
        raise BackendError(
            f"this torch ({torch.__version__}) cannot shard on CPUs: gloo refused a reduce-scatter ({exc}). "
            "Upgrade torch, run on CUDA GPUs, or train without sharding: --backend accelerate")
    if float(gathered.sum()) != float(world * world):
        raise BackendError(f"gloo's reduce-scatter gave a wrong sum on this torch ({torch.__version__}); "
                           "upgrade torch or run on CUDA GPUs")


def check_quantized(model: Any, storage: str = "auto") -> None:
    """4-bit weights shard only when bitsandbytes packs them into a float dtype (unless the
    user chose uint8 storage: then they stay whole on every rank)."""
    if storage == "uint8":
        return
    for name, param in model.named_parameters():
        if type(param).__name__ == "Params4bit" and not param.is_floating_point():
            raise BackendError(
                f"the 4-bit weights ({name}, ...) are packed as {param.dtype}, which FSDP cannot shard; the model "
                f"must be built with bnb_4bit_quant_storage set to a float dtype, which this backend asks for "
                f"through {QUANT_STORAGE_ENV} when it launches the run: start it with "
                "`grpo-host train --backend torchrun-fsdp`")


# -- accelerate on CPUs ------------------------------------------------------------------------
_PATCHED = False


def _allow_fsdp_on_cpu() -> None:
    """Let accelerate keep the trainer's FSDP plugin when the processes run on CPUs.

    accelerate (1.15) turns a FSDP plugin into ``DistributedType.FSDP`` only for GPU-like
    distributed types; on ``MULTI_CPU`` it drops the plugin without a word and the trainer wraps
    the model in DDP. Its FSDP2 code itself runs on CPUs (``fully_shard`` over the gloo group),
    so after its own set-up this turns the type to FSDP and keeps the plugin, as it does on GPUs.
    Where accelerate already did so, this changes nothing.
    """
    global _PATCHED
    if _PATCHED:
        return
    from accelerate.state import AcceleratorState, PartialState
    from accelerate.utils import DistributedType

    original = AcceleratorState.__init__

    def __init__(self, *args: Any, fsdp_plugin: Any = None, **kwargs: Any) -> None:
        original(self, *args, fsdp_plugin=fsdp_plugin, **kwargs)
        if fsdp_plugin is not None and self.distributed_type == DistributedType.MULTI_CPU:
            self.distributed_type = DistributedType.FSDP
            if self._mixed_precision != "no":
                fsdp_plugin.set_mixed_precision(self._mixed_precision)
            self.fsdp_plugin = fsdp_plugin
            PartialState._shared_state["distributed_type"] = DistributedType.FSDP

    AcceleratorState.__init__ = __init__
    _PATCHED = True


# -- the record of what each rank holds ----------------------------------------------------------
def shard_counts(model: Any) -> dict[str, Any]:
    """This rank's parameter count against the full model's: a DTensor's local shard is what
    the rank holds; a plain tensor is held whole."""
    local = full = sharded = 0
    for param in model.parameters():
        to_local = getattr(param, "to_local", None)
        full += param.numel()
        if to_local is not None:
            local += to_local().numel()
            sharded += 1
        else:
            local += param.numel()
    return {"local_numel": local, "full_numel": full, "sharded_tensors": sharded}


def _make_shard_record(output_dir: str, wrap: list[str], fsdp_config: dict[str, Any]) -> Any:
    from transformers import TrainerCallback

    class ShardRecord(TrainerCallback):
        """Writes ``fsdp_shards.json`` (main process) with every rank's own counts, and stops
        a run whose model came out unsharded."""

        def on_train_begin(self, args, state, control, model=None, **kwargs):
            import torch.distributed as dist

            mine = shard_counts(model)
            mine.update(rank=int(os.environ.get("RANK", 0)), local_rank=int(os.environ.get("LOCAL_RANK", 0)),
                        host=socket.gethostname(), device=str(args.device), model_class=type(model).__name__)
            ranks = [mine]
            if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
                ranks = [None] * dist.get_world_size()
                dist.all_gather_object(ranks, mine)
            wrapped = Counter(type(m).__name__ for m in model.modules()
                              if type(m).__name__.startswith("FSDP") and type(m).__name__ != "FSDPModule")
            record = {
                "world_size": len(ranks),
                "fsdp_version": fsdp_config.get("version"),
                "wrap_layers": wrap,
                "fsdp_units": dict(wrapped),
                "activation_checkpointing": fsdp_config.get("activation_checkpointing"),
                "cpu_offload": fsdp_config.get("cpu_offload"),
                "mixed_precision": "bf16" if args.bf16 else "fp16" if args.fp16 else "no",
                "full_numel": mine["full_numel"],
                "ranks": sorted(ranks, key=lambda r: r["rank"]),
            }
            if state.is_world_process_zero:
                path = Path(output_dir) / SHARDS_FILE
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(record, indent=2), encoding="utf-8")
                share = mine["local_numel"] / max(1, mine["full_numel"])
                log.info("FSDP%s over %d process(es): rank 0 holds %s of %s parameters (%.1f%%); units: %s",
                         record["fsdp_version"], len(ranks), f"{mine['local_numel']:,}", f"{mine['full_numel']:,}",
                         100 * share, ", ".join(f"{k} x{v}" for k, v in wrapped.items()) or "none")
            if not all(r["sharded_tensors"] for r in ranks):
                raise BackendError(
                    f"FSDP was asked for but the model came out unsharded ({type(model).__name__}, "
                    f"{mine['sharded_tensors']} sharded tensors on rank {mine['rank']}): the trainer ran plain "
                    "data parallelism. Check the installed accelerate and transformers (see fsdp_shards.json)")

    return ShardRecord()


# -- the hook ----------------------------------------------------------------------------------
def prepare_worker(params: dict[str, Any], model: Any, config: Any) -> WorkerSetup:
    import torch

    cuda = torch.cuda.is_available()
    check_local_devices(cuda)
    if getattr(config.quantization, "load_in_4bit", False):
        check_quantized(model, params.get("quant_storage", "auto"))
    wrap = wrap_layer_classes(model, params.get("wrap_layers", "auto"))
    quantized = bool(getattr(config.quantization, "load_in_4bit", False))
    ac = params.get("activation_checkpointing", "auto")
    if ac == "auto":
        # QLoRA checkpoints through peft's prepare_model_for_kbit_training already (the model is
        # built that way); checkpointing twice would only cost time.
        ac = bool(config.gradient_checkpointing) and not quantized
    fsdp_config = {
        "version": 2,
        "reshard_after_forward": params.get("reshard_after_forward", True),
        "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
        "transformer_layer_cls_to_wrap": wrap,
        "activation_checkpointing": bool(ac),
        "cpu_offload": params.get("cpu_offload", False),
        # Gathered in full on save: the saved model loads in plain transformers.
        "state_dict_type": "FULL_STATE_DICT",
        "cpu_ram_efficient_loading": False,
    }
    fsdp_config.update(params.get("fsdp_config") or {})
    args: dict[str, Any] = {"fsdp": True, "fsdp_config": fsdp_config}
    if fsdp_config["activation_checkpointing"]:
        # FSDP's own checkpointing replaces the trainer's; the trainer refuses both at once.
        args["gradient_checkpointing"] = False
    if not cuda:
        args["use_cpu"] = True
        if "LOCAL_RANK" in os.environ:  # under torchrun: gloo, never MPI (accelerate's other CPU choice)
            args["ddp_backend"] = "gloo"
        check_gloo_sharding()
        _allow_fsdp_on_cpu()
    topology = os.environ.get("GRPO_HOST_TORCHRUN_TOPOLOGY")
    if topology and int(os.environ.get("RANK", 0)) == 0:
        log.info("torchrun-fsdp: %s; wrapping %s", topology, ", ".join(wrap))
    return WorkerSetup(trainer_args=args, callbacks=[_make_shard_record(config.output.dir, wrap, fsdp_config)])
