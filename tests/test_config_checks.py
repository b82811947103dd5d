"""A careless user's configs: each is refused at load time, in seconds, naming the field.

Every case runs the real CLI in a subprocess, as a user would, and must exit non-zero within
``FAST`` seconds (building the model, where these errors used to surface, takes about 10 s),
name the field and the value, and print no traceback. Also: the grpo pass-through coerces what
it accepts, and the finished-run rule.
"""

from __future__ import annotations

import json
import os
import textwrap
import time

import pytest

from grpo_host.config import ConfigError, load_config
from grpo_host.training.finished import finished_run
from tests.conftest import run_cli

# The issue asks for 5 s; a refusal takes about 1 s here. The margin is for a loaded machine: what
# proves that nothing heavy starts first is POISON, which makes importing torch, transformers or trl fail.
FAST = 10.0
POISON = {name: "raise ImportError('imported before the config was refused')\n" for name in ("torch", "transformers", "trl")}


@pytest.fixture(scope="module")
def poison_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("poison")
    for name, code in POISON.items():
        (root / name).mkdir()
        (root / name / "__init__.py").write_text(code)
    return root


def write(tmp_path, text: str, name: str = "run.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


_POISON_DIR: list[str] = []


@pytest.fixture(autouse=True)
def _poisoned(poison_dir):
    _POISON_DIR[:] = [str(poison_dir)]


def refused_fast(*args: str, expect: tuple[str, ...]) -> str:
    path = os.pathsep.join([*_POISON_DIR, os.environ.get("PYTHONPATH", "")])
    started = time.monotonic()
    proc = run_cli(*args, env={"CUDA_VISIBLE_DEVICES": "", "PYTHONPATH": path})
    took = time.monotonic() - started
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-2000:], proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "imported before the config was refused" not in proc.stderr
    for text in expect:
        assert text in proc.stderr, (text, proc.stderr)
    assert took < FAST, f"took {took:.1f} s"
    return proc.stderr


YAML_CASES = {
    "builtin-typo": (
        "model: {builtin: {hiden_size: 32}}",
        ("model.builtin.hiden_size: unknown field", "did you mean 'hidden_size'"),
    ),
    "max-steps-word": (
        "grpo: {max_steps: ten}",
        ("grpo.max_steps: 'ten' is not valid", "a whole number >= 1"),
    ),
    "max-steps-negative": ("grpo: {max_steps: -5}", ("grpo.max_steps: -5 is not valid", "or -1: train for")),
    "lr-negative": (
        "grpo: {learning_rate: -1e-5}",
        ("grpo.learning_rate: -1e-05 is not valid", "a number >= 0"),
    ),
    "temperature-negative": (
        "grpo: {temperature: -0.7}",
        ("grpo.temperature: -0.7 is not valid", "a number > 0"),
    ),
    "scheduler-choice": (
        "grpo: {lr_scheduler_type: cosin}",
        ("grpo.lr_scheduler_type: 'cosin'", "did you mean 'cosine'"),
    ),
    "grpo-bool-for-int": ("grpo: {num_generations: true}", ("grpo.num_generations: True is not valid",)),
    "weight-nan": (
        "rewards: [{name: format, weight: .nan}]",
        ("rewards[0] (format).weight: nan is not valid", "finite number"),
    ),
    "weight-inf-set-by-list": (
        "rewards: [{name: format, weight: .inf}]",
        ("rewards[0] (format).weight: inf",),
    ),
    "data-builtin-typo": (
        "data: {builtin: {max_operands: 9}}",
        ("data.builtin.max_operands: unknown field", "did you mean 'max_operand'"),
    ),
    "launch-typo": (
        "launch: {sagemker: {instance_type: ml.m5.xlarge}}",
        ("launch.sagemker: unknown field", "did you mean 'sagemaker'"),
    ),
    "launch-option-typo": (
        "launch: {sagemaker: {instance_typ: ml.m5.xlarge}}",
        ("launch.sagemaker.instance_typ: unknown option",),
    ),
    "hub-token-in-config": ("grpo: {hub_token: hf_abcdefgh}", ("grpo.hub_token: a secret", "export HF_TOKEN")),
    "tracking-params-typo": (
        "tracking: [mlflow]\ntracking_params: {mlfow: {experiment: x}}",
        ("tracking_params.mlfow:", "did you mean 'mlflow'"),
    ),
}


