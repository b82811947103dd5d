"""TrackerSet: trackers by name, start errors stop the run, a tracker failing mid-run is dropped."""

from __future__ import annotations

import logging

import pytest

import grpo_host
from grpo_host.errors import GrpoHostError, UnknownNameError
from grpo_host.plugins.manager import PluginManager
from grpo_host.tracking import TrackerSet, flatten


class Recorder:
    def __init__(self, name, fail_on=None):
        self.name, self.fail_on, self.calls = name, fail_on, []

    def start(self, run_info):
        self.calls.append(("start", run_info["run_name"]))
        if self.fail_on == "start":
            raise GrpoHostError(f"{self.name}: cannot reach the server")

    def log_metrics(self, step, metrics):
        self.calls.append(("log", step))
        if self.fail_on == "log" and step == 2:
            raise ConnectionError("server went away")

    def finish(self, output_dir, status="FINISHED"):
        self.calls.append(("finish", status))


class OldStyle(Recorder):
    def finish(self, output_dir):  # written before finish took a status
        self.calls.append(("finish", output_dir))


def make_manager(*trackers):
    class Plugin:
        @grpo_host.hookimpl
        def grpo_trackers(self):
            return list(trackers)

    manager = PluginManager(environ={"GRPO_HOST_LOAD_PLUGINS": ""})
    manager.register(Plugin(), "test-trackers")
    return manager


def test_trackers_by_name_and_unknown_name_suggests():
    good = Recorder("good")
    manager = make_manager(good)
    assert TrackerSet.from_names(["good"], manager).trackers == [good]
    with pytest.raises(UnknownNameError, match=r"unknown tracker 'goood'.*did you mean 'good'"):
        TrackerSet.from_names(["goood"], manager)


def test_a_tracker_failing_mid_run_is_dropped_and_the_others_go_on(caplog):
    flaky, steady, old = Recorder("flaky", fail_on="log"), Recorder("steady"), OldStyle("old")
    trackers = TrackerSet([flaky, steady, old])
    trackers.start({"run_name": "r"})
    with caplog.at_level(logging.WARNING, logger="grpo_host.tracking"):
        for step in (1, 2, 3):
            trackers.log_metrics(step, {"reward": 0.5})
    trackers.finish("/out", status="FAILED")
    assert flaky.calls == [("start", "r"), ("log", 1), ("log", 2)]
    assert steady.calls[-2:] == [("log", 3), ("finish", "FAILED")]
    assert old.calls[-1] == ("finish", "/out")
    assert len(caplog.records) == 1 and "'flaky' failed in log_metrics" in caplog.records[0].getMessage()


def test_a_tracker_that_cannot_start_stops_the_run():
    with pytest.raises(GrpoHostError, match="cannot reach the server"):
        TrackerSet([Recorder("ok"), Recorder("down", fail_on="start")]).start({"run_name": "r"})


def test_flatten_gives_dotted_keys_and_keeps_lists():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": [1, 2], "f": {}}) == {
        "a.b": 1, "a.c.d": "x", "e": [1, 2], "f": {},
    }
