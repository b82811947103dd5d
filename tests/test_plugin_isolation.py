"""Plugin isolation: hostile plugins built in the test (exit, segfault, SystemExit, slow import,
a tracker name clash, a re-exported first-party reward) against the CLI as a user runs it.

Each test gets its own cache dir (``XDG_CACHE_HOME``), so the trust store starts empty and
every plugin is new; ``GRPO_HOST_LOAD_PLUGINS`` loads only the test's plugins (plus the ones
named), so the tests do not pay for the whole environment.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from grpo_host.errors import BrokenPluginError, NameConflictError
from grpo_host.plugins.manager import PluginManager
from grpo_host.rewards.spec import spec_of

from .conftest import run_cli, write_distribution

SHOUT = """
    import grpo_host

    @grpo_host.reward(name="shout")
    def shout(completion: str, **columns) -> float:
        return 1.5 if completion.isupper() else 0.0
"""

# A plugin that is fine until a file next to it says otherwise: trusted first, hostile later,
# with its own files unchanged (so the trust store's fingerprint still matches).
ARMED = """
    import os, pathlib
    import grpo_host

    if (pathlib.Path(__file__).parent / "{module}.armed").exists():
        {action}

    @grpo_host.reward(name="{reward}")
    def scorer(completion: str, **columns) -> float:
        return 1.0
