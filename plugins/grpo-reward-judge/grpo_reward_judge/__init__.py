"""grpo-reward-judge: the `llm-judge` reward for grpo-host.

This module is the plugin's entry point (group ``grpo_host``). It imports only the reward's
declaration; httpx comes in when a judge is built inside a reward worker.
"""

from __future__ import annotations

import grpo_host
from grpo_reward_judge.rewards import LLMJudge

__version__ = "0.1.0"
__all__ = ["LLMJudge", "grpo_rewards"]


@grpo_host.hookimpl
def grpo_rewards() -> list:
    return [LLMJudge]
