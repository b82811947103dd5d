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
    with pytest.raises(ConfigError, match=r"warmup.template: .*not a format string.*in braces"):
        load_config(None, {"warmup": {"template": "<think>{working</think>"}})  # before any model


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


def test_wrong_answers_take_the_named_column_or_another_rows(tmp_path, monkeypatch):
    from grpo_host.training.warmup import warmup_examples

    template = "<think>{expression} = {answer}</think> <answer>{answer}</answer>"
    config, built, train = _built(tmp_path, monkeypatch, template=template, wrong_answers=1.0, wrong_column="near_miss")
    decode = built.tokenizer.decode
    targets = [decode(t, skip_special_tokens=True) for _, t in warmup_examples(config, built.tokenizer, train)]
    rows = list(train)
    assert targets == [f"<think>{r['expression']} = {r['near_miss']}</think> <answer>{r['near_miss']}</answer>"
                       for r in rows]
    assert all(int(r["near_miss"]) == int(r["answer"]) + 1 for r in rows)
    config, built, train = _built(tmp_path, monkeypatch, template=template, wrong_answers=0.5)
    examples = warmup_examples(config, built.tokenizer, train)
    answers = [decode(t, skip_special_tokens=True).split("<answer>")[1].split("<")[0] for _, t in examples]
    wrong = sum(a != r["answer"] for a, r in zip(answers, rows, strict=True))
    # Half replaced by another row's answer, of which some happen to be right: well above none, below half.
    assert 0.3 * len(rows) < wrong < 0.5 * len(rows), wrong
    assert examples == warmup_examples(config, built.tokenizer, train)  # seeded: the same targets each time
    config, built, train = _built(tmp_path, monkeypatch, wrong_answers=0.5, wrong_column="guess")
    with pytest.raises(ConfigError, match=r"warmup.wrong_column 'guess' is not a column.*wrong_answers: 0"):
        warmup_examples(config, built.tokenizer, train)
    with pytest.raises(ConfigError):
        load_config(None, {"warmup": {"wrong_answers": 1.5}})
