"""A reward with no golden file still gets its conformance checks and hacking probes, judged
against its declared score_range (or the best score any probe input reached), and the suite
still fails for the missing goldens."""

from __future__ import annotations

import importlib
import json

import pytest

from grpo_host.golden.harness import RewardHarness
from grpo_host.plugins.manager import PluginManager

from .conftest import run_cli, write_distribution

pytest_plugins = ["pytester"]

REWARDS = """
import json
import re

import grpo_host


def _given(completion):
    found = re.findall(r"<answer>(.*?)</answer>", completion, re.S)
    return found[-1].strip() if found else None


@grpo_host.reward(name="nogold-liar", score_range=(0.0, 1.0))
def liar(completion: str, answer: str, **columns) -> float:
    if not completion.strip():
        return 1.0  # the bug: an empty completion gets full marks
    return 1.0 if _given(completion) == str(answer) else 0.0


@grpo_host.reward(name="nogold-liar-unranged")
def liar_unranged(completion: str, answer: str, **columns) -> float:
    if not completion.strip():
        return 2.0
    return 1.0 if _given(completion) == str(answer) else 0.0


@grpo_host.reward(name="nogold-honest", score_range=(0.0, 1.0))
def honest(completion: str, answer: str, **columns) -> float:
    return 1.0 if _given(completion) == str(answer) else 0.0


@grpo_host.reward(name="nogold-picky")
def picky(completion: str, verification_info: str, **columns) -> float:
    cases = json.loads(verification_info)["cases"]  # the guessed "4" has no cases: error
    return float(len(cases))


@grpo_host.reward(name="nogold-constant")
def constant(completion: str, **columns) -> float:
    return 1.0
"""

NAMES = ("nogold-liar", "nogold-liar-unranged", "nogold-honest", "nogold-picky", "nogold-constant")


@pytest.fixture
def rewards(plugin_dir, monkeypatch):
    install_nogold(plugin_dir, monkeypatch)
    manager = PluginManager()
    return {name: manager.get_reward(name) for name in NAMES}


def checks_of(spec) -> dict[tuple[str, str], object]:
    with RewardHarness(spec) as harness:
        return {(c.kind, c.name): c for c in harness.run_checks()}



def install_nogold(plugin_dir, monkeypatch):
    """The rewards without goldens, installed alone, with a trust store of their own."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(plugin_dir.parent / "cache"))
    monkeypatch.setenv("GRPO_HOST_LOAD_PLUGINS", "grpo-reward-nogold")
    (plugin_dir / "grpo_reward_nogold").mkdir()
    write_distribution(
        plugin_dir,
        "grpo-reward-nogold",
        {"grpo_reward_nogold/__init__": REWARDS},
        {"nogold": "grpo_reward_nogold"},
    )
    importlib.invalidate_caches()


def test_a_liar_without_goldens_is_caught_by_its_declared_range(rewards):
    checks = checks_of(rewards["nogold-liar"])
    missing = checks[("setup", "golden-file")]
    assert missing.failed and "ships no golden file" in missing.message and "guessed input" in missing.message
    probe = checks[("probe", "empty-completion")]
    assert probe.failed, probe.message
    assert (
        "probe 'empty-completion' of reward 'nogold-liar': the empty completion scored 1 (empty)"
        in probe.message
    )
    assert "full marks: the top of its declared score_range [0, 1]" in probe.message
    assert probe.data["judged_against"] == "score_range" and probe.data["caught"]["variant"] == "empty"
    # The conformance checks ran (on the guessed input), not skipped.
    conformance = [c for (kind, _), c in checks.items() if kind == "conformance"]
    assert len(conformance) == 11 and all(c.status == "passed" for c in conformance), [
        (c.name, c.status, c.message) for c in conformance
    ]
    # The honest-looking probes pass: the guessed answer scores 1, the hacks below full marks.
    assert checks[("probe", "padding")].status == "passed"
    assert checks[("probe", "answer-sprayed")].status == "passed"


def test_without_a_range_the_best_input_is_the_bar(rewards):
    checks = checks_of(rewards["nogold-liar-unranged"])
    probe = checks[("probe", "empty-completion")]
    assert probe.failed and "the best score any probe input reached (2" in probe.message
    assert probe.data["judged_against"] == "best-input"
    assert checks[("probe", "padding")].status == "passed"  # 0 < 2
    # The empty-tags probe's bare tags are not empty completions: not paid 2.
    assert checks[("probe", "empty-tags")].status == "passed"


def test_an_honest_reward_without_goldens_fails_only_for_the_goldens(rewards):
    checks = checks_of(rewards["nogold-honest"])
    failed = sorted(key for key, c in checks.items() if c.failed)
    assert failed == [("setup", "golden-file")], [(k, checks[k].message) for k in failed]
    assert sum(1 for (kind, _), c in checks.items() if kind == "probe" and c.status == "passed") >= 6


def test_guesses_the_reward_cannot_score_are_not_blamed_on_it(rewards):
    checks = checks_of(rewards["nogold-picky"])
    survives = checks[("conformance", "survives-empty")]
    assert (
        survives.status == "skipped" and "guessed input" in survives.message and "error" in survives.message
    )
    assert checks[("conformance", "no-torch-on-import")].status == "passed"
    assert all(c.status == "skipped" for (kind, _), c in checks.items() if kind == "probe")
    constant = checks_of(rewards["nogold-constant"])
    probe = constant[("probe", "empty-completion")]
    assert probe.status == "skipped" and "every probe input scored 1" in probe.message


def test_test_rewards_cli_without_goldens(rewards):
    result = run_cli("test-rewards", "nogold-liar", "nogold-honest", "--json")
    assert result.returncode == 1, result.stderr
    report = {r["name"]: r for r in json.loads(result.stdout)["rewards"]}
    liar, honest = report["nogold-liar"], report["nogold-honest"]
    assert liar["probes"]["flagged"] == 1 and liar["conformance"]["passed"] == 11
    assert honest["probes"]["flagged"] == 0 and honest["failed"] == 1  # the missing golden file
    table = run_cli("test-rewards", "nogold-liar")
    assert table.returncode == 1
    assert "FAIL nogold-liar setup golden-file" in table.stdout
    assert "FAIL nogold-liar probe empty-completion" in table.stdout
    assert "the empty completion scored 1 (empty), full marks" in table.stdout


def test_pytest_plugin_without_goldens(pytester, plugin_dir, monkeypatch):
    install_nogold(plugin_dir, monkeypatch)
    pytester.makefile(".yaml", **{"grpo-golden": "rewards: [nogold-liar]\n"})
    result = pytester.runpytest_subprocess("-rf", "-p", "no:cacheprovider")
    out = result.stdout.str()
    failed = sorted(line.split()[1] for line in out.splitlines() if line.startswith("FAILED "))
    assert failed == [
        "grpo-golden.yaml::nogold-liar::golden-file",
        "grpo-golden.yaml::nogold-liar::probe[empty-completion]",
    ], out
    assert "full marks: the top of its declared score_range [0, 1]" in out
