"""Rules that need only the config are refused when it is loaded, before anything launches.

Each of these used to be raised by the training worker, after the launch (and most after the
model was built): a wrong combination cost a model build, or a traceback. Now the config says
what to do at once, ``grpo-host train`` exits 2 in about a second, and no output dir is written.
"""

from __future__ import annotations

import sys
import time

import pytest

from grpo_host.cli.common import parse_sets
from grpo_host.config import ConfigError, load_config
from tests.conftest import run_cli

# (--set items over the embedded default, what the error says: the field and what to do)
RULES = {
    "speed-with-vllm": (
        ["generation.speed=static", "grpo.use_vllm=true"],
        r"generation.speed=static and grpo.use_vllm both choose how to generate; keep one",
    ),
    "compile-with-cache-implementation": (
        ["generation.speed=static-compile", "grpo.cache_implementation=dynamic"],
        r"grpo.cache_implementation both choose how to generate; keep one",
    ),
    "speed-with-paged": (
        ["generation.speed=static", "grpo.use_transformers_paged=true"],
        r"grpo.use_transformers_paged both choose",
    ),
    "warmup-with-4bit": (
        ["peft.enabled=true", "quantization.load_in_4bit=true"],
        r"warmup.steps trains every weight, which a 4-bit model .* cannot; set warmup.steps: 0",
    ),
    "unknown-builtin-model": (
        ["model.id=builtin:tiny-llama", "model.builtin=null"],
        r"model.id: 'builtin:tiny-llama' is not valid \(not a built-in model; the built-in "
        r"one is builtin:tiny-qwen2",
    ),
    "builtin-fields-on-a-hub-model": (
        ["model.id=Qwen/Qwen2.5-0.5B"],
        r"model.builtin is only for model.id builtin:tiny-qwen2, and model.id is "
        r"'Qwen/Qwen2.5-0.5B': remove model.builtin \(over the embedded default: --set model.builtin=null\)",
    ),
    "unknown-builtin-data": (
        ["data.source=builtin:algebra"],
        r"data.source: 'builtin:algebra' is not valid \(not a built-in data set",
    ),
    "data-template-not-a-format-string": (
        ["data.template=Solve {question"],
        r"data.template: .*not a format string .*write the columns in braces",
    ),
    "warmup-template-not-a-format-string": (
        ["warmup.template=<answer>{answer</answer>"],
        r"warmup.template: .*not a format string",
    ),
    "builtin-data-operations": (
        ["data.builtin.operations=/"],
        r"data.builtin.operations: '/' is not valid; allowed: a string of \+-\*",
    ),
    "builtin-data-no-rows": (
        ["data.builtin.n=0"],
        r"data.builtin.n: 0 is not valid; allowed: a whole number >= 1",
    ),
    "builtin-data-negative-operand": (
        ["data.builtin.max_operand=-1"],
        r"data.builtin.max_operand: -1 is not valid; allowed: a whole number >= 0",
    ),
}


@pytest.mark.parametrize("name", sorted(RULES))
def test_a_config_only_rule_is_refused_when_the_config_is_loaded(name, tmp_path):
    sets, message = RULES[name]
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(None, parse_sets(sets), output_dir=str(tmp_path / "out"))
    assert str(caught.value).startswith("config error"), caught.value
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "sets",
    [
        ["generation.speed=off", "grpo.use_vllm=true"],  # off and auto step aside for TRL's own settings
        ["grpo.use_vllm=true"],
        ["peft.enabled=true", "quantization.load_in_4bit=true", "warmup.steps=0"],
        ["model.id=Qwen/Qwen2.5-0.5B", "model.builtin=null"],
        ["data.template=Solve {{literally}} {question}"],
        ["data.builtin.operations=*-", "data.builtin.n=3"],
    ],
    ids=lambda s: " ".join(s),
)
def test_the_neighbours_of_each_rule_still_load(sets):
    load_config(None, parse_sets(sets))


def test_problems_across_sections_are_listed_together():
    with pytest.raises(ConfigError) as caught:
        load_config(
            None,
            parse_sets(["quantization.load_in_4bit=true", "generation.speed=static", "grpo.use_vllm=true"]),
        )
    text = str(caught.value)
    assert text.startswith("config errors in the embedded default config:\n  ")
    for part in (
        "load_in_4bit trains through LoRA",
        "warmup.steps trains every weight",
        "grpo.use_vllm both choose",
    ):
        assert part in text
    assert "(top level)" not in text and "{'" not in text  # the rule's words, not the config's dump


@pytest.mark.parametrize(
    "bad",
    [
        "generation: {speed: static}\ngrpo: {use_vllm: true}\n",
        "checkpointing: {resume: ./no-such-checkpoint}\n",  # needs the disk, not only the config: the host checks it
    ],
)
def test_grpo_host_train_refuses_before_launching_anything(bad, tmp_path):
    """As a user runs it: exit 2 with the rule's words, in seconds, no output dir, no traceback.
    Raised in the worker instead, the run would have launched: an output dir with
    run_config.yaml, and torch, transformers and TRL imported before the error."""
    config = tmp_path / "cfg.yaml"
    config.write_text("rewards: [format]\n" + bad)
    out = tmp_path / "out"
    started = time.monotonic()
    proc = run_cli("train", str(config), "--output-dir", str(out), timeout=120)
    took = time.monotonic() - started
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert ("both choose how to generate" in proc.stderr) or (
        "is not a complete checkpoint folder" in proc.stderr
    )
    assert "Traceback" not in proc.stderr
    assert not out.exists()
    assert took < 30, took  # the CLI starts in well under a second; a launch imports torch and TRL first


def test_the_refusal_imports_nothing_heavy(tmp_path):
    config = tmp_path / "cfg.yaml"
    config.write_text(
        "rewards: [format]\nwarmup: {steps: 3}\npeft: {enabled: true}\nquantization: {load_in_4bit: true}\n"
    )
    code = (
        "import sys\nfrom grpo_host.cli import cli\n"
        f"try:\n    cli.main(['train', {str(config)!r}, '--output-dir', {str(tmp_path / 'out')!r}], standalone_mode=False)\n"
        "except Exception as exc:\n    print(type(exc).__name__, exc, file=sys.stderr)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'trl', 'accelerate') if m in sys.modules))\n"
    )
    import subprocess

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.stdout.strip().splitlines()[-1] == "[]", proc.stdout + proc.stderr
    assert "warmup.steps trains every weight" in proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # imports torch and accelerate: ~10 s on a loaded 2-core machine
def test_a_worker_launched_by_hand_refuses_a_bad_checkpoint_before_building_anything(tmp_path):
    """The worker's stages check the checkpoint before the reward set, the data and the model
    (it used to be checked after the model was built): nothing is cached, no output dir."""
    import os
    import subprocess

    config = load_config(
        None,
        parse_sets([f"checkpointing.resume={tmp_path / 'checkpoint-7'}"]),
        output_dir=str(tmp_path / "out"),
    )
    path = tmp_path / "resolved.yaml"
    path.write_text(config.to_yaml())
    cache = tmp_path / "cache"
    proc = subprocess.run(
        [sys.executable, "-m", "grpo_host.training.worker", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "GRPO_HOST_CACHE": str(cache)},
    )
    assert proc.returncode == 2, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "checkpoint-7' is not a complete checkpoint folder" in proc.stderr
    assert not (tmp_path / "out").exists()
    assert not cache.exists() or not any(cache.iterdir())  # the built-in model was not built
