"""The accuracy plugin's reading of completions: the host's answer finding, plus its own guard.

Finding the answer (the answer tag, then ``\\boxed{}``, then an "answer is" phrase, then the
last expression; prompt echo removed first) is ``grpo_host.answers``, shared with every reward
that needs it; its order is documented there and in this plugin's README. What stays here is
the accuracy plugin's own: the completion as plain text, and the nesting depth with which
``accuracy`` refuses an answer built to stall the parser.
"""

from __future__ import annotations

import re
from typing import Any

# Re-exported so that code written against this module's earlier find_answer keeps working.
from grpo_host.answers import find_answer

__all__ = ["completion_plain", "find_answer", "nesting_depth"]


def completion_plain(completion: Any) -> str:
    """The completion as text, whether it came as text or as chat messages."""
    from grpo_host import completion_text

    return completion_text(completion)[0]


def nesting_depth(text: str) -> int:
    """The deepest nesting of (), [] and {} in ``text``."""
    depth = deepest = 0
    for ch in re.findall(r"[()\[\]{}]", text):
        if ch in "([{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest
