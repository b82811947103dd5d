"""The plugin host: loading, blocking, allow-listing, conflicts, unknown names, tracing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from grpo_host.errors import BrokenPluginError, NameConflictError, UnknownNameError
from grpo_host.plugins.manager import PluginManager

from .conftest import REPO, run_cli, write_distribution

GOOD = """
    import grpo_host

    @grpo_host.reward(name="shout")
    def shout(completion: str, bonus: float = 0.5, **columns) -> float:
        '''1 + bonus when the completion is all caps.'''
        return 1.0 + bonus if completion.isupper() else 0.0
"""

HOOKED = """
    import grpo_host

    @grpo_host.reward(name="{name}")
    def scorer(completion: str, **columns) -> float:
        return 1.0

    @grpo_host.hookimpl
    def grpo_rewards():
        return [scorer]
"""


def test_decorated_module_is_a_plugin(plugin_dir):
    write_distribution(plugin_dir, "grpo-reward-shout", {"shout_plugin": GOOD}, {"shout": "shout_plugin"}, "1.2.3")
    manager = PluginManager()
    record = next(p for p in manager.plugins if p.name == "grpo-reward-shout")
    assert (record.status, record.version, record.rewards) == ("ok", "1.2.3", ["shout"])
    spec = manager.get_reward("shout")
    assert spec.plugin == "grpo-reward-shout" and spec.plugin_version == "1.2.3"
    assert spec.params["bonus"].default == 0.5 and spec.params["bonus"].text == "float"
    assert spec.description == "1 + bonus when the completion is all caps."


def test_broken_plugin_is_set_aside_and_every_command_works(plugin_dir):
    write_distribution(plugin_dir, "grpo-reward-shout", {"shout_plugin": GOOD}, {"shout": "shout_plugin"})
    write_distribution(
        plugin_dir, "grpo-reward-broken", {"broken_plugin": "raise RuntimeError('database of vibes missing')"},
        {"broken": "broken_plugin"},
    )
    listing = run_cli("plugins", "--json")
    assert listing.returncode == 0, listing.stderr
    plugins = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}
    assert plugins["grpo-reward-broken"]["status"] == "broken"
    assert "RuntimeError: database of vibes missing" in plugins["grpo-reward-broken"]["error"]
    assert plugins["grpo-reward-shout"]["status"] == "ok"

    for args in (["rewards", "--json"], ["backends", "--json"], ["--version"], ["--help"], ["plugins"], ["rewards"]):
        result = run_cli(*args)
        assert result.returncode == 0, (args, result.stderr)
    assert "grpo-reward-broken" in run_cli("--version").stdout
    scored = run_cli("try-reward", "shout", "--completion", "HEY", "--json")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["rewards"]["shout"]["score"] == 1.5

    # Asking for a name the broken plugin may provide says which plugin and why.
    with pytest.raises(BrokenPluginError, match="grpo-reward-broken.*database of vibes missing"):
        PluginManager().get_reward("broken")


def test_hook_validation_failures_mark_the_plugin_broken(plugin_dir):
    misspelled = """
        import grpo_host

        @grpo_host.hookimpl
        def grpo_reward():
            return []
    """
    wrong_args = """
        import grpo_host

        @grpo_host.hookimpl
        def grpo_rewards(config):
            return []
    """
    garbage = """
        import grpo_host

        @grpo_host.hookimpl
        def grpo_rewards():
            return ["not a reward"]
    """
    for dist, source in (("p-misspelled", misspelled), ("p-wrong-args", wrong_args), ("p-garbage", garbage)):
        module = dist.replace("-", "_")
        write_distribution(plugin_dir / dist, dist, {module: source}, {dist: module})
        sys.path.insert(0, str(plugin_dir / dist))
    try:
        records = {p.name: p for p in PluginManager().plugins}
    finally:
        for dist in ("p-misspelled", "p-wrong-args", "p-garbage"):
            sys.path.remove(str(plugin_dir / dist))
    assert records["p-misspelled"].status == "broken"
    assert "did you mean 'grpo_rewards'" in records["p-misspelled"].error
    assert records["p-wrong-args"].status == "broken" and "config" in records["p-wrong-args"].error
    assert records["p-garbage"].status == "broken" and "not decorated" in records["p-garbage"].error


def test_block_and_allow_lists(plugin_dir):
    write_distribution(plugin_dir, "grpo-reward-shout", {"shout_plugin": GOOD}, {"shout": "shout_plugin"})
    write_distribution(plugin_dir, "grpo-reward-other", {"other_plugin": HOOKED.format(name="other")}, {"o": "other_plugin"})

    def statuses(env):
        mine = {"grpo-reward-shout", "grpo-reward-other"}
        return {p.name: p.status for p in PluginManager(environ=env).plugins if p.name in mine}

    assert statuses({}) == {"grpo-reward-shout": "ok", "grpo-reward-other": "ok"}
    assert statuses({"GRPO_HOST_DISABLE_PLUGINS": "grpo_reward_shout"}) == {
        "grpo-reward-shout": "blocked", "grpo-reward-other": "ok"}
    assert statuses({"GRPO_HOST_LOAD_PLUGINS": "grpo-reward-other"}) == {
        "grpo-reward-shout": "blocked", "grpo-reward-other": "ok"}
    assert statuses({"GRPO_HOST_LOAD_PLUGINS": ""}) == {"grpo-reward-shout": "blocked", "grpo-reward-other": "blocked"}
    # A blocked plugin's module is never imported (checked in a fresh interpreter).
    probe = subprocess.run(
        [sys.executable, "-c", "import sys; from grpo_host.plugins.manager import PluginManager; PluginManager(); "
         "print('shout_plugin' in sys.modules, 'other_plugin' in sys.modules)"],
        capture_output=True, text=True, env={**os.environ, "GRPO_HOST_DISABLE_PLUGINS": "grpo-reward-shout"},
    )
    assert probe.stdout.split() == ["False", "True"], probe.stderr
    manager = PluginManager(environ={"GRPO_HOST_DISABLE_PLUGINS": "grpo-reward-shout"})
    with pytest.raises(UnknownNameError, match="blocked plugins .*grpo-reward-shout"):
        manager.get_reward("shout")
    listing = run_cli("plugins", "--json", env={"GRPO_HOST_DISABLE_PLUGINS": "grpo-reward-shout"})
    rows = {p["name"]: p for p in json.loads(listing.stdout)["plugins"]}
    assert rows["grpo-reward-shout"]["status"] == "blocked"
    assert "GRPO_HOST_DISABLE_PLUGINS" in rows["grpo-reward-shout"]["error"]


def test_two_plugins_claiming_one_name_is_an_error_naming_both(plugin_dir):
    write_distribution(plugin_dir / "a", "grpo-reward-alpha", {"alpha_plugin": HOOKED.format(name="same")}, {"a": "alpha_plugin"})
    write_distribution(plugin_dir / "b", "grpo-reward-beta", {"beta_plugin": HOOKED.format(name="same")}, {"b": "beta_plugin"})
    sys.path[:0] = [str(plugin_dir / "a"), str(plugin_dir / "b")]
    try:
        manager = PluginManager()
    finally:
        sys.path.remove(str(plugin_dir / "a"))
        sys.path.remove(str(plugin_dir / "b"))
    with pytest.raises(NameConflictError) as err:
        manager.get_reward("same")
    assert "grpo-reward-alpha" in str(err.value) and "grpo-reward-beta" in str(err.value)
    assert "same" not in manager.rewards
    assert manager.conflicts[("reward", "same")] == ["grpo-reward-alpha", "grpo-reward-beta"]


def test_unknown_names_list_what_is_installed_with_a_suggestion(plugin_dir):
    write_distribution(plugin_dir, "grpo-reward-shout", {"shout_plugin": GOOD}, {"shout": "shout_plugin"})
    manager = PluginManager()
    with pytest.raises(UnknownNameError) as err:
        manager.get_reward("shuot")
    assert "unknown reward 'shuot'" in str(err.value)
    assert "shout" in str(err.value) and "did you mean 'shout'?" in str(err.value)
    with pytest.raises(UnknownNameError, match="unknown backend 'nope'"):
        manager.get_backend("nope")
    result = run_cli("try-reward", "shuot", "--completion", "x")
    assert result.returncode == 2
    assert "did you mean 'shout'?" in result.stderr and "Traceback" not in result.stderr


def test_tracing_prints_every_hook_call(plugin_dir):
    write_distribution(plugin_dir, "grpo-reward-other", {"other_plugin": HOOKED.format(name="other")}, {"o": "other_plugin"})
    result = run_cli("rewards", "--json", env={"GRPO_HOST_TRACE_PLUGINS": "1"})
    assert result.returncode == 0
    lines = [line for line in result.stderr.splitlines() if "plugin=grpo-reward-other" in line]
    assert any(line.startswith("[grpo-host trace] grpo_rewards()") and " ms)" in line for line in lines), result.stderr
    assert "RewardSpec" in lines[0] or "scorer" in lines[0]
    quiet = run_cli("rewards", "--json")
    assert "[grpo-host trace]" not in quiet.stderr


def test_rewards_listing_shows_params_types_and_defaults(plugin_dir):
    write_distribution(plugin_dir, "grpo-reward-shout", {"shout_plugin": GOOD}, {"shout": "shout_plugin"}, "1.2.3")
    result = run_cli("rewards", "--json")
    rows = {r["name"]: r for r in json.loads(result.stdout)["rewards"]}
    shout = rows["shout"]
    assert (shout["plugin"], shout["version"]) == ("grpo-reward-shout", "1.2.3")
    assert shout["params"] == [{"name": "bonus", "type": "float", "default": 0.5}]
    assert shout["host_params"] == {"timeout": 10.0, "weight": 1.0, "memory_mb": None}
    table = run_cli("rewards")
    assert "shout" in table.stdout and "bonus" in table.stdout


def test_pip_installed_third_party_plugin_shows_up(tmp_path):
    """The real thing: `pip install` a plugin project, see it listed, uninstall it."""
    project = tmp_path / "grpo-reward-pipdemo"
    (project / "grpo_reward_pipdemo").mkdir(parents=True)
    (project / "grpo_reward_pipdemo" / "__init__.py").write_text(textwrap.dedent(GOOD).replace('"shout"', '"pipdemo"'))
    (project / "pyproject.toml").write_text(textwrap.dedent("""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"

        [project]
        name = "grpo-reward-pipdemo"
        version = "0.3.0"
        dependencies = ["grpo-host"]

        [project.entry-points.grpo_host]
        pipdemo = "grpo_reward_pipdemo"
    """))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "install", "--no-deps", "--no-build-isolation", str(project)], check=True, timeout=300)
    try:
        plugins = json.loads(run_cli("plugins", "--json").stdout)["plugins"]
        row = next(p for p in plugins if p["name"] == "grpo-reward-pipdemo")
        assert (row["status"], row["version"], row["rewards"]) == ("ok", "0.3.0", ["pipdemo"])
        rewards = json.loads(run_cli("rewards", "--json").stdout)["rewards"]
        assert any(r["name"] == "pipdemo" and r["plugin"] == "grpo-reward-pipdemo" for r in rewards)
    finally:
        subprocess.run([*pip, "uninstall", "-y", "grpo-reward-pipdemo"], check=True, timeout=300)
    plugins = json.loads(run_cli("plugins", "--json").stdout)["plugins"]
    assert all(p["name"] != "grpo-reward-pipdemo" for p in plugins)


HEAVY = ("torch", "transformers", "trl")


@pytest.mark.parametrize("args", [["plugins"], ["rewards"], ["--help"], ["backends", "--json"]])
def test_cli_start_imports_nothing_heavy(args):
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "grpo_host", *args], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    imported = {line.split("|")[-1].strip().split(".")[0] for line in result.stderr.splitlines() if "|" in line}
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))
    assert "grpo_host" in imported  # the check saw the real import list


FIRST_PARTY = sorted(p.name for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").is_file())
# Besides the trainer stack, what the first-party rewards use: imported when a reward is built.
HEAVY_FOR_PLUGINS = (*HEAVY, "sympy", "math_verify", "numpy", "mlflow", "reasoning_gym")


def test_first_party_entry_points_are_cheap_to_import():
    from importlib import metadata

    modules = sorted({
        ep.value.split(":")[0] for ep in metadata.entry_points(group="grpo_host")
        if ep.dist is not None and ep.dist.metadata["Name"] in FIRST_PARTY
    })
    assert len(modules) >= len(FIRST_PARTY), (modules, FIRST_PARTY)  # every plugin is installed and seen
    code = (
        "import sys, importlib\n"
        f"for m in {modules!r}: importlib.import_module(m)\n"
        f"print(sorted(set(sys.modules) & {set(HEAVY_FOR_PLUGINS)!r}))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]", (modules, result.stdout)


def test_a_batched_reward_gets_every_column_any_sample_has():
    """A column the first sample lacks still reaches a batched reward, None where missing."""
    import grpo_host
    from grpo_host.rewards.spec import spec_of

    @grpo_host.reward(name="columns-seen")
    class ColumnsSeen:
        """The hint column as each sample had it."""

        def score_batch(self, completions, **columns):
            return [float(h is not None) for h in columns.get("hint", [None] * len(completions))]

    score = spec_of(ColumnsSeen).build({})
    assert score([{"completion": "a"}, {"completion": "b", "hint": "x"}, {"completion": "c"}]) == [0.0, 1.0, 0.0]
