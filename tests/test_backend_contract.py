"""What a backend's ``build_command`` is given: its params, the env, and a ``LaunchContext``
with the run config and the scheduler's cluster, so no backend re-reads the YAML or reaches
into the host's SageMaker code. A backend written for the three-argument form still works."""

from __future__ import annotations

import json

import pytest

from grpo_host.backends import BackendSpec, LaunchContext
from grpo_host.training.cluster import scheduler_cluster


def spec(build) -> BackendSpec:
    return BackendSpec(name="probe", description="", build_command=build)


def test_four_argument_form_gets_the_context_and_three_argument_form_still_works():
    seen = []
    context = LaunchContext(config="CONFIG", config_path="/runs/a/run_config.yaml")

    def new(argv, params, env, context):
        seen.append(context)
        return list(argv)

    def old(argv, params, env):
        seen.append("old")
        return list(argv)

    def variadic(*args):
        seen.append(args[3])
        return list(args[0])

    for build in (new, old, variadic):
        assert spec(build).command(["w"], {}, {}, context) == ["w"]
    assert seen == [context, "old", context]


def test_a_backend_that_raises_is_not_called_twice_or_silenced():
    calls = []

    def broken(argv, params, env, context):
        calls.append(1)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        spec(broken).command(["w"], {}, {}, LaunchContext(None, ""))
    assert calls == [1]


def test_scheduler_cluster_is_empty_off_sagemaker_and_sorted_hosts_on_it():
    assert scheduler_cluster({"MASTER_ADDR": "10.0.0.1"}) == ({}, "")
    env = {"SM_HOSTS": json.dumps(["algo-2", "algo-1"]), "SM_CURRENT_HOST": "algo-2", "SM_NUM_GPUS": "4"}
    cluster, source = scheduler_cluster(env)
    assert cluster == {
        "num_processes": 8,
        "num_machines": 2,
        "machine_rank": 1,
        "main_process_ip": "algo-1",
        "main_process_port": 7777,
    }
    assert source.startswith("SageMaker")


def test_prepare_hands_torchrun_the_config_and_the_sagemaker_cluster(tmp_path, monkeypatch):
    """Through the host's own prepare(): the torchrun backend sees SageMaker's two hosts only
    because the host handed them over (it imports nothing of grpo_host.sagemaker now)."""
    pytest.importorskip("grpo_backend_torchrun")
    from grpo_host.config import load_config
    from grpo_host.training.launch import prepare

    monkeypatch.setenv("SM_HOSTS", json.dumps(["algo-1", "algo-2"]))
    monkeypatch.setenv("SM_CURRENT_HOST", "algo-2")
    monkeypatch.setenv("SM_NUM_GPUS", "0")
    config = load_config(None, {"backend": {"name": "torchrun-fsdp"}}, output_dir=str(tmp_path / "run"))
    run = prepare(config)
    argv = run.argv
    assert argv[argv.index("--nnodes") + 1] == "2" and argv[argv.index("--node-rank") + 1] == "1"
    assert argv[argv.index("--master-addr") + 1] == "algo-1"
    assert "SageMaker" in run.env["GRPO_HOST_TORCHRUN_TOPOLOGY"]
