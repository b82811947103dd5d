"""torchrun-fsdp end to end on CPUs: `grpo-host train --backend torchrun-fsdp` with two processes
over gloo trains a few steps, each rank holds half of the parameters (FSDP, not DDP, which
would hold them all), and the saved model loads in plain transformers and generates."""

from __future__ import annotations

import json
import os
import sys

import pytest

pytest.importorskip("grpo_backend_torchrun")
pytest.importorskip("trl")

from tests.conftest import run_cli  # noqa: E402

STEPS = 3
SETS = [
    "backend.params.nproc_per_node=2",
    f"grpo.max_steps={STEPS}",
    "grpo.per_device_train_batch_size=8",
    "grpo.num_generations=4",
    "grpo.max_completion_length=16",
    "grpo.num_iterations=1",  # the default's two steps per generation round would log every other step
    "warmup.steps=0",  # random completions: rewards that differ within a group, so the few steps train
    "checkpointing.steps=100",
    "output.report=false",
    "reward_workers=0",
    "rewards=[format, length]",
]


def _train(tmp_path, *extra: str):
    out = tmp_path / "run"
    args = ["train", "--backend", "torchrun-fsdp", "--output-dir", str(out)]
    for item in [*SETS, *extra]:
        args += ["--set", item]
    env = {"GRPO_HOST_CACHE": os.environ.get("GRPO_HOST_CACHE") or str(tmp_path.parent / "grpo-host-cache")}
    proc = run_cli(*args, env=env, timeout=240)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out


def _reload_and_generate(folder):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    batch = tokenizer(["What is 2 + 3?"], return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**batch, max_new_tokens=6, do_sample=False)
    assert out.shape[1] == batch["input_ids"].shape[1] + 6 or out[0, -1] == tokenizer.eos_token_id
    return model


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="torchrun over gloo is exercised on Linux")
def test_two_cpu_processes_shard_the_model_and_save_it_whole(tmp_path):
    out = _train(tmp_path)

    shards = json.loads((out / "fsdp_shards.json").read_text())
    assert shards["world_size"] == 2 and shards["fsdp_version"] == 2
    assert shards["fsdp_units"].get("FSDPQwen2DecoderLayer") == 2  # each decoder layer its own unit
    full = shards["full_numel"]
    assert [r["rank"] for r in shards["ranks"]] == [0, 1]
    for rank in shards["ranks"]:
        # A shard is about half of the model; DDP would hold all of it on every rank.
        assert rank["sharded_tensors"] > 0
        assert abs(rank["local_numel"] / full - 0.5) < 0.02, rank
    assert sum(r["local_numel"] for r in shards["ranks"]) == pytest.approx(full, rel=0.01)

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))  # written once, by the main process
    assert all("rewards/format/mean" in r for r in records)

    model = _reload_and_generate(out)
    assert sum(p.numel() for p in model.parameters()) == full  # gathered in full, not a shard
    run = json.loads((out / "run.json").read_text())
    assert run["world_size"] == 2 and run["final_step"] == STEPS


@pytest.mark.slow
@pytest.mark.skipif(sys.platform != "linux", reason="torchrun over gloo is exercised on Linux")
def test_lora_under_fsdp_saves_the_adapter_and_the_merged_model(tmp_path):
    out = _train(tmp_path, "peft.enabled=true", "peft.r=4", "grpo.max_steps=2")

    shards = json.loads((out / "fsdp_shards.json").read_text())
    assert all(abs(r["local_numel"] / shards["full_numel"] - 0.5) < 0.02 for r in shards["ranks"])
    from safetensors.torch import load_file

    adapter = load_file(str(out / "adapter" / "adapter_model.safetensors"))
    lora_b = [v for k, v in adapter.items() if "lora_B" in k]
    assert lora_b and all(v.shape[1] == 4 for v in lora_b)  # whole matrices, not shards
    assert any(float(v.abs().sum()) > 0 for v in lora_b)  # trained: lora_B starts at zero
    _reload_and_generate(out)  # the adapter merged into the base
