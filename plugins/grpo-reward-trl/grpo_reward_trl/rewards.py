"""TRL's reward functions (``trl.rewards``) as grpo-host rewards, scored exactly as TRL scores.

Each reward calls TRL's own function on one sample, so the score is TRL's to the bit; what
grpo-host adds is the runtime around it (a worker pool, timeouts, outcomes instead of silent
zeros), golden cases, and the details of what TRL parsed. TRL is imported when a reward is
built (inside a worker), never when the plugin loads. The names follow TRL's functions:

    trl.rewards.accuracy_reward                 trl-accuracy
    trl.rewards.reasoning_accuracy_reward       trl-reasoning-accuracy
    trl.rewards.think_format_reward             trl-think-format
    trl.rewards.get_cosine_scaled_reward        trl-cosine-scaled
    trl.rewards.get_repetition_penalty_reward   trl-repetition-penalty
    trl.rewards.get_soft_overlong_punishment    trl-soft-overlong-punishment

TRL reads the gold answer from a ``solution`` column; ``solution_column`` names another one
(``answer`` for grpo-host's data sources). The length rewards count the completion's token ids,
which TRL passes in training (``completion_ids``); without them (``try-reward``, a plain text
batch) they have nothing to count and say so (not applicable) rather than guess.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from typing import Any

import grpo_host

# trl.rewards' function -> the grpo-host reward that wraps it. A test checks this covers every
# function trl.rewards exports, so a TRL upgrade that adds one fails loudly here.
TRL_REWARDS = {
    "accuracy_reward": "trl-accuracy",
    "reasoning_accuracy_reward": "trl-reasoning-accuracy",
    "think_format_reward": "trl-think-format",
    "get_cosine_scaled_reward": "trl-cosine-scaled",
    "get_repetition_penalty_reward": "trl-repetition-penalty",
    "get_soft_overlong_punishment": "trl-soft-overlong-punishment",
}


def _messages(completion: str) -> list[dict[str, str]]:
    """One completion in the form TRL's functions read: ``completion[0]["content"]``."""
    return [{"role": "assistant", "content": completion}]


def _solution(columns: dict[str, Any], column: str, reward: str) -> Any:
    if column not in columns:
        have = ", ".join(sorted(k for k in columns if k != "prompt")) or "(none)"
        raise KeyError(f"reward {reward!r} reads the gold answer from column {column!r}, which this sample lacks "
                       f"(columns: {have}); set its param solution_column to the column that holds it")
    value = columns[column]
    return None if value is None else str(value)


class _Logged:
    """TRL's ``log_extra`` hook, kept to show what TRL parsed in the score's details."""

    def __init__(self, fn: Callable[..., Any]):
        self.takes_log = "log_extra" in inspect.signature(fn).parameters
        self.fn = fn

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        logged: dict[str, Any] = {}
        if self.takes_log:
            kwargs["log_extra"] = lambda key, values: logged.__setitem__(key, values[0])
        value = self.fn(*args, **kwargs)[0]
        logged.pop("solution", None)  # the gold column, already known
        return value, logged


_EVALUATES = ("faithful to TRL: math-verify evaluates an expression in the answer, so \\boxed{6 * 7} equals 42 "
              "and a copied prompt expression is paid; grpo-host's `accuracy` refuses it")


@grpo_host.reward(name="trl-accuracy", timeout=20.0, score_range=(0.0, 1.0),
                  intended_probes={"prompt-copied": _EVALUATES})
class TrlAccuracy:
    """TRL's accuracy_reward: 1.0 when math-verify finds the completion's answer equal to the gold.

    The gold is parsed with math-verify's defaults; the completion's answer is the first LaTeX
    expression (``\\boxed{}`` tried first; no bare numbers). A gold that math-verify cannot parse
    makes the sample not applicable (TRL returns None).
    """

    def __init__(self, solution_column: str = "solution"):
        from trl.rewards import accuracy_reward

        self.call = _Logged(accuracy_reward)
        self.solution_column = solution_column

    def score(self, completion: str, **columns: Any) -> grpo_host.Score:
        solution = _solution(columns, self.solution_column, "trl-accuracy")
        if solution is None:
            return grpo_host.Score(None, reason=f"no gold answer in column {self.solution_column!r}")
        value, logged = self.call([_messages(completion)], [solution])
        return grpo_host.Score(value, **logged)


@grpo_host.reward(name="trl-reasoning-accuracy", timeout=20.0, score_range=(0.0, 1.0),
                  intended_probes={"prompt-copied": _EVALUATES})
class TrlReasoningAccuracy:
    """TRL's reasoning_accuracy_reward: accuracy on what follows the reasoning's end (``</think>``).

    A completion whose reasoning never ends scores 0.0; the answer after the last delimiter is
    compared as trl-accuracy compares it.
    """

    def __init__(self, solution_column: str = "solution", reasoning_delimiters: list[str] | None = None):
        from trl.rewards import reasoning_accuracy_reward

        self.call = _Logged(reasoning_accuracy_reward)
        self.solution_column = solution_column
        self.reasoning_delimiters = reasoning_delimiters

    def score(self, completion: str, **columns: Any) -> grpo_host.Score:
        solution = _solution(columns, self.solution_column, "trl-reasoning-accuracy")
        if solution is None:
            return grpo_host.Score(None, reason=f"no gold answer in column {self.solution_column!r}")
        value, logged = self.call([_messages(completion)], [solution], reasoning_delimiters=self.reasoning_delimiters)
        return grpo_host.Score(value, **logged)


