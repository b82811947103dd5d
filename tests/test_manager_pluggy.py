"""What the plugin manager leaves to pluggy: ``check_pending`` for misspelled hook names,
``add_hookcall_monitoring`` for ``GRPO_HOST_TRACE_PLUGINS``, with each plugin still isolated
(one that fails is marked broken, the others load)."""

from __future__ import annotations

import grpo_host
from grpo_host.plugins.manager import PluginManager


@grpo_host.reward(name="fine-one")
def fine_one(completion: str, **_: object) -> float:
    return 1.0


class Misspelled:
    @grpo_host.hookimpl
    def grpo_reward(self):  # the hook is grpo_rewards
        return [fine_one]


class Fine:
    @grpo_host.hookimpl
    def grpo_rewards(self):
        return [fine_one]


class Raises:
    @grpo_host.hookimpl
    def grpo_backends(self):
        raise SystemExit("a hook that exits")


def test_misspelled_hook_is_refused_with_the_real_names_and_the_rest_loads():
    manager = PluginManager(load_entry_points=False, environ={})
    bad = manager.register(Misspelled(), "grpo-reward-misspelled")
    good = manager.register(Fine(), "grpo-reward-fine")
    assert bad.status == "broken"
    assert "grpo_reward() is marked @grpo_host.hookimpl but is not a grpo-host hook" in bad.error
    assert "did you mean 'grpo_rewards'?" in bad.error
    assert manager.broken_plugins() == [bad]
    assert good.status == "ok" and "fine-one" in manager.rewards
    # The refused plugin is out of pluggy too: a later check does not trip over it.
    manager._pm.check_pending()


def test_tracing_goes_through_pluggys_monitoring_and_shows_a_raising_hook(capsys):
    manager = PluginManager(load_entry_points=False, environ={"GRPO_HOST_TRACE_PLUGINS": "1"})
    manager.register(Fine(), "grpo-reward-fine")
    broken = manager.register(Raises(), "grpo-backend-exits")
    err = capsys.readouterr().err
    traced = [line for line in err.splitlines() if line.startswith("[grpo-host trace]")]
    assert any(
        "grpo_rewards() plugin=grpo-reward-fine args={} -> [<function fine_one" in line for line in traced
    ), err
    assert any(
        "grpo_backends() plugin=grpo-backend-exits" in line and "raised SystemExit" in line for line in traced
    ), err
    assert not any("plugin=grpo-reward-fine" in line and "grpo_backends" in line for line in traced)
    assert broken.status == "broken" and "a hook that exits" in broken.error


def test_no_tracing_without_the_variable(capsys):
    PluginManager(load_entry_points=False, environ={}).register(Fine(), "grpo-reward-fine")
    assert "[grpo-host trace]" not in capsys.readouterr().err
