"""grpo-reward-length: the `length`, `overlong` and `repetition` rewards for grpo-host.

This module is the plugin's entry point (group ``grpo_host``). It imports nothing heavier than
``re`` (token counts come from the trainer's ids or a regex, never from a tokenizer), so
loading the plugin costs nothing; the golden cases ship in ``golden/``.
"""

from __future__ import annotations

import grpo_host
from grpo_reward_length.rewards import approx_token_count, length, overlong, repetition

__version__ = "0.1.0"
__all__ = ["approx_token_count", "length", "overlong", "repetition", "grpo_rewards"]


@grpo_host.hookimpl
def grpo_rewards() -> list:
    return [length, overlong, repetition]
