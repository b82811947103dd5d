"""The `torchrun-fsdp` training backend for grpo-host.

It launches the host's training worker with ``torchrun`` (processes per node, nodes, node
rank and rendezvous endpoint from the backend's params or from the cluster's environment,
SageMaker's included) and shards the model with FSDP2 through the trainer's own FSDP
support: for models that do not fit with data parallelism. The launcher side lives in
``launch.py``, what runs inside each worker process in ``fsdp.py``.

Importing this module is cheap: it touches neither torch nor accelerate.
"""

from __future__ import annotations

from typing import Any, Literal

import grpo_host
from grpo_backend_torchrun.launch import NAME, BackendError, Topology, build_command, resolve_topology
from grpo_host.backends import BackendParam, BackendSpec, WorkerSetup

PARAMS = (
    BackendParam("nproc_per_node", int | Literal["auto"], "auto",
                 "Processes on this node; auto = the cluster's setting (SM_NUM_GPUS, PET_NPROC_PER_NODE), "
                 "else one per visible GPU, else 1 on CPUs."),
    BackendParam("nnodes", int | Literal["auto"], "auto", "Nodes taking part; auto = SM_HOSTS, PET_NNODES, NNODES, "
                 "SLURM_NNODES, else 1."),
    BackendParam("node_rank", int | Literal["auto"], "auto", "This node's rank; auto = its place in SM_HOSTS, "
                 "PET_NODE_RANK, NODE_RANK, SLURM_NODEID, else 0."),
    BackendParam("rdzv_endpoint", str | Literal["auto"], "auto", "HOST:PORT of the rank-0 node; auto = SageMaker's "
                 "first host, PET_RDZV_ENDPOINT or MASTER_ADDR:MASTER_PORT; one node needs none."),
    BackendParam("rdzv_backend", Literal["static", "c10d"], "static",
                 "static: --master-addr/--master-port with fixed ranks; c10d: torchrun's elastic rendezvous."),
    BackendParam("rdzv_id", str, "grpo-host", "The c10d rendezvous id (the same on every node)."),
    BackendParam("max_restarts", int, 0, "torchrun's restarts of failed workers."),
    # wrap_layers takes one class name as a plain string too; shown as what is usually written.
    BackendParam("wrap_layers", list[str] | str, "auto",
                 "Module classes FSDP wraps one unit each; auto = the model's _no_split_modules "
                 "(its decoder layer, e.g. Qwen2DecoderLayer).", text="list[str] | 'auto'"),
    BackendParam("reshard_after_forward", bool, True,
                 "true: full shard (parameters freed after forward); false: keep them gathered until "
                 "backward (more memory, fewer all-gathers)."),
    BackendParam("activation_checkpointing", bool | Literal["auto"], "auto",
                 "FSDP's activation checkpointing of the wrapped layers; auto = the run's "
                 "gradient_checkpointing (QLoRA keeps peft's own)."),
    BackendParam("cpu_offload", bool, False, "Keep sharded parameters and gradients on the CPU between uses "
                 "(GPU memory for speed)."),
    BackendParam("quant_storage", Literal["auto", "bfloat16", "float16", "float32", "uint8"], "auto",
                 "QLoRA: the dtype bitsandbytes packs 4-bit weights into; auto = quantization.compute_dtype, "
                 "so FSDP shards them; uint8 keeps them whole on every rank."),
    BackendParam("fsdp_config", dict, {}, "More TrainingArguments.fsdp_config keys, over the backend's."),
)


def prepare_worker(params: dict[str, Any], model: Any, config: Any) -> WorkerSetup:
    from grpo_backend_torchrun.fsdp import prepare_worker as prepare

    return prepare(params, model, config)


TORCHRUN_FSDP = BackendSpec(
    name=NAME,
    description="torchrun + FSDP2 (full shard, decoder layers wrapped, full state dict on save); "
                "one or many nodes, SageMaker's included; LoRA and 4-bit QLoRA.",
    build_command=build_command,
    params=PARAMS,
    prepare_worker=prepare_worker,
)


@grpo_host.hookimpl
def grpo_backends() -> list[BackendSpec]:
    return [TORCHRUN_FSDP]


__all__ = ["NAME", "PARAMS", "TORCHRUN_FSDP", "BackendError", "Topology", "build_command", "grpo_backends",
           "prepare_worker", "resolve_topology"]
