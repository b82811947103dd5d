"""The record a training-backend plugin returns from ``grpo_backends()``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class BackendParam:
    name: str
    type: str
    default: Any
    help: str = ""


@dataclass(frozen=True)
class BackendSpec:
    """A training backend.

    ``build_command(worker_argv, params, env)`` returns the argv that launches the training
    worker; ``worker_argv`` is ``[python, "-m", "grpo_host.training.worker", ...]`` and the
    backend wraps it in its launcher (``accelerate launch``, ``torchrun``). It may add
    variables to ``env`` (a dict it can mutate) for the launched processes.
    """

    name: str
    description: str
    build_command: Callable[[Sequence[str], dict[str, Any], dict[str, str]], list[str]]
    params: Sequence[BackendParam] = field(default_factory=tuple)
    # Filled in by the registry: the distribution that provided it.
    plugin: str = ""
    plugin_version: str = ""

    def check_params(self, params: dict[str, Any]) -> dict[str, Any]:
        from grpo_host.errors import RewardParamError, did_you_mean

        known = {p.name: p for p in self.params}
        resolved = {p.name: p.default for p in self.params}
        for key, value in params.items():
            if key not in known:
                raise RewardParamError(
                    f"backend {self.name!r} has no param {key!r}; its params: "
                    f"{', '.join(known) or '(none)'}{did_you_mean(key, known)}"
                )
            resolved[key] = value
        return resolved
