"""Golden cases that need a judge to answer, made ready for a given server.

``golden/llm-judge.yaml`` (what ``grpo-host test-rewards`` runs) holds only cases that hold
without a judge. ``golden/llm-judge-served.yaml`` holds cases that a judge must answer; they
name no server, and ``served_golden`` fills one in: a test's scripted server on 127.0.0.1, or
your judge (``GRPO_JUDGE_BASE_URL`` and ``GRPO_JUDGE_MODEL``, read by the plugin's tests).
Pass the result to ``grpo_host.golden.harness.RewardHarness(spec, golden=...)``.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

SERVED_GOLDEN = "golden/llm-judge-served.yaml"
BASE_URL_ENV = "GRPO_JUDGE_BASE_URL"
MODEL_ENV = "GRPO_JUDGE_MODEL"


def served_golden(base_url: str, model: str, **params: Any) -> Any:
    """The served golden cases with ``base_url``, ``model`` and ``params`` in every case."""
    from grpo_host.golden.loader import load_golden_file

    golden = load_golden_file(
        resources.files("grpo_reward_judge").joinpath(SERVED_GOLDEN), reward="llm-judge"
    )
    cases = [
        case.model_copy(update={"params": {**case.params, **params, "base_url": base_url, "model": model}})
        for case in golden.cases
    ]
    return golden.model_copy(update={"cases": cases})
