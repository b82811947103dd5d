"""The host side of the torchrun-fsdp backend: where the processes go, and the torchrun argv.

The cluster's shape (processes per node, nodes, this node's rank, the rendezvous endpoint)
comes from the backend's params when they are set, else from what the cluster's environment
says: SageMaker's ``SM_HOSTS``/``SM_CURRENT_HOST``/``SM_NUM_GPUS`` (read by the host and handed
over as ``LaunchContext.cluster``, so both backends see one cluster), then torchrun's own ``PET_*`` variables and the usual ``MASTER_ADDR``/``MASTER_PORT``/
``NNODES``/``NODE_RANK`` (Kubeflow's PyTorchJob, hand-made clusters), then one node.

What cannot work is refused here, before any process starts: more processes than devices,
FSDP on CPUs with a torch that cannot shard there, a multi-node run with no endpoint to meet
at. torch is imported only inside :func:`check_devices`, when a command is built.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from grpo_host import GrpoHostError
from grpo_host.backends import LaunchContext

NAME = "torchrun-fsdp"
DEFAULT_PORT = 29500
QUANT_STORAGE_ENV = "GRPO_HOST_BNB_QUANT_STORAGE"
# The oldest torch whose FSDP2 (`torch.distributed.fsdp.fully_shard`) is public; on CPUs the
# gloo group must also reduce-scatter, which the worker checks with a real collective.
MIN_TORCH_FSDP2 = (2, 6)


class BackendError(GrpoHostError):
    """The run cannot go through torchrun-fsdp as configured; the message says what to change."""

    def __init__(self, message: str):
        super().__init__(f"backend {NAME}: {message}")


@dataclass(frozen=True)
class Topology:
    nproc_per_node: int
    nnodes: int
    node_rank: int
    endpoint: str | None  # host:port of the rank-0 node; None on one node (torchrun --standalone)
    source: str  # where the shape came from, for the log

    @property
    def world_size(self) -> int:
        return self.nproc_per_node * self.nnodes


def _int_param(params: Mapping[str, Any], key: str, minimum: int) -> int | None:
    """A count the params set (validated by the host: an int or 'auto'); None for auto."""
    value = params.get(key, "auto")
    if value in ("auto", None):
        return None
    if value < minimum:
        raise BackendError(f"{key} must be a whole number >= {minimum}, got {value!r}")
    return value


def _env_int(env: Mapping[str, str], *names: str) -> int | None:
    for name in names:
        raw = env.get(name)
        if raw not in (None, ""):
            try:
                return int(raw)
            except ValueError:
                raise BackendError(f"the environment sets {name}={raw!r}, not a whole number; fix or unset it")
    return None


def cluster_from_env(env: Mapping[str, str], cluster: Mapping[str, Any] | None = None,
                     cluster_source: str = "") -> dict[str, Any]:
    """The cluster's shape as torchrun's names; ``{}`` when nothing says. ``cluster`` is what
    the host read from a scheduler (``LaunchContext.cluster``, SageMaker's); without one, the
    generic variables of torchrun, Slurm and ``MASTER_ADDR`` in ``env``."""
    if cluster:
        nodes = int(cluster.get("num_machines", 1))
        shape: dict[str, Any] = {"nnodes": nodes, "nproc_per_node": max(1, int(cluster["num_processes"]) // nodes),
                                 "source": cluster_source or "the scheduler"}
        if nodes > 1:
            shape["node_rank"] = int(cluster["machine_rank"])
            shape["endpoint"] = f"{cluster['main_process_ip']}:{cluster['main_process_port']}"
        return shape
    shape = {}
    nnodes = _env_int(env, "PET_NNODES", "NNODES", "SLURM_NNODES")
    if nnodes is not None:
        shape["nnodes"] = nnodes
    rank = _env_int(env, "PET_NODE_RANK", "NODE_RANK", "SLURM_NODEID")
    if rank is not None:
        shape["node_rank"] = rank
    nproc = _env_int(env, "PET_NPROC_PER_NODE", "NPROC_PER_NODE")
    if nproc is not None:
        shape["nproc_per_node"] = nproc
    endpoint = env.get("PET_RDZV_ENDPOINT")
    if not endpoint and env.get("MASTER_ADDR"):
        endpoint = f"{env['MASTER_ADDR']}:{env.get('MASTER_PORT') or DEFAULT_PORT}"
    if endpoint:
        shape["endpoint"] = endpoint
    if shape:
        shape["source"] = "the environment (" + ", ".join(
            n for n in ("PET_NNODES", "NNODES", "SLURM_NNODES", "PET_NODE_RANK", "NODE_RANK", "SLURM_NODEID",
                        "PET_NPROC_PER_NODE", "NPROC_PER_NODE", "PET_RDZV_ENDPOINT", "MASTER_ADDR")
            if env.get(n)) + ")"
    return shape


def resolve_topology(params: Mapping[str, Any], env: Mapping[str, str], devices: int,
                     cluster: Mapping[str, Any] | None = None, cluster_source: str = "") -> Topology:
    """Params first, then the cluster (the scheduler's, else the environment's), then one node
    with a process per device."""
    from_env = cluster_from_env(env, cluster, cluster_source)
    nproc = _int_param(params, "nproc_per_node", 1)
    nnodes = _int_param(params, "nnodes", 1)
    node_rank = _int_param(params, "node_rank", 0)
    endpoint = params.get("rdzv_endpoint") or None
    if endpoint == "auto":
        endpoint = None
    source = "backend params"
    if nproc is None:
        nproc = from_env.get("nproc_per_node") or max(1, devices)
    if nnodes is None:
        nnodes = from_env.get("nnodes", 1)
    if node_rank is None:
        node_rank = from_env.get("node_rank", 0)
    if endpoint is None:
        endpoint = from_env.get("endpoint")
    if from_env and any(params.get(k, "auto") in ("auto", None) for k in ("nproc_per_node", "nnodes", "node_rank")):
        source = from_env["source"]
    if nnodes < 1:
        raise BackendError(f"nnodes must be at least 1, got {nnodes}")
    if not 0 <= node_rank < nnodes:
        raise BackendError(f"node_rank {node_rank} is outside 0..{nnodes - 1} (nnodes={nnodes}); "
                           "set backend.params.node_rank to this machine's rank")
    if nnodes > 1 and not endpoint:
        raise BackendError(
            f"{nnodes} nodes need a rendezvous endpoint to meet at: set backend.params.rdzv_endpoint=HOST:PORT "
            "(the rank-0 node's address), or run where the cluster sets MASTER_ADDR/MASTER_PORT "
            "(SageMaker's SM_HOSTS does too)")
    if endpoint is not None:
        endpoint = str(endpoint) if ":" in str(endpoint) else f"{endpoint}:{DEFAULT_PORT}"
        host, _, port = endpoint.rpartition(":")
        if not host or not port.isdigit():
            raise BackendError(f"rdzv_endpoint {endpoint!r} is not HOST:PORT (e.g. 10.0.0.1:29500)")
    return Topology(nproc, nnodes, node_rank, endpoint, source)


def check_devices(topology: Topology, cpu_cores: int | None = None) -> str:
    """``"cuda"`` or ``"cpu"``; raises when this node cannot hold the processes asked for, or when
    this torch cannot shard on CPUs."""
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise BackendError("this torch is built without torch.distributed; install a torch that has it "
                           "(the PyPI builds do)")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    nproc = topology.nproc_per_node
    if gpus:
        if nproc > gpus:
            raise BackendError(
                f"nproc_per_node={nproc} but this node has {gpus} CUDA device{'s' if gpus > 1 else ''}: FSDP runs one "
                f"process per device; set backend.params.nproc_per_node to {gpus} or fewer (or 'auto'), "
                "or make more devices visible (CUDA_VISIBLE_DEVICES)")
        return "cuda"
    version = tuple(int(p) for p in torch.__version__.split("+")[0].split(".")[:2] if p.isdigit())
    has_fsdp2 = version >= MIN_TORCH_FSDP2
    if has_fsdp2:
        try:
            from torch.distributed.fsdp import fully_shard  # noqa: F401
        except ImportError:
            has_fsdp2 = False
    if not has_fsdp2 or not dist.is_gloo_available():
        raise BackendError(
            f"FSDP on CPUs needs torch >= {'.'.join(map(str, MIN_TORCH_FSDP2))} with FSDP2 (fully_shard) and the "
            f"gloo backend; this torch is {torch.__version__}"
            f"{'' if dist.is_gloo_available() else ' without gloo'}. Upgrade torch, run on a CUDA GPU, or train "
            "without sharding: --backend accelerate")
    cores = cpu_cores if cpu_cores is not None else _cores()
    if nproc > cores:
        raise BackendError(
            f"nproc_per_node={nproc} on CPUs but this machine gives this run {cores} core{'s' if cores > 1 else ''}: "
            f"each process needs one; set backend.params.nproc_per_node to {cores} or fewer")
    return "cpu"


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def torchrun_argv(topology: Topology, params: Mapping[str, Any], worker_argv: Sequence[str]) -> list[str]:
    """``python -m torch.distributed.run ... --no-python <worker argv>``: the worker's own
    interpreter and arguments, untouched."""
    python = worker_argv[0]
    cmd = [python, "-m", "torch.distributed.run", "--nproc-per-node", str(topology.nproc_per_node),
           "--max-restarts", str(params.get("max_restarts", 0))]
    if topology.nnodes == 1 and topology.endpoint is None:
        cmd += ["--standalone"]  # a free local port: runs side by side never collide
    else:
        host, _, port = topology.endpoint.rpartition(":")
        cmd += ["--nnodes", str(topology.nnodes), "--node-rank", str(topology.node_rank)]
        if params.get("rdzv_backend", "static") == "c10d":
            cmd += ["--rdzv-backend", "c10d", "--rdzv-endpoint", topology.endpoint,
                    "--rdzv-id", str(params.get("rdzv_id") or "grpo-host")]
        else:
            cmd += ["--master-addr", host, "--master-port", port]
    cmd += ["--no-python", *worker_argv]
    return cmd


def build_command(worker_argv: Sequence[str], params: dict[str, Any], env: dict[str, str],
                  context: LaunchContext | None = None) -> list[str]:
    """The torchrun argv around ``worker_argv``; ``context`` (the host's) gives the run config
    (4-bit storage) and the scheduler's cluster."""
    if len(worker_argv) < 1:
        raise BackendError("got an empty worker command")
    gpus_hint = _env_int(env, "SM_NUM_GPUS") if env.get("SM_HOSTS") else None
    cluster = context.cluster if context is not None else {}
    source = context.cluster_source if context is not None else ""
    topology = resolve_topology(params, env, devices=gpus_hint if gpus_hint is not None else _visible_devices(),
                                cluster=cluster, cluster_source=source)
    device = check_devices(topology)
    if device == "cpu":
        if params.get("cpu_offload"):
            raise BackendError("cpu_offload moves parameters from a GPU to the CPU; this run is on CPUs already: "
                               "set backend.params.cpu_offload=false")
        # Several processes share the cores: one thread each unless the user said otherwise.
        env.setdefault("OMP_NUM_THREADS", str(max(1, _cores() // topology.nproc_per_node)))
    storage = params.get("quant_storage", "auto")
    config = context.config if context is not None else None
    if config is not None and config.quantization.load_in_4bit:
        # FSDP shards 4-bit weights only when bitsandbytes packs them into a float dtype; the
        # model is built with it from this variable (grpo_host.training.model). uint8 keeps
        # them whole on every rank (accelerate leaves them out of the shards).
        env[QUANT_STORAGE_ENV] = config.quantization.compute_dtype if storage == "auto" else storage
    env["GRPO_HOST_TORCHRUN_TOPOLOGY"] = (f"{topology.nnodes} node(s) x {topology.nproc_per_node} process(es) "
                                          f"on {device}, from {topology.source}")
    return torchrun_argv(topology, params, worker_argv)


def _visible_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0
