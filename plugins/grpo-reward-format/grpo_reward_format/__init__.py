"""grpo-reward-format: the `format` and `tag-count` rewards for grpo-host.

This module is the plugin's entry point (group ``grpo_host``). It imports nothing heavier than
``re``, so loading the plugin costs nothing; the golden cases ship in ``golden/``.
"""

from __future__ import annotations

import grpo_host
from grpo_reward_format.rewards import format_reward, tag_count

__version__ = "0.1.0"
__all__ = ["format_reward", "tag_count", "grpo_rewards"]


@grpo_host.hookimpl
def grpo_rewards() -> list:
    return [format_reward, tag_count]
