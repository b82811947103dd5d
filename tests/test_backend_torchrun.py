"""The torchrun-fsdp backend without training: the cluster's shape from params and from the
environment (SageMaker's included), the torchrun argv, the errors that say what to change,
the layer class FSDP wraps, and the GRPOConfig fields it hands the worker."""

from __future__ import annotations

import json
import sys

import pytest

pytest.importorskip("grpo_backend_torchrun")

from grpo_backend_torchrun import PARAMS, TORCHRUN_FSDP  # noqa: E402
from grpo_backend_torchrun.launch import (  # noqa: E402
    BackendError,
    Topology,
    check_devices,
    cluster_from_env,
    resolve_topology,
    torchrun_argv,
)

from grpo_host.errors import PluginParamError  # noqa: E402

WORKER = [sys.executable, "-m", "grpo_host.training.worker", "--config", "/runs/a/run_config.yaml"]
DEFAULTS = {p.name: p.default for p in PARAMS}


def params(**over):
    return {**DEFAULTS, **over}


def scheduler(env):
    """The cluster as the host hands it to the backend (LaunchContext.cluster and its source)."""
    from grpo_host.training.cluster import scheduler_cluster

    cluster, source = scheduler_cluster(env)
    return {"cluster": cluster, "cluster_source": source}


def test_registered_under_its_contract_name():
    from grpo_host.plugins.manager import get_plugin_manager

    spec = get_plugin_manager().get_backend("torchrun-fsdp")
    assert spec.plugin == "grpo-backend-torchrun"
    assert spec.prepare_worker is not None
    assert TORCHRUN_FSDP.name == "torchrun-fsdp"


