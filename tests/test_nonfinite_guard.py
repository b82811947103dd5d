"""The run stops with a readable error at the first non-finite gradient norm or loss.

On the GPU a NaN gradient at step 9 turned into 'CUDA error: device-side assert triggered' inside
generate at step 10 (bench/README.md, issue 22); the guard must name the cause before that."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest

pytest.importorskip("transformers")

from grpo_host.training.callbacks import NonFiniteGuard, NonFiniteTrainingError  # noqa: E402


def _log(logs, fp16=False, step=9):
    NonFiniteGuard().on_log(SimpleNamespace(fp16=fp16), SimpleNamespace(global_step=step), None, logs=logs)


@pytest.mark.parametrize("key", ["grad_norm", "loss"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_stops_with_what_to_change(key, bad):
    with pytest.raises(NonFiniteTrainingError) as err:
        _log({key: bad, "reward": 0.5})
    text = str(err.value)
    assert f"step 9: {key} is" in text
    assert "grpo.learning_rate" in text and "attn_implementation" in text and "device-side assert" in text


def test_finite_and_missing_values_pass():
    _log({"grad_norm": 0.25, "loss": -0.01, "reward": 0.5})
    _log({"reward": 0.5})  # an eval or summary log without them
    _log({"grad_norm": None})  # already cleaned elsewhere: not a float


def test_fp16_scaler_skips_are_left_to_the_scaler():
    _log({"grad_norm": math.inf}, fp16=True)


def test_the_worker_installs_the_guard_after_the_recorder():
    import inspect

    from grpo_host.training import trainer

    source = "".join(inspect.getsource(trainer.build_trainer).split())  # however the call is wrapped
    assert source.index("recorder,*observability_callbacks(") < source.index("NonFiniteGuard()")
