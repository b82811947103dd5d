"""grpo-reward-code: the `code` reward (programs run against test cases in a bubblewrap sandbox)
and the `code-tasks` data source for grpo-host.

This module is the plugin's entry point (group ``grpo_host``). Importing it starts no sandbox
and imports nothing heavy; the sandbox is checked when the reward is built, and refuses then,
saying why and what to install, when it cannot run.
"""

from __future__ import annotations

import grpo_host
from grpo_reward_code.reward import CodeReward
from grpo_reward_code.tasks import CODE_TASKS

__version__ = "0.1.0"
__all__ = ["CODE_TASKS", "CodeReward", "grpo_datasets", "grpo_rewards"]


@grpo_host.hookimpl
def grpo_rewards() -> list:
    return [CodeReward]


@grpo_host.hookimpl
def grpo_datasets() -> list:
    return [CODE_TASKS]
