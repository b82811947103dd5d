"""The run's plugins, bound in this process before the model is built: the reward set (so a
bad reward, executor setting or Ray address fails in seconds, not after a model build), the
trackers (main process only) and the plugin manager the later stages ask for the backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from grpo_host.config import RunConfig
from grpo_host.training.process import Process, cores, local_world_size

if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.plugins.manager import PluginManager
    from grpo_host.rewards.trl_adapter import RewardSet
    from grpo_host.tracking import TrackerSet


@dataclass(frozen=True)
class Parts:
    manager: PluginManager
    reward_set: RewardSet
    trackers: TrackerSet


def bind_parts(config: RunConfig, process: Process) -> Parts:
    from grpo_host.plugins.manager import get_plugin_manager
    from grpo_host.rewards.binding import bind_reward
    from grpo_host.rewards.trl_adapter import RewardSet
    from grpo_host.tracking import TrackerSet

    manager = get_plugin_manager()
    bound = [bind_reward(entry.to_item(), manager=manager) for entry in config.rewards]
    reward_set = RewardSet(
        bound,
        workers=reward_workers(config),
        error_threshold=config.rewards_error_threshold,
        executor=config.runtime.executor,
        executor_options=config.runtime.executor_options(),
    )
    trackers = TrackerSet.from_names(config.tracking, manager) if process.is_main else TrackerSet()
    return Parts(manager, reward_set, trackers)


def reward_workers(config: RunConfig) -> int | None:
    """Reward worker processes of this training process: set, or (local executor) the cores
    this machine's training processes share."""
    runtime = config.runtime
    workers = config.reward_workers if runtime.workers is None else runtime.workers
    if workers is None and runtime.executor == "local":
        workers = max(1, cores() // max(1, local_world_size()))
    return workers
