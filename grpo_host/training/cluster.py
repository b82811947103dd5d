"""The cluster a run is launched on, as the scheduler's environment describes it.

SageMaker's ``SM_*`` variables today. The host reads them once and hands the shape to the
backend in its ``LaunchContext`` (and, as backend params, to a SageMaker job's config), so no
backend reads a scheduler's variables through the host's internals.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

PROCESSES_ENV = "GRPO_HOST_PROCESSES_PER_NODE"


def cluster_backend_params(environ: Mapping[str, str]) -> dict[str, Any]:
    """The cluster as SageMaker describes it, for a backend that launches its own processes.

    Keys follow ``accelerate launch`` (``num_machines``, ``machine_rank``, ``main_process_ip``,
    ``main_process_port``, ``num_processes`` = processes over all machines); a backend takes
    those of them it declares.
    """
    hosts = _json_list(environ.get("SM_HOSTS"))
    current = environ.get("SM_CURRENT_HOST")
    params: dict[str, Any] = {}
    gpus = _int(environ.get("SM_NUM_GPUS"))
    per_node = _int(environ.get(PROCESSES_ENV)) or (gpus if gpus and gpus > 0 else 1)
    machines = max(len(hosts), 1)
    params["num_processes"] = per_node * machines
    if len(hosts) > 1:
        ordered = sorted(hosts)
        params["num_machines"] = machines
        params["machine_rank"] = ordered.index(current) if current in ordered else 0
        params["main_process_ip"] = environ.get("SM_MASTER_ADDR") or ordered[0]
        params["main_process_port"] = _int(environ.get("SM_MASTER_PORT")) or 7777
    return params


def scheduler_cluster(environ: Mapping[str, str]) -> tuple[dict[str, Any], str]:
    """``(the cluster as cluster_backend_params gives it, where it came from)``, or ``({}, "")``
    when no scheduler describes one (a plain machine: the backend decides)."""
    if not environ.get("SM_HOSTS"):
        return {}, ""
    return cluster_backend_params(environ), "SageMaker (SM_HOSTS, SM_CURRENT_HOST, SM_NUM_GPUS)"


def _json_list(raw: str | None) -> list[str]:
    if not raw:
        return []
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        return [h for h in raw.split(",") if h]
    return [str(v) for v in value] if isinstance(value, list) else []


def _int(raw: str | None) -> int | None:
    try:
        return int(raw) if raw not in (None, "") else None
    except ValueError:
        return None
