"""grpo-reward-model: an external reward model for grpo-host (``reward-model``).

This module is the plugin's entry point and stays cheap to import: torch and transformers are
imported when a local model is loaded, and the HTTP client uses only the standard library.
"""

from grpo_reward_model.rewards import RewardModel

__all__ = ["RewardModel"]
__version__ = "0.1.0"
