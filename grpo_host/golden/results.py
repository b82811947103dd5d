"""What golden checks produce and build on: check results, golden results, the baseline.

The harness scores, conformance and probes check, and both reports (pytest and the CLI) read
these records; this module sits below all of them, so none of them imports another's
internals. :class:`CheckedReward` is what a check needs of a harness.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from grpo_host.golden.loader import GoldenCase, GoldenFile
from grpo_host.rewards.runtime import SampleResult, prepare_samples
from grpo_host.rewards.spec import RewardSpec


@dataclass
class CheckResult:
    """One check of one reward, in the form both reports (pytest and the CLI) show."""

    reward: str
    kind: str  # golden | conformance | probe | setup
    name: str
    status: str  # passed | failed | skipped | intended
    message: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.status == "failed"

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name, "status": self.status, "message": self.message,
                **({"data": self.data} if self.data else {})}


@dataclass
class GoldenResult:
    """A golden case and what the reward gave for it."""

    case: GoldenCase
    outcome: str
    score: float | None
    details: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    problem: str = ""  # the case could not be run as written (bad params): always a failure
    path: str = ""

    @property
    def passed(self) -> bool:
        if self.problem:
            return False
        case = self.case
        if case.score is not None:
            return self.outcome == "ok" and self.score is not None and abs(self.score - case.score) <= case.tolerance
        return self.outcome == case.outcome

    @property
    def updatable(self) -> bool:
        """Whether ``--grpo-update-golden`` may write this result as the new expectation.

        Scores and ``not_applicable`` are the reward's considered answers; an error or a
        timeout is a failure to fix (or to write down by hand), never to bless by a flag.
        """
        return not self.problem and not self.passed and self.outcome in ("ok", "not_applicable")

    def describe_actual(self) -> str:
        if self.problem:
            return f"not run: {self.problem}"
        if self.outcome == "ok":
            text = f"score {_num(self.score)}"
            if self.case.score is not None and self.score is not None:
                text += f" (off by {_num(abs(self.score - self.case.score))})"
            return text
        return f"outcome {self.outcome}"

    def failure_message(self, reward: str) -> str:
        case = self.case
        expected = (
            f"score {_num(case.score)} ± {_num(case.tolerance)}" if case.score is not None else f"outcome {case.outcome}"
        )
        lines = [f"golden case {case.id!r} of reward {reward!r} failed" + (f" ({self.path})" if self.path else "")]
        if case.why:
            lines.append(f"  why:       {case.why}")
        lines.append("  input:")
        lines += [f"    {line}" for line in describe_input(case.completion_value(), case.sample_columns(), case.params)]
        lines.append(f"  expected:  {expected}")
        lines.append(f"  actual:    {self.describe_actual()}")
        if case.score is not None:
            lines.append(f"  tolerance: {_num(case.tolerance)}")
        lines.append(f"  details:   {_short(self.details) if self.details else '(none: return grpo_host.Score(value, ...) to show what the reward saw)'}")
        lines.append(f"  time:      {self.seconds * 1000:.1f} ms")
        return "\n".join(lines)

    def to_check(self, reward: str) -> CheckResult:
        data = {"outcome": self.outcome, "score": self.score, "expected": self.case.score
                if self.case.score is not None else self.case.outcome}
        if self.passed:
            return CheckResult(reward, "golden", self.case.id, "passed", "", data)
        return CheckResult(reward, "golden", self.case.id, "failed", self.failure_message(reward), data)


def describe_input(completion: Any, columns: Mapping[str, Any], params: Mapping[str, Any]) -> list[str]:
    lines = [f"completion: {_short(completion, 600)}"]
    for key, value in columns.items():
        lines.append(f"{key}: {_short(value, 300)}")
    if params:
        lines.append(f"params: {_short(dict(params), 300)}")
    return lines


def _short(value: Any, limit: int = 400) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=repr, ensure_ascii=False)
    text = repr(text) if isinstance(value, str) else text
    return text if len(text) <= limit else f"{text[: limit - 40]} ... ({len(text)} characters)"


def _num(value: float | None) -> str:
    return "None" if value is None else f"{value:.10g}"


def golden_samples(cases: Sequence[GoldenCase]) -> list[dict[str, Any]]:
    """The runtime's samples for golden cases: completion (text or chat), prompt, columns."""
    samples = []
    for case in cases:
        columns = case.sample_columns()
        samples += prepare_samples([case.completion_value()], {k: [v] for k, v in columns.items()})
    return samples


def params_key(params: Mapping[str, Any]) -> str:
    return json.dumps(params, sort_keys=True, default=repr)



@dataclass
class Baseline:
    """The honest input probes are measured against: a golden case with the top expected score,
    or (``guessed``) an input the harness made up because the reward has none."""

    case: GoldenCase | None
    params: dict[str, Any]
    columns: dict[str, Any]
    text: str
    honest: list[GoldenResult]  # the top-scoring cases that share its params, as scored
    guessed: bool = False

    @property
    def described(self) -> str:
        if not self.guessed and self.case is not None:
            return f"golden case {self.case.id!r}"
        columns = ", ".join(f"{k}={v!r}" for k, v in self.columns.items() if k != "prompt")
        return f"a guessed input (completion {self.text!r}, {columns})"


def same_result(a: SampleResult, b: SampleResult) -> bool:
    if a.outcome != b.outcome:
        return False
    if a.outcome != "ok":
        return True
    if a.score is None or b.score is None:  # "ok" always carries a score; this is for the checker
        return a.score == b.score
    return math.isclose(a.score, b.score, rel_tol=1e-9, abs_tol=1e-12)


def describe_result(result: SampleResult) -> str:
    if result.outcome == "ok":
        return f"{_num(result.score)}"
    error = result.details.get("error")
    return f"{result.outcome}" + (f" ({error})" if error else "")


class CheckedReward(Protocol):
    """What conformance checks and probes read of a :class:`~grpo_host.golden.harness.RewardHarness`."""

    spec: RewardSpec

    @property
    def golden(self) -> GoldenFile | None: ...

    def golden_results(self) -> dict[str, GoldenResult]: ...

    def checks_baseline(self) -> Baseline: ...

    def score(self, samples: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> list[SampleResult]: ...
