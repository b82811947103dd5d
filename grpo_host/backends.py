"""The record a training-backend plugin returns from ``grpo_backends()``; its params are
declared as ``Param`` (``grpo_host.params``, the shape every kind of plugin shares)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from grpo_host.params import Param as Param  # re-exported: grpo_host.backends.Param
from grpo_host.params import check_declared, resolve

BackendParam = Param  # the name backends import


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
    are its resolved params (validated: an ``int`` param is an int), ``context`` a
    :class:`LaunchContext` (the run config, the cluster). It may add variables to ``env`` (a dict it can mutate) for the launched
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

    def check_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overlaid with ``params``, each validated against its declared type: what
        ``build_command`` and ``prepare_worker`` get. Raises ``PluginParamError`` (kind
        "backend") for a name it does not declare or a value of the wrong type."""
        return resolve("backend", self.name, self.params, params)

    def check_declared(self) -> list[str]:
        """Raise ``PluginParamError`` for a param declaration that cannot work; return warnings."""
        return check_declared("backend", self.name, self.params)

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
