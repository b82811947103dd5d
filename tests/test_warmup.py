"""The warm-up stage: refuses a template over missing columns, and is deterministic and teaches."""

from __future__ import annotations

import pytest

from grpo_host.config import ConfigError, load_config


def _built(tmp_path, monkeypatch, **sets):
    monkeypatch.setenv("GRPO_HOST_CACHE", str(tmp_path / "cache"))
    from grpo_host.training.data import load_datasets
    from grpo_host.training.model import build_model

    config = load_config(None, {"warmup": {"steps": 8, "batch_size": 8, **sets}}, output_dir=str(tmp_path / "out"))
    built = build_model(config)
    train, _ = load_datasets(config.data, built.tokenizer)
    return config, built, train


def test_template_over_a_missing_column_says_what_to_do(tmp_path, monkeypatch):
    from grpo_host.training.warmup import warm_up

    config, built, train = _built(tmp_path, monkeypatch, template="<think>{solution}</think> <answer>{answer}</answer>")
    with pytest.raises(ConfigError, match=r"column\(s\) solution.*warmup.steps: 0"):
        warm_up(config, built, train)
    config, built, train = _built(tmp_path, monkeypatch, template="<think>{working</think>")
    with pytest.raises(ConfigError, match="not a format string"):
        warm_up(config, built, train)


@pytest.mark.slow
def test_warm_up_lowers_the_loss_the_same_way_twice(tmp_path, monkeypatch):
    from grpo_host.training.warmup import WARMUP_FILE, warm_up

    results = []
    for _ in range(2):
        config, built, train = _built(tmp_path, monkeypatch)
        results.append(warm_up(config, built, train, output_dir=tmp_path))
    assert results[0]["loss_last"] < results[0]["loss_first"]
    assert results[0]["loss_last"] == results[1]["loss_last"]  # seeded: the same weights
    assert (tmp_path / WARMUP_FILE).is_file()
    config, built, train = _built(tmp_path, monkeypatch, steps=0)
    assert warm_up(config, built, train, output_dir=tmp_path) is None
    assert not (tmp_path / WARMUP_FILE).exists()  # a stale summary of an earlier run goes
