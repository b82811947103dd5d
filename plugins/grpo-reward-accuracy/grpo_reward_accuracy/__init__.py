"""grpo-reward-accuracy: the `accuracy`, `exact-match` and `rouge` rewards for grpo-host.

This module is the plugin's entry point (group ``grpo_host``). It imports only the standard
library and grpo-host; math-verify and sympy load inside a worker the first time `accuracy`
needs them. The golden cases ship in ``golden/``.
"""

from __future__ import annotations

import grpo_host
from grpo_reward_accuracy.rewards import Accuracy, exact_match, rouge

__version__ = "0.1.0"
__all__ = ["Accuracy", "exact_match", "rouge", "grpo_rewards"]


@grpo_host.hookimpl
def grpo_rewards() -> list:
    return [Accuracy, exact_match, rouge]
