"""The record a training-backend plugin returns from ``grpo_backends()``, and the declared
param (``Param``) that backends and data sources share."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Param:
    """A declared param of a backend or a data source: its name, type (as text), default, help."""

    name: str
    type: str
    default: Any
    help: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "default": self.default, "help": self.help}


BackendParam = Param  # the name backends import


def resolve_declared(kind: str, owner: str, declared: Sequence[Param], given: dict[str, Any]) -> dict[str, Any]:
    """Defaults overlaid with ``given``; a param that is not declared is an error with a did-you-mean."""
    from grpo_host.errors import RewardParamError, did_you_mean

    known = {p.name: p for p in declared}
    resolved = {p.name: p.default for p in declared}
    for key, value in given.items():
        if key not in known:
            raise RewardParamError(
                f"{kind} {owner!r} has no param {key!r}; its params: "
                f"{', '.join(known) or '(none)'}{did_you_mean(key, known)}"
            )
        resolved[key] = value
    return resolved


@dataclass
class WorkerSetup:
    """What a backend adds inside each launched worker process (see ``BackendSpec.prepare_worker``):
    GRPOConfig fields merged over the host's (FSDP settings, say) and TrainerCallbacks."""

    trainer_args: dict[str, Any] = field(default_factory=dict)
    callbacks: list[Any] = field(default_factory=list)


@dataclass(frozen=True)
class LaunchContext:
    """What the host knows of the run when a backend builds its launch command.

    ``config`` is the resolved run config (a ``grpo_host.config.RunConfig``), ``config_path``
    the file the workers read it from. ``cluster`` is the cluster as the scheduler's
    environment describes it, keys as ``accelerate launch`` names them (``num_machines``,
    ``machine_rank``, ``main_process_ip``, ``main_process_port``, ``num_processes`` over all
    machines), with ``cluster_source`` saying where it came from; empty on a plain machine.
    """

    config: Any
    config_path: str
    cluster: Mapping[str, Any] = field(default_factory=dict)
    cluster_source: str = ""


@dataclass(frozen=True)
class BackendSpec:
    """A training backend.

    ``build_command(worker_argv, params, env, context)`` returns the argv that launches the
    training worker; ``worker_argv`` is ``[python, "-m", "grpo_host.training.worker", ...]``
    and the backend wraps it in its launcher (``accelerate launch``, ``torchrun``). ``params``
    are its resolved params, ``context`` a :class:`LaunchContext` (the run config, the
    cluster). It may add variables to ``env`` (a dict it can mutate) for the launched
    processes. A ``build_command`` written for the older three-argument form is called without
    ``context``.

    ``prepare_worker(params, model, config)``, optional, runs inside every launched worker
    process once the model is built and before the trainer is: it gets the backend's resolved
    params, the built model and the run config, and returns a :class:`WorkerSetup`. It is for
    what only the worker can know or apply (the model's layer classes, the trainer's FSDP
    settings); keep it None when the launcher alone does the job.
    """

    name: str
    description: str
    build_command: Callable[..., list[str]]
    params: Sequence[Param] = field(default_factory=tuple)
    prepare_worker: Callable[[dict[str, Any], Any, Any], WorkerSetup] | None = None
    # Filled in by the registry: the distribution that provided it.
    plugin: str = ""
    plugin_version: str = ""

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return resolve_declared("backend", self.name, self.params, params)

    def command(self, worker_argv: Sequence[str], params: dict[str, Any], env: dict[str, str],
                context: LaunchContext) -> list[str]:
        """``build_command`` called with the arguments it takes (with ``context`` when it has
        a fourth parameter)."""
        if _takes_context(self.build_command):
            return self.build_command(worker_argv, params, env, context)
        return self.build_command(worker_argv, params, env)


def _takes_context(fn: Callable[..., Any]) -> bool:
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: the documented form
        return True
    if any(p.kind is p.VAR_POSITIONAL for p in parameters):
        return True
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 4