"""


@pytest.fixture
def isolated(plugin_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("GRPO_HOST_LOAD_PLUGINS", "grpo-reward-shout")
    write_distribution(plugin_dir, "grpo-reward-shout", {"iso_shout_plugin": SHOUT}, {"shout": "iso_shout_plugin"})
    return plugin_dir


def add_plugin(site, dist: str, source: str) -> str:
    """Write distribution ``dist`` (module ``dist`` with underscores) and allow it to load."""
    module = dist.replace("-", "_")
    write_distribution(site, dist, {module: source}, {dist.split("-")[-1]: module})
    os.environ["GRPO_HOST_LOAD_PLUGINS"] += f",{dist}"  # the fixture's monkeypatch restores it
    importlib.invalidate_caches()
    return module


def plugins_json(*args: str) -> tuple[dict, dict, str]:
    result = run_cli("plugins", "--json", *args)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    return {p["name"]: p for p in data["plugins"]}, data, result.stderr


def assert_shout_still_works() -> None:
    scored = run_cli("try-reward", "shout", "--completion", "HEY", "--json")
    assert scored.returncode == 0, scored.stderr
    assert json.loads(scored.stdout)["rewards"]["shout"]["score"] == 1.5
    listed = run_cli("rewards", "--json")
    assert listed.returncode == 0, listed.stderr
    assert "shout" in {r["name"] for r in json.loads(listed.stdout)["rewards"]}


def test_os_exit_at_import_is_listed_broken_and_every_command_works(isolated, monkeypatch):
    monkeypatch.setenv(
        "GRPO_HOST_LOAD_PLUGINS",
        os.environ["GRPO_HOST_LOAD_PLUGINS"] + ",grpo-reward-format,grpo-backend-accelerate",
    )
    add_plugin(isolated, "grpo-reward-exiter", "import os\nos._exit(3)\n")

    rows, _, _ = plugins_json()
    assert rows["grpo-reward-exiter"]["status"] == "broken"
    assert "killed its process at import: exit status 3" in rows["grpo-reward-exiter"]["error"]
    assert rows["grpo-reward-shout"]["status"] == "ok" and rows["grpo-reward-format"]["status"] == "ok"
    assert_shout_still_works()
    listed = run_cli("rewards", "--json")  # names what is missing on stderr, every start
    assert "warning: plugin grpo-reward-exiter 0.1.0: quarantined: killed its process" in listed.stderr
    table = run_cli("plugins", env={"COLUMNS": "250"})
    assert table.returncode == 0 and "grpo-reward-exiter" in table.stdout and "broken" in table.stdout
    # Asking for what the broken plugin might provide names it and why.
    missing = run_cli("try-reward", "exiter", "--completion", "x")
    assert missing.returncode == 2
    assert "grpo-reward-exiter" in missing.stderr and "exit status 3" in missing.stderr
    # `train` checks the whole run (rewards, backend) with the plugin still installed.
    command = run_cli("train", "--print-command", "--set", "rewards=[format]")
    assert command.returncode == 0, command.stderr
    assert "grpo_host.training.worker" in command.stdout


def test_segfault_at_import_is_listed_broken_with_where(isolated, monkeypatch):
    add_plugin(isolated, "grpo-reward-segv", "import ctypes\nctypes.string_at(0)\n")
    rows, _, _ = plugins_json()
    error = rows["grpo-reward-segv"]["error"]
    assert rows["grpo-reward-segv"]["status"] == "broken" and "SIGSEGV" in error
    assert "grpo_reward_segv.py" in error and "line 2" in error  # where it crashed
    assert_shout_still_works()


def test_a_start_that_died_in_process_is_traced_to_the_plugin(isolated, monkeypatch):
    """The trust store's fingerprint still matches, so the plugin is imported in process and
    the command dies; the next start finds the breadcrumb, names the plugin, and lives."""
    module = add_plugin(
        isolated,
        "grpo-reward-flaky",
        ARMED.format(module="grpo_reward_flaky", action="os._exit(3)", reward="flaky"),
    )
    rows, _, _ = plugins_json()
    assert rows["grpo-reward-flaky"]["status"] == "ok"
    (isolated / f"{module}.armed").touch()
    died = run_cli("rewards", "--json")
    assert died.returncode == 3 and died.stdout == ""  # the one start nothing can save
    after = run_cli("rewards", "--json")
    assert after.returncode == 0, after.stderr
    assert "died while importing it: plugin grpo-reward-flaky" in after.stderr
    assert [r["name"] for r in json.loads(after.stdout)["rewards"]] == ["shout"]
    rows, _, _ = plugins_json()
    assert "exit status 3" in rows["grpo-reward-flaky"]["error"]
    # Fixed (here: disarmed), it is tried in a child again at the next start and loads.
    (isolated / f"{module}.armed").unlink()
    rows, _, _ = plugins_json()
    assert rows["grpo-reward-flaky"]["status"] == "ok" and rows["grpo-reward-flaky"]["rewards"] == ["flaky"]


def test_system_exit_and_keyboard_interrupt_from_plugins_mark_them_broken(isolated, monkeypatch):
    add_plugin(
        isolated,
        "grpo-reward-quitter",
        """
        import grpo_host

        @grpo_host.hookimpl
        def grpo_rewards():
            raise SystemExit(3)
    """,
    )
    add_plugin(isolated, "grpo-reward-interrupter", "raise KeyboardInterrupt\n")
    add_plugin(
        isolated,
        "grpo-reward-exitcall",
        """
        import sys
        import grpo_host

        @grpo_host.hookimpl
        def grpo_trackers():
            sys.exit("bye")
    """,
    )
    records = {p.name: p for p in PluginManager().plugins}
    assert records["grpo-reward-quitter"].status == "broken"
    assert records["grpo-reward-quitter"].error == "failed while registering: SystemExit: 3"
    assert records["grpo-reward-interrupter"].status == "broken"
    assert "failed to import: KeyboardInterrupt" in records["grpo-reward-interrupter"].error
    assert records["grpo-reward-exitcall"].error == "failed while registering: SystemExit: bye"
    assert records["grpo-reward-shout"].status == "ok"
    for args in (["rewards", "--json"], ["plugins"], ["backends", "--json"]):
        result = run_cli(*args)
        assert result.returncode == 0, (args, result.stderr)
    assert_shout_still_works()


@pytest.mark.slow
def test_slow_imports_are_named_and_a_hang_is_stopped_and_quarantined(isolated, monkeypatch):
    monkeypatch.setenv("GRPO_HOST_PLUGIN_TIMEOUT", "4")
    add_plugin(isolated, "grpo-reward-sleepy", "import time\ntime.sleep(1.5)\n")
    # It counts its imports (child or not) in a file next to it, then hangs.
    counter = isolated / "hang-imports.txt"
    add_plugin(
        isolated, "grpo-reward-hang", f"import time\nopen({str(counter)!r}, 'a').write('x')\ntime.sleep(60)\n"
    )

    start = time.monotonic()
    rows, data, stderr = plugins_json()
    first = time.monotonic() - start
    assert first < 40, first  # stopped at the 4 s budget, not after the 60 s sleep
    hang = rows["grpo-reward-hang"]
    assert hang["status"] == "broken" and "took over 4 s at import and was stopped" in hang["error"]
    sleepy = rows["grpo-reward-sleepy"]
    assert sleepy["status"] == "ok" and sleepy["import_seconds"] >= 1.4
    assert re.search(r"warning: plugin grpo-reward-sleepy 0.1.0 took \d+\.\d s to import", stderr), stderr
    assert any("grpo-reward-sleepy" in w and "s to import" in w for w in data["warnings"])
    assert "grpo-reward-shout" not in stderr  # fast plugins are not named

    assert counter.read_text() == "x"  # imported once, in the child

    # The hang is quarantined: later starts do not import it (nor wait for it) again ...
    listed = run_cli("rewards", "--json")
    assert listed.returncode == 0, listed.stderr
    rows, _, _ = plugins_json()
    assert counter.read_text() == "x"
    assert (
        "quarantined" in rows["grpo-reward-hang"]["error"]
        and "--recheck" in rows["grpo-reward-hang"]["error"]
    )
    # ... until asked to try again, and once fixed (its file changed) it loads.
    rows, _, _ = plugins_json("--recheck")
    assert counter.read_text() == "xx" and rows["grpo-reward-hang"]["status"] == "broken"
    (isolated / "grpo_reward_hang.py").write_text("HANG = False\n")
    rows, _, _ = plugins_json()
    assert rows["grpo-reward-hang"]["status"] == "ok"


@pytest.mark.slow
def test_a_trusted_plugin_that_hangs_in_process_is_stopped(isolated, monkeypatch):
    monkeypatch.setenv("GRPO_HOST_PLUGIN_TIMEOUT", "2")
    module = add_plugin(
        isolated,
        "grpo-reward-stall",
        ARMED.format(module="grpo_reward_stall", action="import time; time.sleep(60)", reward="stall"),
    )
    assert plugins_json()[0]["grpo-reward-stall"]["status"] == "ok"
    (isolated / f"{module}.armed").touch()
    start = time.monotonic()
    result = run_cli("rewards", "--json")
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - start < 30
    assert [r["name"] for r in json.loads(result.stdout)["rewards"]] == ["shout"]
    rows, _, _ = plugins_json()
    assert "took over 2 s" in rows["grpo-reward-stall"]["error"]


TRACKER = """
    import grpo_host

    class Tracker:
        name = "mlflow"
        def start(self, run_info): pass
        def log_metrics(self, step, metrics): pass
        def finish(self, output_dir, status="FINISHED"): pass

    @grpo_host.hookimpl
    def grpo_trackers():
        return [Tracker()]