@grpo_host.reward(name="trl-think-format", timeout=5.0, score_range=(0.0, 1.0),
                  intended_probes={"empty-tags": "faithful to TRL: think_format_reward pays for an empty <think></think>; "
                                                 "pair it with an accuracy reward (grpo-host's `format` does not pay for it)"})
class TrlThinkFormat:
    """TRL's think_format_reward: 1.0 when the completion opens with one ``<think>...</think>`` block.

    The regex is ``^<think>(?!.*<think>)(.*?)</think>.*$`` (DOTALL, MULTILINE): the completion
    starts with ``<think>`` (or a line of it does), no second ``<think>`` follows, and the block
    closes. Anything may follow the block, an answer tag or not.
    """

    def __init__(self):
        from trl.rewards import think_format_reward

        self.fn = think_format_reward

    def score(self, completion: str, **columns: Any) -> float:
        return self.fn([_messages(completion)])[0]


def _ids_or_none(completion_ids: Sequence[int] | None, reward: str) -> grpo_host.Score | None:
    if completion_ids is None:
        return grpo_host.Score(None, reason=f"{reward} counts the completion's token ids, and none came with "
                                            "this sample (TRL passes completion_ids in training)")
    return None


@grpo_host.reward(name="trl-cosine-scaled", timeout=20.0, score_range=(-1.0, 1.0),
                  intended_probes={"prompt-copied": _EVALUATES})
class TrlCosineScaled:
    """TRL's get_cosine_scaled_reward: correctness scaled by length on a cosine schedule.

    Correct: from ``max_value_correct`` (no tokens) down to ``min_value_correct`` (``max_len``
    tokens or more); wrong: from ``min_value_wrong`` (no tokens) up to ``max_value_wrong``
    (``max_len`` or more), so short wrong answers are punished most. Correctness is
    trl-accuracy's; the length is the number of ``completion_ids``.
    """

    def __init__(self, solution_column: str = "solution", max_len: int = 1000, min_value_wrong: float = -1.0,
                 max_value_wrong: float = -0.5, min_value_correct: float = 0.5, max_value_correct: float = 1.0):
        from trl.rewards import get_cosine_scaled_reward

        self.fn = get_cosine_scaled_reward(max_len, min_value_wrong, max_value_wrong, min_value_correct,
                                           max_value_correct)
        self.solution_column = solution_column

    def score(self, completion: str, completion_ids: Sequence[int] | None = None, **columns: Any) -> grpo_host.Score:
        missing = _ids_or_none(completion_ids, "trl-cosine-scaled")
        if missing is not None:
            return missing
        solution = _solution(columns, self.solution_column, "trl-cosine-scaled")
        if solution is None:
            return grpo_host.Score(None, reason=f"no gold answer in column {self.solution_column!r}")
        value = self.fn([_messages(completion)], [solution], [list(completion_ids)])[0]
        return grpo_host.Score(value, tokens=len(completion_ids))


@grpo_host.reward(name="trl-repetition-penalty", timeout=5.0,
                  intended_probes=dict.fromkeys(
                      ("empty-completion", "empty-tags", "padding"),
                      "TRL's repetition penalty only punishes repeated token n-grams; text without repeats is never punished"))
class TrlRepetitionPenalty:
    """TRL's get_repetition_penalty_reward: ``max_penalty * (1 - distinct / all token n-grams)``.

    Counted on ``completion_ids`` (token n-grams, not words); a completion shorter than
    ``ngram_size`` tokens scores 0.0. ``max_penalty`` must be 0 or negative.
    """

    def __init__(self, ngram_size: int = 3, max_penalty: float = -1.0):
        from trl.rewards import get_repetition_penalty_reward

        self.fn = get_repetition_penalty_reward(ngram_size=ngram_size, max_penalty=max_penalty)

    def score(self, completion: str, completion_ids: Sequence[int] | None = None, **columns: Any) -> grpo_host.Score:
        missing = _ids_or_none(completion_ids, "trl-repetition-penalty")
        if missing is not None:
            return missing
        return grpo_host.Score(self.fn([list(completion_ids)])[0], tokens=len(completion_ids))


@grpo_host.reward(name="trl-soft-overlong-punishment", timeout=5.0, score_range=(-1.0, 0.0),
                  intended_probes=dict.fromkeys(
                      ("empty-completion", "empty-tags", "padding"),
                      "DAPO's overlong punishment only punishes length past the limit; short text is never punished"))
class TrlSoftOverlongPunishment:
    """TRL's get_soft_overlong_punishment (DAPO): 0 up to ``max_completion_len - soft_punish_cache``
    tokens, then linearly down to -1 at ``max_completion_len``, and -1 beyond."""

    def __init__(self, max_completion_len: int = 1024, soft_punish_cache: int = 256):
        from trl.rewards import get_soft_overlong_punishment

        self.fn = get_soft_overlong_punishment(max_completion_len, soft_punish_cache)

    def score(self, completion: str, completion_ids: Sequence[int] | None = None, **columns: Any) -> grpo_host.Score:
        missing = _ids_or_none(completion_ids, "trl-soft-overlong-punishment")
        if missing is not None:
            return missing
        return grpo_host.Score(self.fn([list(completion_ids)])[0], tokens=len(completion_ids))


ALL = [TrlAccuracy, TrlReasoningAccuracy, TrlThinkFormat, TrlCosineScaled, TrlRepetitionPenalty,
       TrlSoftOverlongPunishment]
