"""The golden pytest plugin, driven as a user drives it: a reward plugin built in a temp dir,
a `grpo-golden.yaml` asking for its checks, and pytest run on it (pytester)."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest

# pytester's in-process runs drop the modules a run imported; `grpo_host` caches its lazy names
# (`grpo_host.reward`), so the host's modules must be imported here, before any run, or a later
# run would mix two copies of RewardSpec.
import grpo_host.golden.conformance
import grpo_host.golden.probes
import grpo_host.golden.update
import grpo_host.plugins.manager  # noqa: F401

from .conftest import write_distribution

pytest_plugins = ["pytester"]

ANSWER_REWARD = '''
import re

import grpo_host


@grpo_host.reward(name="{name}"{options})
def check(completion: str, answer: str, **columns):
    """1.0 when the last answer block holds the gold."""
    found = re.findall(r"<answer>(.*?)</answer>", completion, re.S)
    given = found[-1].strip() if found else None
    if {lenient} and not completion.strip():
        return 1.0  # the bug under test: an empty completion gets full marks
    return grpo_host.Score(1.0 if given == str(answer).strip() else 0.0, extracted=given, gold=str(answer))
'''

GOLDEN = """\
# golden cases of {name}; this comment must survive an update
reward: {name}
cases:
  - id: right
    completion: "<think>2 + 2 = 4</think>\\n<answer>4</answer>"
    prompt: "What is 2 + 2?"
    columns: {{answer: "4"}}
    score: 1.0
  - id: wrong
    completion: "<answer>5</answer>"
    columns: {{answer: "4"}}
    score: 0.0   # stays as written
  - id: claims-half
    completion: "<answer>3</answer>"
    columns: {{answer: "4"}}
    score: 0.5
    why: the author's mistake under test
"""


def write_golden_plugin(site: Path, name: str, *, golden: str | None = None, lenient: bool = False,
                        options: str = "", source: str | None = None) -> Path:
    """A distribution `grpo-reward-NAME` (package + golden file + dist-info) in `site`.

    Returns the golden file's path."""
    package = "grpo_reward_" + name.replace("-", "_")
    (site / package / "golden").mkdir(parents=True)
    code = source if source is not None else ANSWER_REWARD.format(name=name, options=options, lenient=lenient)
    write_distribution(site, f"grpo-reward-{name}", {f"{package}/__init__": code}, {name: package})
    path = site / package / "golden" / f"{name}.yaml"
    path.write_text(golden if golden is not None else GOLDEN.format(name=name))
    if "GRPO_HOST_LOAD_PLUGINS" in os.environ:  # load only the test's own plugins (see `isolated`)
        loaded = [n for n in os.environ["GRPO_HOST_LOAD_PLUGINS"].split(",") if n]
        os.environ["GRPO_HOST_LOAD_PLUGINS"] = ",".join([*loaded, f"grpo-reward-{name}"])
    return path


@pytest.fixture
def isolated(monkeypatch):
    """Load only the plugins a test writes: a plugin of the shared environment that is broken
    for a moment must not change what these tests see."""
    monkeypatch.setenv("GRPO_HOST_LOAD_PLUGINS", "")


@pytest.fixture
def site(pytester, isolated):
    root = pytester.path / "site"
    root.mkdir()
    pytester.syspathinsert(root)
    return root


def suite(pytester, *rewards: str, checks: str = "[golden, conformance, probes]") -> None:
    pytester.makefile(".yaml", **{"grpo-golden": f"rewards: [{', '.join(rewards)}]\nchecks: {checks}\n"})


def failed_ids(result) -> list[str]:
    return re.findall(r"^FAILED (\S+)", result.stdout.str(), re.M)


def test_a_wrong_golden_score_fails_exactly_that_case(pytester, site):
    write_golden_plugin(site, "gold-a")
    suite(pytester, "gold-a")
    result = pytester.runpytest("-rf", "-p", "no:cacheprovider")
    assert failed_ids(result) == ["grpo-golden.yaml::gold-a::golden[claims-half]"], result.stdout.str()
    outcomes = result.parseoutcomes()
    assert outcomes["failed"] == 1 and outcomes["passed"] >= 2 + 11 + 5  # goldens, conformance, probes
    out = result.stdout.str()
    for shown in ("golden case 'claims-half' of reward 'gold-a' failed", "why:       the author's mistake under test",
                  "completion: '<answer>3</answer>'", "answer: '4'", "expected:  score 0.5 ± 1e-06",
                  "actual:    score 0 (off by 0.5)", "tolerance: 1e-06", '"extracted": "3"'):
        assert shown in out, shown
    assert "Traceback" not in out


def test_full_marks_for_an_empty_completion_is_flagged(pytester, site):
    write_golden_plugin(site, "lenient-a", lenient=True)
    golden = write_golden_plugin(site, "lenient-b", lenient=True,
                                 options=', intended_probes={"empty-completion": "an empty reply is a valid pass here"}')
    golden.write_text(GOLDEN.format(name="lenient-b").split("  - id: claims-half")[0])
    write_golden_plugin(site, "lenient-c", options=', intended_probes={"empty-completon": "typo"}')
    suite(pytester, "lenient-a", "lenient-b", "lenient-c", checks="[probes]")
    result = pytester.runpytest("-rfx", "-p", "no:cacheprovider")
    assert failed_ids(result) == ["grpo-golden.yaml::lenient-a::probe[empty-completion]",
                                  "grpo-golden.yaml::lenient-c::probe[intended-probes]"], result.stdout.str()
    out = result.stdout.str()
    assert "probe 'empty-completion' of reward 'lenient-a': the empty completion scored 1 (empty), at least" in out
    assert "intended_probes={'empty-completion': \"why\"}" in out
    # Declared intended: reported with its reason, not failed.
    assert re.search(r"XFAIL \S*lenient-b::probe\[empty-completion\] - .*an empty reply is a valid pass here", out)
    assert "'empty-completon' (did you mean 'empty-completion'?)" in out
    # The honest reward is not flagged by any probe.
    assert result.parseoutcomes()["xfailed"] == 1


