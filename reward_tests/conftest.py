"""The golden suite of every installed reward: ``pytest reward_tests``.

The items come from ``grpo-golden.yaml`` beside this file, collected by grpo-host's own pytest
plugin (``grpo_host/golden/pytest_plugin.py``): each golden case, conformance check and
reward-hacking probe of each installed reward is one test. This conftest only says, in the
header, which plugins were found, so a reward missing from the run is noticed.
"""

from __future__ import annotations


def pytest_report_header(config):
    from grpo_host.plugins.manager import PluginManager

    manager = PluginManager()
    lines = []
    for plugin in manager.plugins:
        status = "" if plugin.status == "ok" else f" [{plugin.status}: {plugin.error}]"
        rewards = ", ".join(plugin.rewards) or "no rewards"
        lines.append(f"  {plugin.name} {plugin.version}: {rewards}{status}")
    return ["grpo-host reward plugins:", *lines] if lines else ["grpo-host reward plugins: none installed"]
