"""A reward is bound once: the typed RewardItem (name, alias, host params, params) made where a
reward is named reaches the runtime unchanged, and a bad host param is a clear error from every
entry (the run config's YAML and ``--set``, try-reward's ``--set``, export, ``load_reward``).

The plugin built here has a sync reward that sleeps as long as its completion says and an async
reward that reports how many of its samples were in flight at once, so the tests see what the
runtime really did with ``timeout`` and ``concurrency``, not what a field holds.
"""

from __future__ import annotations

import dataclasses
import json
import math
import textwrap
import time

import pytest

from grpo_host.cli.common import parse_sets
from grpo_host.config import ConfigError, RewardEntry, load_config
from grpo_host.errors import GrpoHostError, RewardParamError
from grpo_host.plugins.manager import PluginManager
from grpo_host.rewards.binding import bind_reward
from grpo_host.rewards.item import HOST_PARAMS, RewardItem, reward_item
from grpo_host.rewards.runtime import RewardRuntime, prepare_samples
from tests.conftest import run_cli, write_distribution

NAPS = """
import asyncio
import time

import grpo_host

IN_FLIGHT = {"now": 0, "peak": 0}


@grpo_host.reward(name="nap", timeout=20.0)
def nap(completion: str, scale: float = 1.0, **columns) -> float:
    '''Sleeps for as many seconds as the completion says.'''
    time.sleep(float(completion))
    return scale


@grpo_host.reward(name="peak")
async def peak(completion: str, **columns) -> float:
    '''How many of its samples were awaited at once in this worker, at most, so far.'''
    IN_FLIGHT["now"] += 1
    IN_FLIGHT["peak"] = max(IN_FLIGHT["peak"], IN_FLIGHT["now"])
    await asyncio.sleep(0.2)
    IN_FLIGHT["now"] -= 1
    return float(IN_FLIGHT["peak"])


@grpo_host.hookimpl
def grpo_rewards():
    return [nap, peak]
"""


@pytest.fixture
def manager(plugin_dir):
    write_distribution(plugin_dir, "grpo-reward-naps", {"naps": NAPS}, {"naps": "naps"})
    return PluginManager()


def write(tmp_path, text: str):
    path = tmp_path / "run.yaml"
    path.write_text(textwrap.dedent(text))
    return path


# -- one definition ---------------------------------------------------------------------------
def test_host_params_are_the_items_fields_and_the_run_configs():
    fields = [f.name for f in dataclasses.fields(RewardItem) if "host_param" in f.metadata]
    assert HOST_PARAMS == tuple(fields) == ("timeout", "weight", "memory_mb", "concurrency")
    assert set(HOST_PARAMS) <= set(RewardEntry.model_fields)
    # The config's bounds come from the same rules: a value one rejects, the other rejects.
    for name, bad in (("timeout", 0), ("memory_mb", -1), ("concurrency", 0), ("weight", math.inf)):
        with pytest.raises(RewardParamError, match=f"{name} must be"):
            RewardItem("x", **{name: bad})
        with pytest.raises(Exception, match=f"{name} must be"):
            RewardEntry(name="x", **{name: bad})


def test_every_way_of_naming_a_reward_gives_the_same_item():
    item = RewardItem("nap", {"scale": 2.0}, timeout=0.5, weight=3.0)
    assert reward_item(("nap", {"scale": 2.0, "timeout": 0.5, "weight": 3})) == item
    assert reward_item(["nap", {"scale": 2.0, "timeout": "0.5", "weight": 3}]) == item  # JSON's pair
    assert reward_item({"name": "nap", "params": {"scale": 2.0}, "timeout": 0.5, "weight": 3}) == item
    assert RewardItem.from_params("nap", {"scale": 2.0, "timeout": 0.5}, weight=3) == item
    assert RewardEntry(name="nap", params={"scale": 2.0}, timeout=0.5, weight=3).to_item() == item


# -- a host param set in the config reaches the runtime unchanged ----------------------------
def test_a_timeout_in_the_run_config_kills_a_sleeping_reward_at_that_budget(manager, tmp_path):
    config = load_config(write(tmp_path, """
        rewards:
          - {name: nap, timeout: 0.5, params: {scale: 2}}
    """))
    bound = bind_reward(config.rewards[0].to_item(), manager=manager)
    assert bound.item == config.rewards[0].to_item() and bound.timeout == 0.5 and bound.params == {"scale": 2.0}
    with RewardRuntime([bound], workers=1) as runtime:
        runtime.score(prepare_samples(["0"]))  # the worker started and the reward built
        start = time.monotonic()
        rows = runtime.score(prepare_samples(["30", "0"]))["nap"]
        elapsed = time.monotonic() - start
    assert [r.outcome for r in rows] == ["timeout", "ok"], rows
    assert "ran past its 0.5 s budget" in rows[0].details["error"]
    assert rows[0].seconds == 0.5 and rows[1].score == 2.0
    # 0.5 s, a new worker for the second sample, and a loaded machine's slack; the reward's own
    # default (20 s) or its sleep (30 s) would be far over.
    assert 0.45 <= elapsed < 12, elapsed


