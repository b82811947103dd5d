"""The SageMaker container contract as run-config overrides, and the launch options: pure
functions, no AWS and no SDK."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from grpo_host.config import load_config
from grpo_host.errors import GrpoHostError
from grpo_host.sagemaker import job_env
from grpo_host.sagemaker.options import LaunchOptionsError, parse_duration, resolve_options

JOB = {"SM_MODEL_DIR": "/opt/ml/model", "TRAINING_JOB_NAME": "grpo-x-20260101000000",
       "SM_OUTPUT_DATA_DIR": "/opt/ml/output/data", "SM_HOSTS": '["algo-1"]', "SM_CURRENT_HOST": "algo-1",
       "SM_NUM_GPUS": "0", "SM_HPS": "{}"}
ACCELERATE_PARAMS = ("num_processes", "num_machines", "machine_rank", "main_process_ip", "main_process_port",
                     "mixed_precision", "cpu")


def test_outside_a_job_nothing_changes():
    assert job_env.sagemaker_overrides({}) == {}
    assert job_env.sagemaker_overrides({"SM_MODEL_DIR": "/opt/ml/model"}) == {}  # no job name: not a job
    assert job_env.prepare_job(None, environ={"HOME": "/root"}) == {}
    assert not job_env.in_sagemaker_job({**JOB, "GRPO_HOST_SAGEMAKER": "0"})


def test_paths_go_where_sagemaker_uploads_them():
    env = {**JOB, job_env.CHANNELS_ENV: json.dumps({"train": {"field": "data.source", "file": "prompts.jsonl"}}),
           "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train", job_env.CHECKPOINT_ENV: "/opt/ml/checkpoints"}
    overrides = job_env.sagemaker_overrides(env)
    assert overrides["output"] == {"dir": "/opt/ml/model"}
    assert overrides["checkpointing"] == {"dir": "/opt/ml/checkpoints", "resume": True}
    assert overrides["data"] == {"source": "/opt/ml/input/data/train/prompts.jsonl"}


def test_hyperparameters_are_dotted_overrides_but_cannot_move_the_model():
    hps = {"grpo__learning_rate": "1e-5", "grpo.max_steps": "20", "output__dir": "/elsewhere",
           "rewards__tag-count__weight": 2}
    overrides = job_env.sagemaker_overrides({**JOB, "SM_HPS": json.dumps(hps)})
    assert overrides["grpo"] == {"learning_rate": 1e-5, "max_steps": 20}
    assert overrides["rewards"] == {"tag-count": {"weight": 2}}
    assert overrides["output"]["dir"] == "/opt/ml/model"


def test_bad_hyperparameters_json_says_what_is_wrong():
    with pytest.raises(GrpoHostError, match="SM_HPS is not JSON"):
        job_env.sagemaker_overrides({**JOB, "SM_HPS": "{nope"})


def test_channel_without_a_recorded_file_finds_its_one_data_file():
    env = {**JOB, "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train"}  # a hand-made job: default mapping
    listing = {"/opt/ml/input/data/train": ["README.md", "rows.parquet"]}
    overrides = job_env.sagemaker_overrides(env, listdir=listing.__getitem__)
    assert overrides["data"]["source"] == "/opt/ml/input/data/train/rows.parquet"
    listing["/opt/ml/input/data/train"] = ["dataset_dict.json", "train", "eval"]  # a saved DatasetDict
    assert job_env.sagemaker_overrides(env, listdir=listing.__getitem__)["data"]["source"] == \
        "/opt/ml/input/data/train"


def test_model_channel_is_a_folder():
    env = {**JOB, "SM_CHANNEL_MODEL": "/opt/ml/input/data/model",
           job_env.CHANNELS_ENV: json.dumps({"model": {"field": "model.id", "dir": True}})}
    assert job_env.sagemaker_overrides(env)["model"] == {"id": "/opt/ml/input/data/model"}


def test_cluster_shape_reaches_only_the_params_the_backend_declares():
    env = {**JOB, "SM_HOSTS": '["algo-2", "algo-1"]', "SM_CURRENT_HOST": "algo-2", "SM_NUM_GPUS": "8",
           "SM_MASTER_ADDR": "algo-1", "SM_MASTER_PORT": "7777"}
    params = job_env.sagemaker_overrides(env, backend_params=ACCELERATE_PARAMS)["backend"]["params"]
    assert params == {"num_processes": 16, "num_machines": 2, "machine_rank": 1, "main_process_ip": "algo-1",
                      "main_process_port": 7777}
    assert "backend" not in job_env.sagemaker_overrides(env, backend_params=("something_else",))
    # one CPU instance: one process; an explicit processes-per-node from the launcher wins over the GPUs
    assert job_env.sagemaker_overrides(JOB, backend_params=ACCELERATE_PARAMS)["backend"]["params"] == \
        {"num_processes": 1}
    env[job_env.PROCESSES_ENV] = "4"
    assert job_env.sagemaker_overrides(env, backend_params=ACCELERATE_PARAMS)["backend"]["params"]["num_processes"] == 8


def test_a_hyperparameter_beats_the_cluster_shape():
    env = {**JOB, "SM_NUM_GPUS": "4", "SM_HPS": json.dumps({"backend__params__num_processes": "2"})}
    assert job_env.sagemaker_overrides(env, backend_params=ACCELERATE_PARAMS)["backend"]["params"] == \
        {"num_processes": 2}


def test_overrides_load_into_the_run_config(tmp_path):
    (tmp_path / "run.yaml").write_text("rewards: [format]\ndata: {source: local.jsonl}\n"
                                       "output: {dir: /home/me/runs/x}\n")
    env = {**JOB, "SM_CHANNEL_TRAIN": "/opt/ml/input/data/train",
           job_env.CHANNELS_ENV: json.dumps({"train": {"field": "data.source", "file": "local.jsonl"}}),
           "SM_HPS": json.dumps({"grpo__max_steps": "3"})}
    config = load_config(tmp_path / "run.yaml", job_env.sagemaker_overrides(env))
    assert config.output.dir == "/opt/ml/model"
    assert config.checkpoint_dir == "/opt/ml/checkpoints"
    assert config.data.source == "/opt/ml/input/data/train/local.jsonl"
    assert config.grpo == {"max_steps": 3}


def test_prepare_job_reads_the_backend_from_the_config(tmp_path):
    from grpo_host.plugins.manager import get_plugin_manager

    if "accelerate" not in get_plugin_manager().backends:
        pytest.skip("the accelerate backend plugin is not installed (pip install -e plugins/grpo-backend-accelerate)")
    (tmp_path / "run.yaml").write_text("rewards: [format]\nbackend: {name: accelerate}\n")
    env = {**JOB, "SM_NUM_GPUS": "2"}
    overrides = job_env.prepare_job(tmp_path / "run.yaml", environ=env)
    assert overrides["backend"]["params"] == {"num_processes": 2}


class FakeSecrets:
    def __init__(self, values):
        self.values, self.asked = values, []

    def get_secret_value(self, SecretId):  # noqa: N803 - boto3's spelling
        self.asked.append(SecretId)
        if SecretId not in self.values:
            error = Exception("not found")
            error.response = {"Error": {"Code": "ResourceNotFoundException"}}
            raise error
        return {"SecretString": self.values[SecretId]}


def test_secrets_are_fetched_by_name_and_never_in_the_overrides():
    env = {**JOB, job_env.SECRETS_ENV: json.dumps({"region": "us-west-2", "env": {"HF_TOKEN": "team/hf"}})}
    client = FakeSecrets({"team/hf": "hf_value_123"})
    assert job_env.fetch_secrets(env, client) == {"HF_TOKEN": "hf_value_123"}
    assert "hf_value_123" not in json.dumps(job_env.sagemaker_overrides(env))
    # a variable already set in the job's environment is kept, not fetched
    client.asked.clear()
    assert job_env.fetch_secrets({**env, "HF_TOKEN": "given"}, client) == {}
    assert client.asked == []
    with pytest.raises(GrpoHostError, match="secretsmanager:GetSecretValue") as err:
        job_env.fetch_secrets(env, FakeSecrets({}))
    assert "team/hf" in str(err.value)


def test_finish_job_copies_the_report_into_the_output_data_dir(tmp_path):
    run = tmp_path / "model"
    run.mkdir()
    for name in ("report.html", "metrics.jsonl", "model.safetensors"):
        (run / name).write_text("x")
    out = tmp_path / "output" / "data"
    copied = job_env.finish_job(run, {**JOB, "SM_OUTPUT_DATA_DIR": str(out)})
    assert sorted(copied) == ["metrics.jsonl", "report.html"]
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl", "report.html"]
    assert job_env.finish_job(run, {"HOME": "/"}) == []


# -- launch options ------------------------------------------------------------------------------
def test_durations():
    assert parse_duration(3600) == 3600
    assert parse_duration("90m") == 5400
    assert parse_duration("1h30m") == 5400
    assert parse_duration("2d") == 172800
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_command_line_wins_over_the_config_section():
    section = {"instance_type": "ml.g5.2xlarge", "tags": {"team": "rl"}, "max_run": "2h", "spot": True}
    options = resolve_options(section, {"instance_type": "ml.p4d.24xlarge", "tags": {"owner": "me"},
                                        "subnets": (), "spot": None})
    assert options.instance_type == "ml.p4d.24xlarge"
    assert options.tags == {"team": "rl", "owner": "me"}
    assert options.max_run == 7200 and options.spot
    assert options.wait_time == 14400  # spot's default max wait: twice the run time


@pytest.mark.parametrize("section, message", [
    ({"instance_typ": "ml.g5.xlarge"}, "did you mean 'instance_type'"),
    ({"max_wait": "1h"}, "spot training only"),
    ({"spot": True, "max_run": "2h", "max_wait": "1h"}, "at least max_run"),
    ({"subnets": ["subnet-1"]}, "both subnets and security_group_ids"),
    ({"channels": {"code": "s3://b/k"}}, "reserved"),
])
def test_bad_options_name_the_option(section, message):
    with pytest.raises(LaunchOptionsError, match=message):
        resolve_options(section, {})


# -- the torchrun entry ----------------------------------------------------------------------------
def test_torchrun_entry_runs_the_worker_with_the_job_contract(tmp_path, monkeypatch):
    from grpo_host.plugins.manager import get_plugin_manager

    if "accelerate" not in get_plugin_manager().backends:
        pytest.skip("the accelerate backend plugin is not installed (pip install -e plugins/grpo-backend-accelerate)")
    from grpo_host.config import load_resolved
    from grpo_host.sagemaker.entry import torchrun_main

    (tmp_path / "run.yaml").write_text("rewards: [format]\noutput: {dir: /home/me/run}\n")
    job = {**JOB, "SM_MODEL_DIR": str(tmp_path / "model"), "SM_OUTPUT_DATA_DIR": str(tmp_path / "output"),
           job_env.CHECKPOINT_ENV: str(tmp_path / "ckpt"), "SM_HPS": json.dumps({"grpo__max_steps": 3}),
           "RANK": "0"}
    seen = {}

    def fake_worker(argv):
        config = load_resolved(argv[argv.index("--config") + 1])
        seen["config"] = config
        Path(config.output.dir).mkdir(parents=True)
        (Path(config.output.dir) / "report.html").write_text("<html/>")
        return 0

    monkeypatch.setattr("grpo_host.training.worker.main", fake_worker)
    monkeypatch.chdir(tmp_path)
    saved = dict(os.environ)
    try:
        os.environ.update(job)
        assert torchrun_main("run.yaml") == 0
    finally:
        os.environ.clear()
        os.environ.update(saved)
    config = seen["config"]
    assert config.output.dir == str(tmp_path / "model")
    assert config.checkpoint_dir == str(tmp_path / "ckpt")
    assert config.grpo == {"max_steps": 3}
    assert (tmp_path / "output" / "report.html").is_file()


def test_secret_looking_variable_names():
    from grpo_host.sagemaker.launcher import SECRET_NAME_RE

    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "WANDB_API_KEY", "AWS_SECRET_ACCESS_KEY", "DB_PASSWORD",
                 "token", "GOOGLE_APPLICATION_CREDENTIALS"):
        assert SECRET_NAME_RE.search(name), name
    for name in ("TOKENIZERS_PARALLELISM", "MY_FLAG", "KEYBOARD", "NCCL_DEBUG", "HF_HUB_OFFLINE"):
        assert not SECRET_NAME_RE.search(name), name


def test_launch_refuses_a_job_that_could_not_find_its_data(tmp_path, monkeypatch):
    from grpo_host.sagemaker.launcher import plan_job

    monkeypatch.chdir(tmp_path)
    (tmp_path / "run.yaml").write_text("rewards: [format]\ndata: {source: missing.jsonl}\n")
    options = {"region": "us-west-2", "image": "my-image:latest"}
    with pytest.raises(GrpoHostError, match="missing.jsonl' not found here"):
        plan_job("run.yaml", options, workdir=tmp_path / "job")
    (tmp_path / "run.yaml").write_text("rewards: [format]\ndata: {source: builtin:arithmetic}\n")
    with pytest.raises(GrpoHostError, match="eval_split"):
        plan_job("run.yaml", {**options, "eval": "s3://bucket/eval.jsonl"}, workdir=tmp_path / "job")
    assert not (tmp_path / "job").exists()  # refused before anything was built