"""


def test_a_tracker_named_like_another_conflicts_naming_both(isolated, monkeypatch):
    monkeypatch.setenv(
        "GRPO_HOST_LOAD_PLUGINS", os.environ["GRPO_HOST_LOAD_PLUGINS"] + ",grpo-tracking-mlflow"
    )
    add_plugin(isolated, "grpo-tracking-impostor", TRACKER)
    manager = PluginManager()
    assert "mlflow" not in manager.trackers
    assert sorted(manager.conflicts[("tracker", "mlflow")]) == [
        "grpo-tracking-impostor",
        "grpo-tracking-mlflow",
    ]
    from grpo_host.tracking import TrackerSet

    with pytest.raises(NameConflictError) as err:
        TrackerSet.from_names(["mlflow"], manager)
    assert "grpo-tracking-impostor" in str(err.value) and "grpo-tracking-mlflow" in str(err.value)
    _, data, _ = plugins_json()
    assert [(c["kind"], c["name"]) for c in data["conflicts"]] == [("tracker", "mlflow")]
    # Disabling one (as the message says) resolves it.
    fixed = PluginManager(environ={**os.environ, "GRPO_HOST_DISABLE_PLUGINS": "grpo-tracking-impostor"})
    assert type(fixed.get_tracker("mlflow")).__module__.startswith("grpo_tracking_mlflow")
    # A tracker without the methods marks its plugin broken instead of failing mid-run.
    add_plugin(
        isolated,
        "grpo-tracking-hollow",
        """
        import grpo_host

        class Hollow:
            name = "hollow"

        @grpo_host.hookimpl
        def grpo_trackers():
            return [Hollow()]
    """,
    )
    hollow = next(p for p in PluginManager().plugins if p.name == "grpo-tracking-hollow")
    assert hollow.status == "broken" and "without start, log_metrics, finish" in hollow.error


def test_a_re_exported_first_party_reward(isolated, monkeypatch):
    monkeypatch.setenv("GRPO_HOST_LOAD_PLUGINS", os.environ["GRPO_HOST_LOAD_PLUGINS"] + ",grpo-reward-format")
    # Importing a first-party reward to use it is not a claim on its name ...
    add_plugin(
        isolated,
        "grpo-reward-user",
        """
        import grpo_host
        from grpo_reward_format import format_reward

        @grpo_host.reward(name="formatted-shout")
        def formatted_shout(completion: str, **columns) -> float:
            return 1.0
    """,
    )
    manager = PluginManager()
    assert manager.get_reward("format").plugin == "grpo-reward-format"
    assert "formatted-shout" in manager.rewards and not manager.conflicts
    # ... handing it out from a hook is, and the conflict names both sides.
    add_plugin(
        isolated,
        "grpo-reward-copycat",
        """
        import grpo_host
        from grpo_reward_format import format_reward

        @grpo_host.hookimpl
        def grpo_rewards():
            return [format_reward]
    """,
    )
    manager = PluginManager()
    with pytest.raises(NameConflictError) as err:
        manager.get_reward("format")
    message = str(err.value)
    assert "grpo-reward-format" in message and "grpo-reward-copycat" in message
    assert "hands out the very reward" in message and "grpo_reward_format.rewards:format_reward" in message
    import grpo_reward_format

    # Provenance kept: the registry stamps a copy of the spec, never the decorated object's.
    assert spec_of(grpo_reward_format.format_reward).plugin == ""
    result = run_cli("try-reward", "format", "--completion", "x")
    assert (
        result.returncode == 2
        and "grpo-reward-copycat" in result.stderr
        and "grpo-reward-format" in result.stderr
    )


def test_a_broken_reward_plugin_names_itself_to_the_python_api(isolated, monkeypatch):
    add_plugin(isolated, "grpo-reward-bomb", "import os\nos._exit(7)\n")
    manager = PluginManager()  # in this very process: it must not die
    assert manager.get_reward("shout").plugin == "grpo-reward-shout"
    with pytest.raises(BrokenPluginError, match="grpo-reward-bomb.*exit status 7"):
        manager.get_reward("bomb")


def test_a_real_ctrl_c_while_loading_stops_the_command_and_blames_no_plugin(isolated, monkeypatch):
    monkeypatch.setenv("GRPO_HOST_PLUGIN_TIMEOUT", "60")
    module = add_plugin(
        isolated,
        "grpo-reward-dozy",
        ARMED.format(module="grpo_reward_dozy", action="import time; time.sleep(30)", reward="dozy"),
    )
    assert plugins_json()[0]["grpo-reward-dozy"]["status"] == "ok"  # trusted from now on
    (isolated / f"{module}.armed").touch()
    loading = Path(os.environ["XDG_CACHE_HOME"]) / "grpo-host" / "loading"
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpo_host", "rewards", "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any("dozy" in p.read_text() for p in loading.glob("*.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # the user's Ctrl-C, in the middle of the plugin's import
    _, err = proc.communicate(timeout=60)
    assert proc.returncode != 0 and ("Aborted" in err or "KeyboardInterrupt" in err), (proc.returncode, err)
    assert not list(loading.glob("*.json"))  # no breadcrumb: the plugin did not kill the start
    (isolated / f"{module}.armed").unlink()
    after = run_cli("rewards", "--json")
    assert after.returncode == 0 and "died while" not in after.stderr, after.stderr
    assert "dozy" in {r["name"] for r in json.loads(after.stdout)["rewards"]}
