"""The `accelerate` training backend for grpo-host.

It wraps the host's training worker in ``accelerate launch``: several processes on the GPUs
of one machine (or on its CPUs), several machines, mixed precision, and a DeepSpeed or FSDP
setup from an Accelerate config file or a DeepSpeed JSON. On one device with nothing to set
up it runs the worker as a single plain process, with no launcher in between.

Importing this module is cheap: it touches neither torch nor accelerate.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from typing import Any, Literal

import grpo_host
from grpo_host import GrpoHostError
from grpo_host.backends import BackendParam, BackendSpec, LaunchContext

PARAMS = (
    BackendParam("num_processes", int | Literal["auto"], "auto",
                 "Processes on this machine; auto = one per visible GPU, else 1."),
    BackendParam("num_machines", int, 1, "Machines taking part (multi-node)."),
    BackendParam("machine_rank", int, 0, "This machine's rank (multi-node)."),
    BackendParam("main_process_ip", str | None, None, "The rank-0 machine's address (multi-node)."),
    BackendParam("main_process_port", int | None, None, "The rank-0 machine's port."),
    BackendParam("mixed_precision", Literal["auto", "no", "bf16", "fp16"], "auto",
                 "auto = the run's `precision` (left to the trainer when that is auto)."),
    BackendParam("config_file", str | None, None,
                 "An Accelerate config YAML (DeepSpeed, FSDP, ...), as `accelerate config` writes it."),
    BackendParam("deepspeed_config_file", str | None, None, "A DeepSpeed JSON config."),
    BackendParam("cpu", bool | Literal["auto"], "auto", "Train on CPUs; auto = when no GPU is visible."),
    BackendParam("extra_args", list[str], [], "More `accelerate launch` options, passed as given."),
)


def visible_gpus() -> int:
    """GPUs this process could use, found without importing torch."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        ids = [v for v in visible.split(",") if v.strip() and v.strip() != "-1"]
        return len(ids)
    smi = shutil.which("nvidia-smi")
    if not smi:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.splitlines() if line.startswith("GPU "))


def build_command(worker_argv: Sequence[str], params: dict[str, Any], env: dict[str, str],
                  context: LaunchContext | None = None) -> list[str]:
    gpus = visible_gpus()
    # The host validated params against PARAMS: counts are ints, the choices are among theirs.
    cpu = gpus == 0 if params["cpu"] == "auto" else params["cpu"]
    procs = params["num_processes"]
    if procs == "auto":
        procs = 1 if cpu else max(1, gpus)
    machines = params["num_machines"]
    if procs < 1 or machines < 1:
        raise GrpoHostError("backend accelerate: num_processes and num_machines must be at least 1")
    precision = params["mixed_precision"]
    if precision == "auto":  # the run's own (config validation allows the same values)
        precision = context.config.precision if context is not None else "auto"
    for key in ("config_file", "deepspeed_config_file"):
        if params[key] and not os.path.isfile(params[key]):
            raise GrpoHostError(f"backend accelerate: {key} {params[key]!r} not found")
    extra = list(params["extra_args"])
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"

    plain = procs == 1 and machines == 1 and not params["config_file"] and not params["deepspeed_config_file"] and not extra
    if plain:
        return list(worker_argv)

    worker = list(worker_argv)
    if len(worker) < 3 or worker[1] != "-m":
        raise GrpoHostError(f"backend accelerate: expected [python, -m, module, ...], got {worker[:3]}")
    python, module, worker_args = worker[0], worker[2], worker[3:]
    cmd = [python, "-m", "accelerate.commands.launch", "--num_processes", str(procs),
           "--num_machines", str(machines), "--machine_rank", str(params["machine_rank"]), "--dynamo_backend", "no"]
    if params["main_process_ip"]:
        cmd += ["--main_process_ip", str(params["main_process_ip"])]
    if params["main_process_port"]:
        cmd += ["--main_process_port", str(params["main_process_port"])]
    if precision != "auto":
        cmd += ["--mixed_precision", precision]
    if params["config_file"]:
        cmd += ["--config_file", str(params["config_file"])]
    elif params["deepspeed_config_file"]:
        cmd += ["--use_deepspeed", "--deepspeed_config_file", str(params["deepspeed_config_file"])]
    elif procs * machines > 1:
        # Several processes go through torchrun's launcher (accelerate's --multi_gpu); on CPUs the
        # worker then joins a gloo group (ACCELERATE_USE_CPU). `--cpu` would start one process only.
        cmd += ["--multi_gpu"]
    elif cpu:
        cmd += ["--cpu"]
    cmd += extra
    cmd += ["-m", module, *worker_args]
    return cmd


ACCELERATE = BackendSpec(
    name="accelerate",
    description="Hugging Face Accelerate: one process per GPU (DDP), DeepSpeed or FSDP from a config file, "
                "or CPUs; a single plain process on one device.",
    build_command=build_command,
    params=PARAMS,
)


@grpo_host.hookimpl
def grpo_backends() -> list[BackendSpec]:
    return [ACCELERATE]


__all__ = ["ACCELERATE", "build_command", "grpo_backends", "visible_gpus"]

if __name__ == "__main__":  # pragma: no cover - a quick look: python -m grpo_backend_accelerate
    print(build_command([sys.executable, "-m", "grpo_host.training.worker", "--config", "run.yaml"],
                        {p.name: p.default for p in PARAMS}, {}))
