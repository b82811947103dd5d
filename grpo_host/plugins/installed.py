"""Installed rewards as TRL reward functions: ``grpo_host.load_rewards`` and ``load_reward``.

Where the plugin system meets the reward runtime: the rewards are found among the installed
plugins (or through the ``manager`` given), bound once (``grpo_host.rewards.binding``) and
served by one :class:`~grpo_host.rewards.trl_adapter.RewardSet`, so the runtime itself never
looks plugins up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from grpo_host.plugins import manager as plugin_manager
from grpo_host.rewards.binding import RewardLookup, bind_reward
from grpo_host.rewards.item import RewardItem
from grpo_host.rewards.trl_adapter import RewardSet, TRLReward

# How a reward may be named: see grpo_host.rewards.item.reward_item.
RewardRef = str | Mapping[str, Any] | tuple[str, Mapping[str, Any]] | RewardItem


def load_rewards(
    rewards: Sequence[RewardRef],
    *,
    workers: int | None = None,
    memory_mb: int | None = None,
    error_threshold: float = 0.10,
    manager: RewardLookup | None = None,
    executor: str = "local",
    **executor_options: Any,
) -> list[TRLReward]:
    """Installed rewards as TRL reward functions sharing one worker pool.

    ``rewards`` items are names, ``(name, params)`` pairs, dicts with ``name``, ``params``,
    ``alias`` and the host params ``timeout``, ``weight``, ``memory_mb``, ``concurrency``, or
    :class:`~grpo_host.rewards.item.RewardItem`. ``memory_mb`` here is the cap for rewards that set
    none (default: see ``RewardRuntime``). Pass ``[r.weight for r in result]`` as
    ``GRPOConfig(reward_weights=...)`` when weights are set. ``executor="ray"`` runs the pool on
    Ray actors across a cluster (options ``address``, ``num_cpus_per_worker``; ``workers`` is
    then the number of actors). ``manager``: where names are looked up (default: the installed
    plugins).
    """
    lookup = plugin_manager.get_plugin_manager() if manager is None else manager
    bound = [bind_reward(item, manager=lookup) for item in rewards]
    reward_set = RewardSet(
        bound,
        workers=workers,
        memory_mb=memory_mb,
        error_threshold=error_threshold,
        executor=executor,
        executor_options=executor_options,
    )
    return reward_set.callables()


def load_reward(name: str, **params: Any) -> TRLReward:
    """One installed reward as a TRL reward function: ``load_reward("accuracy", timeout=5)``
    (host params beside the reward's own)."""
    return load_rewards([RewardItem.from_params(name, params)])[0]
