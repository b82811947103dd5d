"""grpo-reward-math: sympy-checked math rewards for grpo-host (``math-equiv``, ``math-steps``).

This module is the plugin's entry point and stays cheap to import: sympy is imported when a
reward is built.
"""

from grpo_reward_math.rewards import MathEquiv, MathSteps

__all__ = ["MathEquiv", "MathSteps"]
__version__ = "0.1.0"