@pytest.mark.parametrize("case", sorted(YAML_CASES))
def test_bad_yaml_is_refused_fast_by_print_config(case, tmp_path):
    body, expect = YAML_CASES[case]
    if not body.startswith("rewards"):
        body = "rewards: [format]\n" + body
    refused_fast("train", str(write(tmp_path, body + "\n")), "--print-config", expect=expect)


SET_CASES = {
    "builtin-typo": ("model.builtin.hiden_size=32", "model.builtin.hiden_size: unknown field"),
    "empty-max-steps": ("grpo.max_steps=", "grpo.max_steps: '' is not valid"),
    "max-steps-word": ("grpo.max_steps=ten", "grpo.max_steps: 'ten' is not valid"),
    "weight-nan": ("rewards.length.weight=nan", "rewards[2] (length).weight: 'nan' is not valid"),
    "temperature": ("grpo.temperature=-1", "grpo.temperature: -1 is not valid"),
}


@pytest.mark.parametrize("case", sorted(SET_CASES))
def test_bad_set_is_refused_fast_by_train(case, tmp_path):
    setting, expect = SET_CASES[case]
    refused_fast("train", "--output-dir", str(tmp_path / "out"), "--set", setting, expect=(expect,))
    assert not (tmp_path / "out").exists()  # refused before anything was written


def test_many_problems_are_listed_together(tmp_path):
    path = write(
        tmp_path,
        """
        rewards: [format]
        precision: bf32
        grpo: {max_steps: ten, beta: -1}
        model: {builtin: {hiden_size: 32}}
    """,
    )
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(f"config errors in {path}:")
    for text in ("precision: 'bf32'", "grpo.max_steps: 'ten'", "grpo.beta: -1", "model.builtin.hiden_size"):
        assert text in msg


@pytest.mark.parametrize(
    "rows, expect",
    [
        ("", "is empty (no rows)"),
        ("\n  \n", "is empty (no rows)"),
        (
            '{"question": "1+1?", "answer": "2"}\n',
            "data.prompt_column: 'prompt' is not a column; the data has question, answer",
        ),
        ('{"prompt": "1+1?"\n', "cannot be read as jsonl"),
    ],
)
def test_bad_data_file_is_refused_before_launch(tmp_path, rows, expect):
    data = tmp_path / "d.jsonl"
    data.write_text(rows)
    config = write(tmp_path, f"rewards: [format]\ndata: {{source: {data}}}\n")
    refused_fast("train", str(config), "--output-dir", str(tmp_path / "out"), expect=(expect,))
    refused_fast("train", str(config), "--print-config", expect=(expect,))  # what train refuses, so does it


def test_missing_data_file_and_other_formats(tmp_path):
    from grpo_host.config import DataSection
    from grpo_host.training.data import check_local_data

    assert check_local_data(DataSection(source=str(tmp_path / "nope.jsonl"))) == [
        f"data.source: file {str(tmp_path / 'nope.jsonl')!r} not found"
    ]
    (tmp_path / "a.json").write_text(json.dumps([{"prompt": "x", "answer": "1"}]))
    assert check_local_data(DataSection(source=str(tmp_path / "a.json"))) == []
    (tmp_path / "b.json").write_text(json.dumps({"question": ["x"], "answer": ["1"]}))
    assert "'prompt' is not a column" in check_local_data(DataSection(source=str(tmp_path / "b.json")))[0]
    assert check_local_data(DataSection(source=str(tmp_path / "b.json"), template="Q: {question}")) == []
    (tmp_path / "c.csv").write_text("prompt,answer\n")
    assert "is empty" in check_local_data(DataSection(source=str(tmp_path / "c.csv")))[0]
    (tmp_path / "d.csv").write_text("prompt,answer\nWhat is 1+1?,2\n")
    assert check_local_data(DataSection(source=str(tmp_path / "d.csv"))) == []