def test_one_node_from_params_is_standalone_and_keeps_the_worker_argv():
    topo = resolve_topology(params(nproc_per_node=2), {}, devices=0)
    assert topo == Topology(2, 1, 0, None, "backend params")
    argv = torchrun_argv(topo, params(), WORKER)
    assert argv[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert argv[argv.index("--nproc-per-node") + 1] == "2"
    assert "--standalone" in argv and "--master-addr" not in argv
    assert argv[argv.index("--no-python") + 1:] == WORKER


def test_auto_means_one_process_per_visible_gpu_else_one():
    assert resolve_topology(params(), {}, devices=4).nproc_per_node == 4
    assert resolve_topology(params(), {}, devices=0).nproc_per_node == 1


def test_sagemaker_environment_sets_the_cluster():
    env = {"SM_HOSTS": json.dumps(["algo-2", "algo-1", "algo-3"]), "SM_CURRENT_HOST": "algo-2", "SM_NUM_GPUS": "8"}
    topo = resolve_topology(params(), env, devices=8, **scheduler(env))
    assert (topo.nproc_per_node, topo.nnodes, topo.node_rank) == (8, 3, 1)  # hosts sorted: algo-2 is rank 1
    assert topo.endpoint == "algo-1:7777"
    assert "SageMaker" in topo.source
    argv = torchrun_argv(topo, params(), WORKER)
    assert argv[argv.index("--nnodes") + 1] == "3" and argv[argv.index("--node-rank") + 1] == "1"
    assert argv[argv.index("--master-addr") + 1] == "algo-1" and argv[argv.index("--master-port") + 1] == "7777"
    assert "--standalone" not in argv


def test_sagemaker_variables_alone_do_not_make_a_cluster_the_host_did_not_hand_over():
    """The backend reads no SageMaker variable through the host's internals: without the
    host's LaunchContext.cluster, SM_HOSTS is just an unknown variable."""
    env = {"SM_HOSTS": json.dumps(["algo-2", "algo-1"]), "SM_CURRENT_HOST": "algo-2", "SM_NUM_GPUS": "8"}
    topo = resolve_topology(params(), env, devices=8)
    assert (topo.nnodes, topo.endpoint) == (1, None)


def test_sagemaker_single_host_stays_standalone():
    env = {"SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1", "SM_NUM_GPUS": "4"}
    topo = resolve_topology(params(), env, devices=4, **scheduler(env))
    assert (topo.nproc_per_node, topo.nnodes, topo.endpoint) == (4, 1, None)


def test_params_win_over_the_environment():
    env = {"SM_HOSTS": '["a", "b"]', "SM_CURRENT_HOST": "b", "SM_NUM_GPUS": "8"}
    topo = resolve_topology(params(nproc_per_node=2, rdzv_endpoint="head:1234"), env, devices=8,
                            **scheduler(env))
    assert (topo.nproc_per_node, topo.nnodes, topo.node_rank, topo.endpoint) == (2, 2, 1, "head:1234")


def test_generic_cluster_environment():
    env = {"NNODES": "2", "NODE_RANK": "1", "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "4000"}
    assert cluster_from_env(env)["endpoint"] == "10.0.0.5:4000"
    topo = resolve_topology(params(), env, devices=2)
    assert (topo.nnodes, topo.node_rank, topo.endpoint, topo.nproc_per_node) == (2, 1, "10.0.0.5:4000", 2)
    argv = torchrun_argv(topo, params(rdzv_backend="c10d"), WORKER)
    assert argv[argv.index("--rdzv-endpoint") + 1] == "10.0.0.5:4000"
    assert argv[argv.index("--rdzv-id") + 1] == "grpo-host"


def test_endpoint_without_port_gets_the_default():
    topo = resolve_topology(params(nnodes=2, node_rank=0, rdzv_endpoint="head"), {}, devices=1)
    assert topo.endpoint == "head:29500"


@pytest.mark.parametrize(
    ("over", "env", "needle"),
    [
        ({"nnodes": 2}, {}, "rdzv_endpoint=HOST:PORT"),
        ({"nnodes": 2, "node_rank": 2, "rdzv_endpoint": "h:1"}, {}, "node_rank 2 is outside 0..1"),
        ({"nproc_per_node": 0}, {}, "nproc_per_node must be a whole number >= 1"),
        ({"nnodes": 2, "node_rank": 0, "rdzv_endpoint": "h:port"}, {}, "is not HOST:PORT"),
        ({}, {"NODE_RANK": "x"}, "NODE_RANK='x'"),
    ],
)
def test_bad_shapes_say_what_to_change(over, env, needle):
    with pytest.raises(BackendError, match="torchrun-fsdp") as info:
        resolve_topology(params(**over), env, devices=1)
    assert needle in str(info.value)


def test_more_processes_than_cpu_cores_is_refused():
    topo = Topology(8, 1, 0, None, "backend params")
    with pytest.raises(BackendError, match="set backend.params.nproc_per_node to 2 or fewer"):
        check_devices(topo, cpu_cores=2)
    assert check_devices(Topology(2, 1, 0, None, "x"), cpu_cores=2) == "cpu"


def test_more_processes_than_gpus_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(BackendError, match="nproc_per_node=4 but this node has 2 CUDA devices"):
        check_devices(Topology(4, 1, 0, None, "x"))
    assert check_devices(Topology(2, 1, 0, None, "x")) == "cuda"


def test_fsdp_on_cpu_with_a_torch_that_cannot_is_refused(monkeypatch):
    import torch

    monkeypatch.setattr(torch, "__version__", "2.4.1+cpu")
    with pytest.raises(BackendError, match=r"FSDP on CPUs needs torch >= 2.6.*--backend accelerate"):
        check_devices(Topology(2, 1, 0, None, "x"), cpu_cores=2)


def test_build_command_sets_threads_and_4bit_storage(tmp_path):
    from grpo_backend_torchrun.launch import QUANT_STORAGE_ENV, build_command

    from grpo_host.backends import LaunchContext
    from grpo_host.config import load_config

    config = load_config(None, {"peft": {"enabled": True}, "quantization": {"load_in_4bit": True}},
                         output_dir=str(tmp_path / "run"))
    path = tmp_path / "run_config.yaml"
    path.write_text(config.to_yaml())
    env: dict[str, str] = {}
    argv = build_command(WORKER, params(nproc_per_node=1), env, LaunchContext(config, str(path)))
    assert argv[-len(WORKER):] == WORKER
    assert env[QUANT_STORAGE_ENV] == "bfloat16"
    assert env["OMP_NUM_THREADS"].isdigit()
    with pytest.raises(BackendError, match="cpu_offload"):
        build_command(WORKER, params(nproc_per_node=1, cpu_offload=True), {})


# -- worker side -----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny_model():
    transformers = pytest.importorskip("transformers")
    config = transformers.Qwen2Config(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=2, num_key_value_heads=1, vocab_size=64)
    return transformers.Qwen2ForCausalLM(config)


def test_wrap_layer_found_from_the_model(tiny_model):
    from grpo_backend_torchrun.fsdp import wrap_layer_classes

    assert wrap_layer_classes(tiny_model) == ["Qwen2DecoderLayer"]
    assert wrap_layer_classes(tiny_model, ["Qwen2MLP"]) == ["Qwen2MLP"]
    with pytest.raises(BackendError, match="does not contain"):
        wrap_layer_classes(tiny_model, "LlamaDecoderLayer")


def test_model_with_no_known_layer_is_refused():
    import torch
    from grpo_backend_torchrun.fsdp import wrap_layer_classes

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 4)

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.blocks = torch.nn.ModuleList([Block() for _ in range(3)])

    with pytest.raises(BackendError, match=r"Net names no decoder layer to wrap.*wrap_layers.*Block \(x3\)"):
        wrap_layer_classes(Net())


def test_worker_setup_turns_fsdp2_on(tiny_model, tmp_path):
    from grpo_backend_torchrun.fsdp import prepare_worker

    from grpo_host.config import load_config

    config = load_config(None, {"gradient_checkpointing": True}, output_dir=str(tmp_path))
    setup = prepare_worker(params(cpu_offload=False), tiny_model, config)
    args = setup.trainer_args
    assert args["fsdp"] is True
    fsdp = args["fsdp_config"]
    assert fsdp["version"] == 2 and fsdp["reshard_after_forward"] is True
    assert fsdp["transformer_layer_cls_to_wrap"] == ["Qwen2DecoderLayer"]
    assert fsdp["state_dict_type"] == "FULL_STATE_DICT"
    assert fsdp["activation_checkpointing"] is True and args["gradient_checkpointing"] is False
    assert args["use_cpu"] is True and "ddp_backend" not in args  # no GPU here; not under torchrun
    assert len(setup.callbacks) == 1
    # The trainer takes these fields as they are.
    from trl import GRPOConfig

    made = GRPOConfig(output_dir=str(tmp_path / "c"), report_to="none", **args)
    assert made.fsdp_plugin_args["fsdp_version"] == 2
    assert made.fsdp_plugin_args["transformer_cls_names_to_wrap"] == "Qwen2DecoderLayer"
    assert made.fsdp_plugin_args["activation_checkpointing"] is True


def test_quant_storage_param(tmp_path):
    from grpo_backend_torchrun.launch import QUANT_STORAGE_ENV, build_command

    from grpo_host.backends import LaunchContext
    from grpo_host.config import load_config

    config = load_config(None, {"peft": {"enabled": True}, "quantization": {"load_in_4bit": True}},
                         output_dir=str(tmp_path / "run"))
    path = tmp_path / "run_config.yaml"
    path.write_text(config.to_yaml())
    env: dict[str, str] = {}
    build_command(WORKER, params(nproc_per_node=1, quant_storage="uint8"), env, LaunchContext(config, str(path)))
    assert env[QUANT_STORAGE_ENV] == "uint8"
    with pytest.raises(PluginParamError) as info:  # the host checks the declared choices
        TORCHRUN_FSDP.check_params({"nproc_per_node": 1, "quant_storage": "int4"})
    assert ("backend 'torchrun-fsdp' param 'quant_storage': 'int4' is not a valid 'auto' | 'bfloat16' | "
            "'float16' | 'float32' | 'uint8'") in str(info.value)


def test_cli_prints_the_command_and_refuses_what_cannot_work(tmp_path):
    from tests.conftest import run_cli

    ok = run_cli("train", "--backend", "torchrun-fsdp", "--output-dir", str(tmp_path / "a"), "--print-command",
                 "--set", "backend.params.nproc_per_node=1")
    assert ok.returncode == 0, ok.stderr
    assert "torch.distributed.run --nproc-per-node 1" in ok.stdout and "grpo_host.training.worker" in ok.stdout
    bad = run_cli("train", "--backend", "torchrun-fsdp", "--output-dir", str(tmp_path / "b"), "--print-command",
                  "--set", "backend.params.nproc_per_node=4096")
    assert bad.returncode != 0
    assert "set backend.params.nproc_per_node to" in bad.stdout + bad.stderr