@pytest.mark.parametrize("concurrency", [2, 3])
def test_concurrency_set_with_set_reaches_the_async_runner(manager, concurrency):
    config = load_config(None, parse_sets([f"rewards=[{{name: peak, concurrency: {concurrency}}}]"]))
    bound = bind_reward(config.rewards[0].to_item(), manager=manager)
    assert bound.concurrency == concurrency
    with RewardRuntime([bound], workers=1) as runtime:
        rows = runtime.score(prepare_samples(["x"] * 8))["peak"]
    assert [r.outcome for r in rows] == ["ok"] * 8, rows
    assert max(r.score for r in rows) == concurrency  # at most that many awaited at once, and that many


# -- bad host params, from each entry ---------------------------------------------------------
@pytest.mark.parametrize("entry, expected", [
    ("{name: format, timeout: soon}", ("rewards[0] (format).timeout: 'soon' is not valid",
                                       "a positive number of seconds")),
    ("{name: format, memory_mb: -5}", ("rewards[0] (format).memory_mb: -5 is not valid", "0 for no cap", ">= 0")),
    ("{name: format, concurrency: 1.5}", ("rewards[0] (format).concurrency: 1.5 is not valid", "whole number")),
    ("{name: format, weight: true}", ("rewards[0] (format).weight: True is not valid", "finite number")),
    ("{name: format, timout: 5}", ("rewards[0] (format).timout: unknown field 'timout'", "did you mean 'timeout'?")),
])
def test_bad_host_params_in_the_run_config(tmp_path, entry, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, f"rewards: [{entry}]\n"))
    for text in expected:
        assert text in str(err.value), str(err.value)


@pytest.mark.parametrize("setting, expected", [
    ("rewards.length.timeout=-1", ("rewards[2] (length).timeout: -1 is not valid", "a positive number")),
    ("rewards.length.memory_mb=lots", ("rewards[2] (length).memory_mb: 'lots' is not valid", "megabytes")),
    ("rewards.length.timout=1", ("unknown field 'timout'", "did you mean 'timeout'?")),
])
def test_bad_host_params_with_set(setting, expected):
    with pytest.raises(ConfigError) as err:
        load_config(None, parse_sets([setting]))
    for text in expected:
        assert text in str(err.value), str(err.value)


def test_concurrency_on_a_sync_reward_in_the_run_config_says_remove_it(manager, tmp_path):
    config = load_config(write(tmp_path, "rewards: [{name: nap, concurrency: 4}]\n"))
    with pytest.raises(RewardParamError, match="'nap' is not async.*remove it"):
        bind_reward(config.rewards[0].to_item(), manager=manager)


@pytest.mark.parametrize("kwargs, expected", [
    ({"timeout": "soon"}, "reward 'nap': timeout must be a positive number of seconds, not 'soon'"),
    ({"timeout": -1}, "timeout must be a positive number of seconds, not -1"),
    ({"timeout": math.nan}, "timeout must be a positive number of seconds, not nan"),
    ({"memory_mb": True}, "memory_mb must be a whole number of megabytes per worker (0 for no cap), not True"),
    ({"memory_mb": -1}, "memory_mb must be a whole number"),
    ({"weight": "heavy"}, "weight must be a finite number, not 'heavy'"),
    ({"weight": [1]}, "weight must be a finite number, not [1]"),
    ({"concurrency": 4}, "'nap' is not async"),
    ({"timout": 1}, "has no param 'timout'; its params: scale, timeout, weight, memory_mb, concurrency "
                    "(did you mean 'timeout'?)"),
])
def test_bad_host_params_in_load_reward(manager, monkeypatch, kwargs, expected):
    import grpo_host
    from grpo_host.plugins import manager as manager_module

    monkeypatch.setattr(manager_module, "get_plugin_manager", lambda: manager)
    with pytest.raises(GrpoHostError) as err:
        grpo_host.load_reward("nap", **kwargs)
    assert expected in str(err.value)


def test_load_reward_takes_host_params_beside_the_rewards_own(manager, monkeypatch):
    import grpo_host
    from grpo_host.plugins import manager as manager_module

    monkeypatch.setattr(manager_module, "get_plugin_manager", lambda: manager)
    fn = grpo_host.load_reward("nap", timeout="0.5", weight=2, scale=3)
    bound = fn.reward_set.rewards[0]
    assert bound.item == RewardItem("nap", {"scale": 3}, timeout=0.5, weight=2.0)
    assert (bound.timeout, fn.weight, bound.params) == (0.5, 2.0, {"scale": 3.0})