def test_grpo_values_are_taken_as_grpoconfig_takes_them(tmp_path):
    from grpo_host.cli.common import parse_sets

    config = load_config(
        None,
        parse_sets(
            [
                "grpo.max_steps=12",
                "grpo.learning_rate=1e-5",
                "grpo.beta=0",
                "grpo.max_steps=-1",
                "grpo.lr_scheduler_type=cosine",
                "grpo.report_to=[]",
            ]
        ),
        base_dir=tmp_path,
    )
    assert config.grpo["max_steps"] == -1 and config.grpo["learning_rate"] == 1e-5
    assert isinstance(config.grpo["beta"], float)  # an int written for a float field
    path = write(
        tmp_path, "rewards: [format]\ngrpo: {learning_rate: 3e-6, max_steps: '7', num_train_epochs: 2}\n"
    )
    grpo = load_config(path).grpo
    assert grpo == {"learning_rate": 3e-6, "max_steps": 7, "num_train_epochs": 2.0}


def test_a_field_unknown_to_the_schema_but_in_the_installed_trl_passes(monkeypatch):
    """A newer TRL than the schema: its field is known by name (read from TRL's source) and left
    to TRL's own check."""
    from grpo_host import config as config_module

    names = config_module.grpo_field_names() | {"brand_new_field"}
    monkeypatch.setattr(config_module, "grpo_field_names", lambda: names)
    values, problems = config_module.grpo_values({"brand_new_field": "anything", "max_steps": "x"})
    assert values["brand_new_field"] == "anything"
    assert len(problems) == 1 and problems[0].startswith("grpo.max_steps")


# -- a finished run ------------------------------------------------------------------------------
def _summary(tmp_path, **fields):
    (tmp_path / "run.json").write_text(
        json.dumps({"final_step": 3, "max_steps": 3, "num_train_epochs": 1, **fields})
    )


@pytest.mark.parametrize(
    "setting, fields, finished",
    [
        ([], None, False),  # nothing ran
        ([], {}, True),  # same max_steps
        (["grpo.max_steps=2"], {}, True),  # lower: still nothing to train
        (["grpo.max_steps=6"], {}, False),  # raised: extends it
        ([], {"final_step": 2}, False),  # an interrupted run's summary (not at its end)
        (["grpo.max_steps=-1"], {}, False),  # by epochs: 3 (TRL's default) > the 1 covered
        (["grpo.max_steps=-1", "grpo.num_train_epochs=1"], {}, True),
    ],
)
def test_finished_run_rule(tmp_path, setting, fields, finished):
    from grpo_host.cli.common import parse_sets

    overrides = parse_sets(["grpo.max_steps=3", *setting])
    config = load_config(None, overrides, output_dir=str(tmp_path), base_dir=tmp_path)
    if fields is not None:
        _summary(tmp_path, **fields)
    assert (finished_run(config) is not None) is finished


def test_rerun_of_a_finished_run_exits_0_and_touches_nothing(tmp_path):
    _summary(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"weights")
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    proc = run_cli("train", "--output-dir", str(tmp_path), "--set", "grpo.max_steps=3")
    assert proc.returncode == 0, proc.stderr
    assert "holds a finished run (step 3 of max_steps 3)" in proc.stdout
    assert "--set grpo.max_steps=6" in proc.stdout and "--overwrite" in proc.stdout
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == before  # not even run_config.yaml
    assert "--overwrite" in run_cli("train", "--help").stdout


def test_json_schema_describes_grpo_fields_for_editors():
    from grpo_host.config import json_schema

    grpo = json_schema()["properties"]["grpo"]["properties"]
    assert grpo["max_steps"] == {"type": ["integer"]}
    assert "cosine" in grpo["lr_scheduler_type"]["enum"]
    assert "output_dir" not in grpo  # set through output.dir
