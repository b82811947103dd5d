"""The record a training-backend plugin returns from ``grpo_backends()``, and the declared
param (``Param``) that backends and data sources share."""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
class BackendSpec:
    """A training backend.

    ``build_command(worker_argv, params, env)`` returns the argv that launches the training
    worker; ``worker_argv`` is ``[python, "-m", "grpo_host.training.worker", ...]`` and the
    backend wraps it in its launcher (``accelerate launch``, ``torchrun``). It may add
    variables to ``env`` (a dict it can mutate) for the launched processes.

    ``prepare_worker(params, model, config)``, optional, runs inside every launched worker
    process once the model is built and before the trainer is: it gets the backend's resolved
    params, the built model and the run config, and returns a :class:`WorkerSetup`. It is for
    what only the worker can know or apply (the model's layer classes, the trainer's FSDP
    settings); keep it None when the launcher alone does the job.
    """

    name: str
    description: str
    build_command: Callable[[Sequence[str], dict[str, Any], dict[str, str]], list[str]]
    params: Sequence[Param] = field(default_factory=tuple)
    prepare_worker: Callable[[dict[str, Any], Any, Any], WorkerSetup] | None = None
    # Filled in by the registry: the distribution that provided it.
    plugin: str = ""
    plugin_version: str = ""

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        return resolve_declared("backend", self.name, self.params, params)
