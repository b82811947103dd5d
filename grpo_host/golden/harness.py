"""The golden harness: score a reward's golden cases, conformance inputs and probes.

Everything is scored through :class:`~grpo_host.rewards.runtime.RewardRuntime`, the same
runtime training uses, so timeouts, crashes and outcomes are the real ones. A
:class:`RewardHarness` holds one small runtime per distinct params of a reward's cases, scores
lazily (collecting tests costs nothing) and caches what it scored; the pytest plugin and
``grpo-host test-rewards`` both read their results from it, so they can never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from grpo_host.errors import GrpoHostError
from grpo_host.golden.conformance import run_conformance
from grpo_host.golden.loader import (
    GoldenCase,
    GoldenFile,
    expected_golden_path,
    find_golden_file,
    load_golden_file,
)
from grpo_host.golden.probes import run_probes
from grpo_host.golden.results import (  # noqa: F401 - CheckResult, GoldenResult, ... are the harness's API too
    Baseline,
    CheckResult,
    GoldenResult,
    describe_input,
    describe_result,
    golden_samples,
    params_key,
    same_result,
)
from grpo_host.rewards.runtime import BoundReward, RewardRuntime, SampleResult, bind_reward
from grpo_host.rewards.spec import RewardSpec

if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.plugins.manager import PluginManager

CHECK_KINDS = ("golden", "conformance", "probes")
# One worker per reward: the checks are small, and the machine is shared with other work.
DEFAULT_WORKERS = 1


def run_golden_case(
    spec: RewardSpec, case: GoldenCase, *, runtime: RewardRuntime | None = None, workers: int = DEFAULT_WORKERS
) -> GoldenResult:
    """Score one golden case through the reward runtime and compare it with its expectation.

    ``runtime`` (optional) must hold ``spec`` bound with ``case.params``; without one, a
    runtime is started for the case and closed after it.
    """
    try:
        bound = bind_reward(spec, case.params)
    except GrpoHostError as exc:
        return GoldenResult(case, "error", None, problem=f"its params are not valid: {exc}")
    if runtime is not None:
        return score_cases(runtime, bound.name, [case])[0]
    with RewardRuntime([bound], workers=workers) as fresh:
        return score_cases(fresh, bound.name, [case])[0]


def score_cases(runtime: RewardRuntime, name: str, cases: Sequence[GoldenCase]) -> list[GoldenResult]:
    """Score golden cases in one batch, as a training step would."""
    rows = runtime.score(golden_samples(cases))[name]
    return [GoldenResult(c, r.outcome, r.score, r.details, r.seconds) for c, r in zip(cases, rows, strict=True)]


# What the checks build on when a reward has no scored golden case: a plausible answer in the
# usual format, with the gold in every column the reward requires (and in `answer`).
GUESSED_PROMPT = "What is 2 + 2? Think, then give the answer in <answer></answer>."
GUESSED_TEXT = "<think>2 + 2 = 4</think>\n<answer>4</answer>"
GUESSED_GOLD = "4"


class RewardHarness:
    """Golden cases, conformance checks and probes of one reward, scored lazily and cached."""

    def __init__(self, spec: RewardSpec, *, workers: int = DEFAULT_WORKERS, golden: GoldenFile | None = None):
        """``golden`` replaces the reward's own golden file (cases made for a server a test
        started, say)."""
        self.spec = spec
        self.workers = workers
        self._runtimes: dict[str, tuple[RewardRuntime, BoundReward]] = {}
        self._golden: GoldenFile | None | bool = False if golden is None else golden  # False: not read yet
        self._golden_results: dict[str, GoldenResult] | None = None
        self._conformance: dict[str, CheckResult] | None = None
        self._probes: dict[str, CheckResult] | None = None

    # -- the golden file ---------------------------------------------------------------------
    @property
    def golden_path(self) -> str:
        found = find_golden_file(self.spec)
        return str(found) if found is not None else expected_golden_path(self.spec)

    @property
    def golden(self) -> GoldenFile | None:
        """The reward's golden file (None when it ships none); raises GoldenFileError when bad."""
        if self._golden is False:
            path = find_golden_file(self.spec)
            self._golden = None if path is None else load_golden_file(path, reward=self.spec.name)
        return self._golden  # type: ignore[return-value, unused-ignore]

    def missing_golden_message(self) -> str:
        return (
            f"reward {self.spec.name!r} ships no golden file; expected one at {self.golden_path} "
            "(or name it with @grpo_host.reward(golden=...)). Write a few cases: docs/golden-format.md"
        )

    # -- scoring -----------------------------------------------------------------------------
    def bound(self, params: Mapping[str, Any]) -> tuple[RewardRuntime, BoundReward]:
        key = params_key(params)
        if key not in self._runtimes:
            bound = bind_reward(self.spec, params)
            self._runtimes[key] = (RewardRuntime([bound], workers=self.workers), bound)
        return self._runtimes[key]

    def score(self, samples: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> list[SampleResult]:
        runtime, bound = self.bound(params)
        if not samples:
            return []
        return runtime.score(samples)[bound.name]

    def golden_results(self) -> dict[str, GoldenResult]:
        """Every golden case scored, one batch per distinct params."""
        if self._golden_results is None:
            golden = self.golden
            results: dict[str, GoldenResult] = {}
            groups: dict[str, list[GoldenCase]] = {}
            for case in golden.cases if golden else []:
                groups.setdefault(params_key(case.params), []).append(case)
            for cases in groups.values():
                try:
                    runtime, bound = self.bound(cases[0].params)
                except GrpoHostError as exc:
                    for case in cases:
                        results[case.id] = GoldenResult(case, "error", None, problem=f"its params are not valid: {exc}")
                    continue
                for result in score_cases(runtime, bound.name, cases):
                    results[result.case.id] = result
            path = golden.path if golden else ""
            self._golden_results = {}
            for case in golden.cases if golden else []:  # in file order
                results[case.id].path = path
                self._golden_results[case.id] = results[case.id]
        return self._golden_results

    def golden_result(self, case_id: str) -> GoldenResult:
        return self.golden_results()[case_id]

    def baseline(self) -> Baseline | None:
        """A golden case with the highest expected score (default params preferred), or None."""
        golden = self.golden
        scores = [(c, c.score) for c in (golden.cases if golden else []) if c.score is not None]
        if not scores:
            return None
        top = max(score for _, score in scores)
        tied = [c for c, score in scores if score >= top - c.tolerance]
        case = min(tied, key=lambda c: len(c.params))  # stable: the first of the simplest
        results = self.golden_results()
        honest = [results[c.id] for c in tied if params_key(c.params) == params_key(case.params)]
        return Baseline(case, dict(case.params), case.sample_columns(), case.completion_text(), honest)

    def checks_baseline(self) -> Baseline:
        """The baseline conformance checks and probes build on: :meth:`baseline`, else a
        guessed one, so that a reward with no golden file (or no scored case) is still checked."""
        found = self.baseline()
        if found is not None:
            return found
        columns: dict[str, Any] = {"prompt": GUESSED_PROMPT, "answer": GUESSED_GOLD}
        columns.update({c: GUESSED_GOLD for c in self.spec.columns if c != "prompt"})
        return Baseline(None, {}, columns, GUESSED_TEXT, [], guessed=True)

    def conformance(self) -> dict[str, CheckResult]:
        if self._conformance is None:
            self._conformance = run_conformance(self)
        return self._conformance

    def probes(self) -> dict[str, CheckResult]:
        if self._probes is None:
            self._probes = run_probes(self)
        return self._probes

    # -- everything at once (the CLI) --------------------------------------------------------
    def run_checks(self, kinds: Iterable[str] = CHECK_KINDS) -> list[CheckResult]:
        kinds = set(kinds)
        name = self.spec.name
        try:
            golden = self.golden
        except GrpoHostError as exc:
            return [CheckResult(name, "setup", "golden-file", "failed", str(exc))]
        checks: list[CheckResult] = []
        if "golden" in kinds:
            if golden is None:
                message = self.missing_golden_message()
                if {"conformance", "probes"} & kinds:
                    message += "; the conformance checks and probes ran on a guessed input meanwhile"
                checks.append(CheckResult(name, "setup", "golden-file", "failed", message))
            checks += [r.to_check(name) for r in self.golden_results().values()]
        if "conformance" in kinds:
            checks += list(self.conformance().values())
        if "probes" in kinds:
            checks += list(self.probes().values())
        return checks

    def close(self) -> None:
        for runtime, _ in self._runtimes.values():
            runtime.close()
        self._runtimes.clear()

    def __enter__(self) -> RewardHarness:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- choosing rewards --------------------------------------------------------------------------
def select_rewards(manager: PluginManager, names: Sequence[str] | None) -> tuple[list[RewardSpec], list[CheckResult]]:
    """The rewards to test (all installed when ``names`` is empty) and setup problems.

    Named rewards that are unknown raise the manager's error (with a did-you-mean). When all
    rewards are tested, a plugin that failed to load, or two plugins claiming one name, are
    setup failures: the suite must not pass with a reward silently missing.
    """
    if names:
        return [manager.get_reward(name) for name in dict.fromkeys(names)], []
    problems = [
        CheckResult(p.name, "setup", "plugin-loads", "failed", f"plugin {p.name} {p.version} did not load: {p.error}")
        for p in manager.broken_plugins()
    ]
    for (kind, reward), _owners in sorted(manager.conflicts.items()):
        if kind == "reward":
            problems.append(CheckResult(reward, "setup", "unique-name", "failed", manager.conflict_message(kind, reward)))
    return sorted(manager.rewards.values(), key=lambda s: s.name), problems