def test_bad_reward_entries_in_load_rewards(manager):
    from grpo_host.plugins.installed import load_rewards

    with pytest.raises(GrpoHostError, match=r"unknown key\(s\) timout; .*\(did you mean 'timeout'\?\)"):
        load_rewards([{"name": "nap", "timout": 1}], manager=manager)
    with pytest.raises(GrpoHostError, match="needs a 'name'"):
        load_rewards([{"params": {}}], manager=manager)
    with pytest.raises(GrpoHostError, match="params must be a mapping"):
        load_rewards([{"name": "nap", "params": [1, 2]}], manager=manager)
    with pytest.raises(GrpoHostError, match="cannot read a reward from 7"):
        load_rewards([7], manager=manager)


def test_bind_reward_takes_a_name_with_params_or_an_item_alone(manager):
    by_name = bind_reward("nap", {"scale": 2, "timeout": 3}, "twice", manager=manager)
    assert by_name.item == RewardItem("nap", {"scale": 2}, alias="twice", timeout=3)
    assert (by_name.name, by_name.timeout, by_name.params) == ("twice", 3.0, {"scale": 2.0})
    with pytest.raises(TypeError, match="inside the reward item"):
        bind_reward(RewardItem("nap"), {"scale": 2}, manager=manager)


def test_bind_reward_finds_names_only_through_the_lookup_it_is_given(manager):
    """The runtime never reaches for the plugin system: any object with ``get_reward`` will do,
    and a name without one is refused with what to pass."""
    asked = []

    class Lookup:
        def get_reward(self, name):
            asked.append(name)
            return manager.get_reward(name)

    bound = bind_reward({"name": "nap", "params": {"scale": 3}, "timeout": 2}, manager=Lookup())
    assert asked == ["nap"] and (bound.params, bound.timeout) == ({"scale": 3.0}, 2.0)
    with pytest.raises(TypeError, match=r"reward 'nap' is given by name; pass manager= .*get_plugin_manager"):
        bind_reward("nap")
    assert bind_reward(manager.get_reward("nap"), {"scale": 2}).params == {"scale": 2.0}  # a spec needs none


def test_a_host_param_inside_an_items_params_says_where_it_goes():
    with pytest.raises(RewardParamError, match="timeout is a host param.*beside params"):
        RewardItem("nap", {"timeout": 1})


def test_bad_host_params_in_export(manager, monkeypatch, tmp_path):
    from grpo_host.interop.export import write_export
    from grpo_host.plugins import manager as manager_module

    monkeypatch.setattr(manager_module, "get_plugin_manager", lambda: manager)
    with pytest.raises(RewardParamError, match="reward 'nap': memory_mb must be a whole number"):
        write_export("verl", ["nap"], {"nap": {"memory_mb": "lots"}}, str(tmp_path / "out.py"), url=None,
                     label_column="answer", workers=1, argv=[])
    assert not (tmp_path / "out.py").exists()


def test_bad_host_params_in_try_reward_set(manager):
    result = run_cli("try-reward", "nap", "--completion", "0", "--set", "nap.timeout=-1")
    assert result.returncode != 0
    assert "reward 'nap': timeout must be a positive number of seconds, not -1" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
    result = run_cli("try-reward", "nap", "--completion", "0", "--json", "--set", "nap.timeout=0.5",
                     "--set", "nap.scale=2")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["rewards"]["nap"]["score"] == 2.0


# -- a reward param named like a host param ---------------------------------------------------
@pytest.mark.parametrize("signature", ["completion: str, timeout: float = 1.0", "completion: str, weight: int = 2"])
def test_a_reward_param_named_like_a_host_param_is_refused_with_what_to_do(signature):
    import grpo_host

    source = f"def clash({signature}) -> float:\n    return 0.0\n"
    namespace: dict = {}
    exec(source, namespace)
    with pytest.raises(TypeError, match="host param.*rename"):
        grpo_host.reward(namespace["clash"])


def test_a_plugin_whose_reward_takes_a_host_param_is_reported_broken(plugin_dir):
    source = """
    import grpo_host

    @grpo_host.reward(name="clash")
    class Clash:
        def __init__(self, memory_mb: int = 100):
            self.memory_mb = memory_mb

        def score(self, completion, **columns):
            return 0.0

    @grpo_host.hookimpl
    def grpo_rewards():
        return [Clash]
    """
    write_distribution(plugin_dir, "grpo-reward-clash", {"clash_reward": source}, {"clash": "clash_reward"})
    manager = PluginManager()
    record = next(p for p in manager.plugins if p.name == "grpo-reward-clash")
    assert record.status == "broken"
    assert "'memory_mb'" in record.error and "host param" in record.error and "rename" in record.error
