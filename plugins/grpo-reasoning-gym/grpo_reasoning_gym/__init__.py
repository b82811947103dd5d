"""grpo-reasoning-gym: reasoning-gym's tasks as grpo-host data sources, scored by one reward.

Every task of reasoning-gym (chain_sum, leg_counting, sudoku, ...; ``grpo-host datasets
reasoning-gym`` lists them) is a data source ``reasoning-gym:<task>`` with params ``size``,
``seed``, ``difficulty`` and the task's own config fields; the ``reasoning-gym`` reward scores
a completion with that task's own scorer. Training on a task is one line of config::

    data: {source: "reasoning-gym:leg_counting"}
    rewards: [reasoning-gym]

This module is the plugin's entry point: it reads the task catalogue (``catalog.json``) and
never imports reasoning-gym, which happens when rows are drawn or the reward is built.
"""

from __future__ import annotations

import grpo_host
from grpo_reasoning_gym.tasks import ReasoningGymScore, dataset_specs

__version__ = "0.1.0"
__all__ = ["ReasoningGymScore", "grpo_datasets", "grpo_rewards"]


@grpo_host.hookimpl
def grpo_datasets() -> list:
    return dataset_specs()


@grpo_host.hookimpl
def grpo_rewards() -> list:
    return [ReasoningGymScore]
