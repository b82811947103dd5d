"""grpo-reward-trl: every reward function of ``trl.rewards`` as a grpo-host reward, named ``trl-*``.

This module is the plugin's entry point: it imports neither trl nor math-verify (each reward
imports TRL's function when it is built, inside a worker). The golden cases in ``golden/`` pin
TRL's behaviour, including where it differs from grpo-host's first-party rewards and why.
"""

from __future__ import annotations

import grpo_host
from grpo_reward_trl.rewards import ALL, TRL_REWARDS

__version__ = "0.1.0"
__all__ = ["TRL_REWARDS", "grpo_rewards"]


@grpo_host.hookimpl
def grpo_rewards() -> list:
    return list(ALL)
