"""The run config and `grpo-host train`'s checks before launch: fast, no training."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from grpo_host.cli.common import parse_sets
from grpo_host.config import (
    ConfigError,
    check_grpo_fields,
    grpo_field_names,
    json_schema,
    load_config,
)
from tests.conftest import REPO, run_cli, write_distribution


def write(tmp_path, text: str, name: str = "run.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_default_config_resolves(tmp_path):
    config = load_config(None, base_dir=tmp_path)
    assert [r.name for r in config.rewards] == ["format", "accuracy", "length"]
    assert config.model.id == "builtin:tiny-qwen2"
    assert config.output.dir == str(tmp_path / "grpo-runs" / "default")
    assert config.checkpoint_dir == str(tmp_path / "grpo-runs" / "default" / "checkpoints")
    assert config.backend.name == "accelerate"


def test_unknown_field_names_it_and_suggests(tmp_path):
    path = write(tmp_path, """
        rewards: [format]
        peft: {enabled: true, rank: 8}
    """)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "peft.rank: unknown field 'rank'" in msg
    assert "allowed: enabled, r, alpha" in msg


def test_literal_error_names_value_and_choices(tmp_path):
    path = write(tmp_path, "rewards: [format]\nprecision: bf32\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "precision: 'bf32' is not allowed" in msg
    assert "'bf16'" in msg and "'fp16'" in msg


def test_bad_number_names_field_value_and_bound(tmp_path):
    path = write(tmp_path, """
        rewards:
          - format
          - {name: length, timeout: -1}
        checkpointing: {steps: 0}
    """)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert "rewards[1] (length).timeout: -1 is not valid" in msg and "a number (or null) > 0" in msg
    assert "checkpointing.steps: 0 is not valid" in msg and ">= 1" in msg


def test_rewards_required_and_unique(tmp_path):
    with pytest.raises(ConfigError, match="rewards: required field is missing"):
        load_config(write(tmp_path, "seed: 1\n"))
    with pytest.raises(ConfigError, match="length listed twice"):
        load_config(write(tmp_path, "rewards: [length, length]\n", "b.yaml"))


def test_grpo_fields_owned_by_sections_are_refused(tmp_path):
    path = write(tmp_path, "rewards: [format]\ngrpo: {output_dir: /tmp/x}\n")
    with pytest.raises(ConfigError, match=r"'output_dir' is set through output.dir"):
        load_config(path)


def test_grpo_unknown_key_did_you_mean():
    fields = grpo_field_names()
    assert fields and {"num_generations", "learning_rate", "beta", "max_completion_length"} <= fields
    check_grpo_fields({"num_generations": 4, "learning_rate": 1e-5})
    with pytest.raises(ConfigError) as err:
        check_grpo_fields({"num_generation": 4})
    assert "grpo.num_generation: unknown GRPOConfig field" in str(err.value)
    assert "'num_generations'" in str(err.value)


def test_qlora_needs_peft(tmp_path):
    with pytest.raises(ConfigError, match="load_in_4bit trains through LoRA"):
        load_config(write(tmp_path, "rewards: [format]\nquantization: {load_in_4bit: true}\n"))


def test_set_overrides_dotted_keys_and_rewards_by_name(tmp_path):
    sets = parse_sets(["grpo.max_steps=7", "grpo.learning_rate=1e-5", "rewards.length.weight=2",
                       "rewards.length.params.target=10", "peft.enabled=true", "tracking=[mlflow]"])
    config = load_config(None, sets, output_dir="out", backend="torchrun-fsdp", base_dir=tmp_path)
    assert config.grpo["max_steps"] == 7
    length = next(r for r in config.rewards if r.name == "length")
    assert length.weight == 2.0 and length.params == {"target": 10, "unit": "chars"}
    assert config.peft.enabled is True
    assert config.tracking == ["mlflow"]
    assert config.output.dir == str(tmp_path / "out")
    assert config.backend.name == "torchrun-fsdp"


def test_set_unknown_reward_says_which_exist():
    with pytest.raises(ConfigError, match=r"the run has no reward 'lenght'.*did you mean 'length'"):
        load_config(None, parse_sets(["rewards.lenght.weight=2"]))


def test_schema_covers_sections():
    schema = json_schema()
    assert schema["title"] == "grpo-host run config"
    for section in ("model", "data", "rewards", "grpo", "peft", "quantization", "precision",
                    "checkpointing", "eval", "output", "backend", "rewards_error_threshold", "reward_workers"):
        assert section in schema["properties"], section


def test_print_config_and_schema_stay_light(tmp_path):
    code = (
        "import sys, io, contextlib\n"
        "from grpo_host.cli import cli\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    cli.main(['train', '--print-config', '--set', 'grpo.max_steps=9'], standalone_mode=False)\n"
        "    cli.main(['train', '--schema'], standalone_mode=False)\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl') if m in sys.modules]\n"
        "print(repr(heavy)); print(out.getvalue())\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert proc.returncode == 0, proc.stderr
    first, rest = proc.stdout.split("\n", 1)
    assert first == "[]"
    assert "max_steps: 9" in rest and '"title": "grpo-host run config"' in rest


def test_cli_config_error_exit_code_and_message(tmp_path):
    path = write(tmp_path, "rewards: [format]\nprecision: bf32\n")
    proc = run_cli("train", str(path), "--print-config")
    assert proc.returncode == 2
    assert "precision: 'bf32' is not allowed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_print_command_plain_and_accelerate(tmp_path):
    proc = run_cli("train", "--print-command", "--output-dir", str(tmp_path / "a"), env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[1:] == ["-m", "grpo_host.training.worker", "--config",
                                       str(tmp_path / "a" / "run_config.yaml")]
    proc = run_cli("train", "--print-command", "--output-dir", str(tmp_path / "b"),
                   "--set", "backend.params.num_processes=2", env={"CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr
    argv = proc.stdout.split()
    assert argv[1:3] == ["-m", "accelerate.commands.launch"]
    assert argv[argv.index("--num_processes") + 1] == "2"
    assert "--multi_gpu" in argv
    assert argv[-3:-1] == ["grpo_host.training.worker", "--config"]


def test_unknown_backend_param_refused(tmp_path):
    proc = run_cli("train", "--print-command", "--set", "backend.params.num_procs=2")
    assert proc.returncode == 2
    assert "no param 'num_procs'" in proc.stderr and "did you mean 'num_processes'" in proc.stderr


def test_train_refuses_reward_from_broken_plugin(tmp_path, plugin_dir):
    write_distribution(
        plugin_dir, "grpo-reward-broken",
        {"grpo_reward_broken": "raise ImportError('needs libfoo 9')\n"},
        {"broken": "grpo_reward_broken"},
    )
    path = write(tmp_path, "rewards: [format, fancy-score]\n")
    proc = run_cli("train", str(path), "--output-dir", str(tmp_path / "out"))
    assert proc.returncode == 2
    assert "reward 'fancy-score'" in proc.stderr
    assert "grpo-reward-broken" in proc.stderr and "needs libfoo 9" in proc.stderr
    assert not (tmp_path / "out" / "run_config.yaml").exists()  # refused before anything was written


def test_train_refuses_unknown_reward_and_backend_together(tmp_path):
    proc = run_cli("train", "--set", "rewards=[acuracy]", "--backend", "acelerate", "--output-dir", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "did you mean 'accuracy'" in proc.stderr
    assert "unknown backend 'acelerate'" in proc.stderr


def test_metrics_contract_helpers():
    from grpo_host.observability.report import build_report, reward_names, reward_rise

    records = [{"step": i + 1, "reward": i / 10, "rewards/length/mean": i / 10, "rewards/length/ok": 8,
                "rewards/length/error": 0, "step_time": 0.2} for i in range(10)]
    rise = reward_rise(records)
    assert rise["first_fifth"] == pytest.approx(0.05) and rise["last_fifth"] == pytest.approx(0.85)
    assert reward_names(records) == ["length"]
    samples = [{"step": 1, "prompt": "What is 1 + 1?", "completion": "<b>2</b>", "answer": "2",
                "rewards": {"length": {"score": 0.5, "outcome": "ok", "details": {"length": 8}}}}]
    page = build_report(records, samples, [{"name": "length", "plugin": "p", "version": "1", "params": {}}],
                        {"run_name": "t"})
    assert page.startswith("<!doctype html>") and "data:image/png;base64," in page
    assert "&lt;b&gt;2&lt;/b&gt;" in page  # completions are escaped
    json.dumps(rise)


@pytest.mark.parametrize("path", sorted((REPO / "examples").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_are_valid(path, tmp_path):
    """Every example loads, and its rewards, backend, params and grpo fields check out."""
    from grpo_host.training.launch import check_run

    config = load_config(path, base_dir=tmp_path)
    check_run(config)
