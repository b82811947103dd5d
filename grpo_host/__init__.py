"""grpo-host: a reward-centric plugin host for GRPO training.

The package root stays cheap to import: plugin modules import it for `hookimpl` and
`reward`, and the CLI starts through it. Everything heavier is loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from grpo_host._lazy import lazy_getattr
from grpo_host._markers import hookimpl, hookspec
from grpo_host._version import __version__
from grpo_host.errors import GrpoHostError

# name -> module holding it; resolved lazily so `import grpo_host` costs nothing.
_LAZY = {
    "reward": "grpo_host.rewards.spec",
    "Score": "grpo_host.rewards.spec",
    "RewardSpec": "grpo_host.rewards.spec",
    "reference_cache": "grpo_host.rewards.spec",
    "completion_text": "grpo_host.rewards.spec",
    "BackendSpec": "grpo_host.backends",
    "DatasetSpec": "grpo_host.datasets",
    "Param": "grpo_host.backends",
    "load_reward": "grpo_host.plugins.installed",
    "load_rewards": "grpo_host.plugins.installed",
    "RewardRuntime": "grpo_host.rewards.runtime",
    "get_plugin_manager": "grpo_host.plugins.manager",
}

__all__ = [  # noqa: F822 - the lazy names resolve through __getattr__
    "hookimpl", "hookspec", "GrpoHostError", "__version__",
    "reward", "Score", "RewardSpec", "reference_cache", "completion_text", "BackendSpec", "DatasetSpec", "Param",
    "load_reward", "load_rewards", "RewardRuntime", "get_plugin_manager",
]


__getattr__ = lazy_getattr('grpo_host', _LAZY, globals())


if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.backends import BackendSpec, Param
    from grpo_host.datasets import DatasetSpec
    from grpo_host.plugins.installed import load_reward, load_rewards
    from grpo_host.plugins.manager import get_plugin_manager
    from grpo_host.rewards.runtime import RewardRuntime
    from grpo_host.rewards.spec import RewardSpec, Score, completion_text, reference_cache, reward