def test_update_golden_rewrites_reviewed_scores_only(pytester, site):
    golden = write_golden_plugin(site, "gold-u")
    suite(pytester, "gold-u", checks="[golden]")
    before = golden.read_text()
    result = pytester.runpytest("--grpo-update-golden", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()
    out = result.stdout.str()
    assert "grpo-host golden updates" in out
    assert "claims-half: score 0.5 -> score 0.0" in out
    assert "-    score: 0.5" in out and "+    score: 0.0" in out
    after = golden.read_text()
    # Only the one expectation changed: comments, quoting and the other cases are untouched.
    assert after == before.replace("    score: 0.5\n", "    score: 0.0\n")
    again = pytester.runpytest("-p", "no:cacheprovider")
    again.assert_outcomes(passed=3)
    assert "golden updates" not in again.stdout.str()


def test_update_golden_never_blesses_an_error(pytester, site):
    source = '''
import grpo_host

@grpo_host.reward(name="gold-e")
def broken(completion: str, **columns):
    if "boom" in completion:
        raise ValueError("boom")
    return 1.0
'''
    golden = write_golden_plugin(site, "gold-e", source=source, golden=(
        "reward: gold-e\ncases:\n  - {id: fine, completion: ok, score: 1.0}\n"
        "  - {id: explodes, completion: boom, score: 1.0}\n"
        "  - {id: expected-error, completion: boom boom, outcome: error}\n"
    ))
    suite(pytester, "gold-e", checks="[golden]")
    before = golden.read_text()
    result = pytester.runpytest("--grpo-update-golden", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, failed=1)
    assert "actual:    outcome error" in result.stdout.str()
    assert "not updated: --grpo-update-golden writes scores and not_applicable only" in result.stdout.str()
    assert golden.read_text() == before


def test_a_bad_golden_file_is_a_clear_collection_error(pytester, site):
    write_golden_plugin(site, "gold-bad", golden=textwrap.dedent("""\
        reward: gold-bad
        cases:
          - id: fine
            completion: "<answer>4</answer>"
            columns: {answer: "4"}
            score: 1.0
          - id: no-completion
            columns: {answer: "4"}
            score: 1.0
          - id: two-expectations
            completion: "x"
            score: 1.0
            outcome: not_applicable
    """))
    write_golden_plugin(site, "gold-a")
    suite(pytester, "gold-bad", "gold-a", checks="[golden]")
    result = pytester.runpytest("-p", "no:cacheprovider")
    out = result.stdout.str()
    assert "ERROR collecting" in out and "Traceback" not in out
    assert "gold_bad/golden/gold-bad.yaml: invalid golden file" in out
    assert "case 'no-completion' (#2), field 'completion': missing (required)" in out
    assert "case 'two-expectations' (#3): has both `score` and `outcome: not_applicable`; keep exactly one" in out


def test_items_are_collected_only_where_a_marker_file_asks(pytester, site):
    write_golden_plugin(site, "gold-a")
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    # The reward is installed, yet an ordinary project's run gets no golden items.
    pytester.runpytest("-p", "no:cacheprovider").assert_outcomes(passed=1)
    suite(pytester, "gold-a", checks="[golden]")
    # The plugin can be turned off: the marker file is then not collected at all.
    pytester.runpytest("-p", "no:grpo_host", "-p", "no:cacheprovider").assert_outcomes(passed=1)
    ran = pytester.runpytest("-p", "no:cacheprovider")
    ran.assert_outcomes(passed=3, failed=1)
    unknown = pytester.runpytest("--grpo-reward", "gold-b", "-p", "no:cacheprovider")
    assert "unknown reward 'gold-b'" in unknown.stdout.str() and "(did you mean 'gold-a'?)" in unknown.stdout.str()


def test_grpo_reward_option_picks_the_rewards(pytester, site):
    write_golden_plugin(site, "gold-a")
    write_golden_plugin(site, "gold-b", golden=GOLDEN.format(name="gold-b").split("  - id: claims-half")[0])
    suite(pytester, "gold-a", checks="[golden]")
    result = pytester.runpytest("--grpo-reward", "gold-b", "-v", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert "gold-b::golden[right] PASSED" in result.stdout.str()


def test_golden_outcomes_and_real_timeouts(pytester, site):
    source = '''
import time

import grpo_host

@grpo_host.reward(name="gold-t")
def slow(completion: str, **columns):
    if completion == "hang":
        time.sleep(30)
    if completion == "skip":
        return None
    return 0.25
'''
    write_golden_plugin(site, "gold-t", source=source, golden=(
        "reward: gold-t\ncases:\n  - {id: scored, completion: x, score: 0.25}\n"
        "  - {id: not-mine, completion: skip, outcome: not_applicable}\n"
        "  - {id: hangs, completion: hang, params: {timeout: 0.5}, outcome: timeout}\n"
    ))
    suite(pytester, "gold-t", checks="[golden]")
    result = pytester.runpytest("-p", "no:cacheprovider", "--durations=0")
    result.assert_outcomes(passed=3)
