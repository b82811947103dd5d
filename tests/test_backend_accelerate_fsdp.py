"""An accelerate FSDP config that accelerate would not apply (it shards on GPUs only) is refused,
rather than training unsharded while the user believes in FSDP."""

from __future__ import annotations

import subprocess
import sys

import pytest

FSDP_ON_CPU = """\
compute_environment: LOCAL_MACHINE
distributed_type: FSDP
fsdp_config:
  fsdp_version: 2
  fsdp_auto_wrap_policy: TRANSFORMER_BASED_WRAP
  fsdp_transformer_layer_cls_to_wrap: Qwen2DecoderLayer
  fsdp_state_dict_type: FULL_STATE_DICT
num_processes: 2
num_machines: 1
machine_rank: 0
use_cpu: true
mixed_precision: 'no'
"""


@pytest.mark.slow
def test_fsdp_config_on_cpu_is_refused_not_run_unsharded(tmp_path):
    pytest.importorskip("accelerate")
    config = tmp_path / "fsdp.yaml"
    config.write_text(FSDP_ON_CPU)
    result = subprocess.run(
        [sys.executable, "-m", "grpo_host", "train", "--output-dir", str(tmp_path / "out"),
         "--set", "grpo.max_steps=2", "--set", f"backend.params.config_file={config}",
         "--set", "backend.params.num_processes=2"],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "asks for FSDP, but accelerate did not enable it here" in output
    assert "--backend torchrun-fsdp" in output
    assert not (tmp_path / "out" / "metrics.jsonl").exists() or not (tmp_path / "out" / "metrics.jsonl").read_text()
