"""pytest plugin: each golden case, conformance check and reward-hacking probe of grpo-host
rewards becomes a test item with a readable failure.

pytest loads it through the ``pytest11`` entry point ``grpo_host``; ``-p no:grpo_host`` turns it
off. It collects nothing on its own: a marker file named ``grpo-golden.yaml`` in a test folder
asks for the items (``reward_tests/`` has one, and so does every plugin ``grpo-host new-reward``
makes), so other projects' test runs are untouched::

    # grpo-golden.yaml
    rewards: all                          # every installed reward, or a list: [format, accuracy]
    checks: [golden, conformance, probes] # the default; leave out what you do not want

Options: ``--grpo-reward NAME`` (repeatable) tests the named rewards instead of the file's
list; ``--grpo-update-golden`` rewrites the expected score of every failing case from the
reward's current output, printing each change for review (errors and timeouts are never
written). Importing this module costs nothing: the harness loads when a marker file is found.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:  # pragma: no cover
    from grpo_host.golden.harness import CheckResult, RewardHarness
    from grpo_host.plugins.manager import PluginManager
    from grpo_host.rewards.spec import RewardSpec

MARKER = "grpo-golden.yaml"
CHECK_KINDS = ("golden", "conformance", "probes")


class CheckFailed(Exception):
    """A check failed; its message is the whole report (no traceback is useful here)."""


class _State:
    """Per session: the plugin manager, one harness per reward, updates to write at the end."""

    def __init__(self) -> None:
        self._manager: PluginManager | None = None
        self.harnesses: dict[str, RewardHarness] = {}
        self.updates: list[Any] = []
        self.report: list[str] = []

    @property
    def manager(self) -> Any:
        if self._manager is None:
            from grpo_host.plugins.manager import PluginManager

            self._manager = PluginManager()
        return self._manager

    def harness(self, spec: RewardSpec) -> RewardHarness:
        if spec.name not in self.harnesses:
            from grpo_host.golden.harness import RewardHarness

            self.harnesses[spec.name] = RewardHarness(spec)
        return self.harnesses[spec.name]


_STATE = pytest.StashKey[_State]()


def _state(config: pytest.Config) -> _State:
    if _STATE not in config.stash:
        config.stash[_STATE] = _State()
    return config.stash[_STATE]


# -- hooks ------------------------------------------------------------------------------------
def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("grpo-host", "grpo-host reward tests (golden cases, conformance, probes)")
    group.addoption("--grpo-reward", action="append", default=[], metavar="NAME",
                    help=f"test this installed reward (repeatable) instead of the rewards a {MARKER} lists")
    group.addoption("--grpo-update-golden", action="store_true", default=False,
                    help="rewrite failing golden scores from the rewards' current output, printing each change")


def pytest_collect_file(file_path: Any, parent: pytest.Collector) -> pytest.Collector | None:
    if file_path.name == MARKER:
        return RewardSuiteFile.from_parent(parent, path=file_path)
    return None


def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    # A reward's worker processes end with its last item, not with the session.
    if isinstance(item, RewardCheckItem) and getattr(nextitem, "harness", None) is not item.harness:
        item.harness.close()


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None:
        return
    for harness in state.harnesses.values():
        harness.close()
    if state.updates:
        from grpo_host.golden.update import apply_updates

        state.report = apply_updates(state.updates)
        state.updates = []


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is None or not state.report:
        return
    terminalreporter.section("grpo-host golden updates", sep="=", yellow=True)
    for line in state.report:
        terminalreporter.write_line(line)


# -- collection -------------------------------------------------------------------------------
class RewardSuiteFile(pytest.File):
    """A ``grpo-golden.yaml``: which rewards to test, and which kinds of checks."""

    def collect(self) -> Any:
        from grpo_host.errors import GrpoHostError
        from grpo_host.golden.harness import select_rewards

        names, kinds = self._read()
        state = _state(self.config)
        try:
            specs, problems = select_rewards(state.manager, names)
        except GrpoHostError as exc:
            raise self.CollectError(f"{self.path}: {exc}")
        for problem in problems:
            yield SetupItem.from_parent(self, name=f"{problem.reward}::{problem.name}", result=problem)
        for spec in specs:
            yield RewardCollector.from_parent(self, name=spec.name, spec=spec, kinds=kinds)

    def _read(self) -> tuple[list[str] | None, tuple[str, ...]]:
        import yaml

        try:
            data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise self.CollectError(f"{self.path}: not valid YAML ({exc})")
        if not isinstance(data, dict) or set(data) - {"rewards", "checks"}:
            raise self.CollectError(
                f"{self.path}: expected keys `rewards` (all, or a list of names) and `checks` "
                f"(a list of {', '.join(CHECK_KINDS)}), got {data!r}"
            )
        chosen = self.config.getoption("grpo_reward")
        listed = data.get("rewards", "all")
        if chosen:
            names = chosen
        elif listed == "all":
            names = None
        elif isinstance(listed, list) and all(isinstance(n, str) for n in listed):
            names = listed
        else:
            raise self.CollectError(f"{self.path}: `rewards` is `all` or a list of reward names, not {listed!r}")
        kinds = data.get("checks", list(CHECK_KINDS))
        if not isinstance(kinds, list) or set(kinds) - set(CHECK_KINDS):
            raise self.CollectError(f"{self.path}: `checks` is a list of {', '.join(CHECK_KINDS)}, not {kinds!r}")
        return names, tuple(kinds)


class RewardCollector(pytest.Collector):
    """One reward: its golden cases, then its conformance checks, then its probes."""

    def __init__(self, *, spec: RewardSpec, kinds: tuple[str, ...], **kwargs: Any):
        super().__init__(**kwargs)
        self.spec = spec
        self.kinds = kinds

    def collect(self) -> Any:
        from grpo_host.golden.conformance import CHECKS
        from grpo_host.golden.harness import CheckResult
        from grpo_host.golden.loader import GoldenFileError
        from grpo_host.golden.probes import PROBE_NAMES

        harness = _state(self.config).harness(self.spec)
        try:
            golden = harness.golden
        except GoldenFileError as exc:
            raise self.CollectError(str(exc))
        if "golden" in self.kinds:
            if golden is None:
                missing = CheckResult(self.spec.name, "setup", "golden-file", "failed", harness.missing_golden_message())
                yield SetupItem.from_parent(self, name="golden-file", result=missing)
            for case in golden.cases if golden else []:
                yield GoldenItem.from_parent(self, name=f"golden[{case.id}]", harness=harness, check=case.id)
        if "conformance" in self.kinds:
            for check in CHECKS:
                yield ConformanceItem.from_parent(self, name=f"conformance[{check}]", harness=harness, check=check)
        if "probes" in self.kinds:
            probes = list(PROBE_NAMES)
            if set(self.spec.intended_probes) - set(PROBE_NAMES):
                probes.append("intended-probes")
            for probe in probes:
                yield ProbeItem.from_parent(self, name=f"probe[{probe}]", harness=harness, check=probe)


# -- items ------------------------------------------------------------------------------------
class _ReportedItem(pytest.Item):
    def repr_failure(self, excinfo: Any, style: Any = None) -> Any:
        if isinstance(excinfo.value, CheckFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)

    def _conclude(self, result: CheckResult) -> None:
        if result.status == "failed":
            raise CheckFailed(result.message)
        if result.status == "skipped":
            # Reported at the item (not at this line) in `-rs`, as skip markers are.
            raise pytest.skip.Exception(result.message, _use_item_location=True)
        if result.status == "intended":
            pytest.xfail(result.message)


class SetupItem(_ReportedItem):
    """A problem found while collecting (a plugin that did not load, a missing golden file)."""

    def __init__(self, *, result: CheckResult, **kwargs: Any):
        super().__init__(**kwargs)
        self.result = result

    def runtest(self) -> None:
        self._conclude(self.result)

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, f"{self.result.reward}: {self.result.name}"


class RewardCheckItem(_ReportedItem):
    kind = ""

    def __init__(self, *, harness: RewardHarness, check: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.harness = harness
        self.check = check

    def reportinfo(self) -> tuple[Any, int, str]:
        return self.path, 0, f"reward {self.harness.spec.name}: {self.kind} {self.check}"


class GoldenItem(RewardCheckItem):
    kind = "golden case"

    def runtest(self) -> None:
        result = self.harness.golden_result(self.check)
        if result.passed:
            return
        reward = self.harness.spec.name
        if self.config.getoption("grpo_update_golden"):
            if result.updatable:
                from grpo_host.golden.update import GoldenUpdate

                case = result.case
                old = f"score {case.score:.10g}" if case.score is not None else f"outcome {case.outcome}"
                _state(self.config).updates.append(
                    GoldenUpdate(result.path, case.id, old, result.outcome, result.score)
                )
                return
            raise CheckFailed(result.failure_message(reward) + "\n  not updated: --grpo-update-golden writes "
                              "scores and not_applicable only; fix the reward, or write the outcome by hand")
        raise CheckFailed(result.failure_message(reward))


class ConformanceItem(RewardCheckItem):
    kind = "conformance"

    def runtest(self) -> None:
        self._conclude(self.harness.conformance()[self.check])


class ProbeItem(RewardCheckItem):
    kind = "probe"

    def runtest(self) -> None:
        self._conclude(self.harness.probes()[self.check])
