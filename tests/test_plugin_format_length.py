"""The first-party format and length plugins, beyond their golden cases.

Golden files pin each reward's scores; these tests pin what a golden case cannot show: that
params reach the rewards through the host, that the CLI lists and runs them, that the trainer's
token ids reach `length` and `overlong`, that hostile inputs cost linear time, and that the
wheels carry the golden files and import nothing heavy.
"""

from __future__ import annotations

import itertools
import json
import time

import pytest

import grpo_host
from grpo_host.errors import RewardParamError
from grpo_host.plugins.manager import get_plugin_manager
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples

from .conftest import run_cli

pytest.importorskip("grpo_reward_format", reason="install plugins/grpo-reward-format (pip install -e)")
pytest.importorskip("grpo_reward_length", reason="install plugins/grpo-reward-length (pip install -e)")

from grpo_reward_format import format_reward, tag_count  # noqa: E402
from grpo_reward_length import length, overlong, repetition  # noqa: E402

TAGS = ("<think>", "</think>", "<answer>", "</answer>")


def score_inline(name: str, completions: list, params: dict | None = None, **columns) -> list:
    """Score through the host (params bound and validated), in this process."""
    bound = bind_reward(get_plugin_manager().get_reward(name), params or {})
    samples = prepare_samples(completions, {k: v for k, v in columns.items()})
    with RewardRuntime([bound], workers=0) as runtime:
        return runtime.score(samples)[bound.name]


# -- format and tag-count --------------------------------------------------------------------
def test_format_details_name_the_failed_rule():
    assert format_reward("<think>a</think><answer>b</answer>").details["rule"] == "ok"
    assert "text after </answer>" in format_reward("<think>a</think><answer>b</answer> ok?").details["rule"]
    assert format_reward("<think> </think><answer>b</answer>").details["rule"] == "empty <think> block"
    assert "appears 2 times" in format_reward("<think><think>a</think></think><answer>b</answer>").details["rule"]


def test_tag_params_change_what_counts_as_a_tag_through_the_host():
    text = "<reasoning>r</reasoning>\n<final>4</final>"
    custom = {"think_tag": "reasoning", "answer_tag": "final"}
    assert [r.score for r in score_inline("format", [text])] == [0.0]
    assert [r.score for r in score_inline("format", [text], custom)] == [1.0]
    assert [r.score for r in score_inline("tag-count", [text], custom)] == [1.0]
    # Bad tag names are the user's mistake: an `error` outcome that says what to fix, not a 0.
    bad = score_inline("format", [text], {"think_tag": "</x>"})[0]
    assert bad.outcome == "error" and "tag name" in bad.details["error"]


def test_tag_count_is_one_only_for_the_four_tags_in_order_and_never_drops_when_a_tag_is_added():
    # Every arrangement of distinct tags (65 of them): a score in quarters, 1.0 only for the
    # required order, and inserting a missing tag anywhere never lowers it.
    for size in range(len(TAGS) + 1):
        for tags in itertools.permutations(TAGS, size):
            text = "x".join(tags)
            score = tag_count(text).value
            assert score * 4 == int(score * 4) and 0.0 <= score <= 1.0
            assert (score == 1.0) == (tags == TAGS), tags
            for tag in set(TAGS) - set(tags):
                for at in range(len(tags) + 1):
                    longer = "x".join((*tags[:at], tag, *tags[at:]))
                    assert tag_count(longer).value >= score, (tags, tag, at)


def test_format_and_tag_count_accept_chat_messages_directly():
    messages = [{"role": "assistant", "content": "<think>a</think><answer>b</answer>"}]
    assert format_reward(messages).value == 1.0
    assert tag_count(messages).value == 1.0


@pytest.mark.parametrize(
    "hostile",
    [
        "<think>" * 200_000,
        "<think>a</think>" + " " * 1_000_000 + "<answer>b</answer>x",
        "<think>" + "</think><answer>" * 60_000 + "</answer>",
        "<think" * 200_000 + ">",
        "<think>" + "a" * 1_000_000 + "</think><answer>b</answer>",
    ],
    ids=["open-tags", "megabyte-of-space", "alternating-tags", "unterminated-tags", "megabyte-reasoning"],
)
def test_hostile_megabyte_completions_cost_linear_time(hostile):
    start = time.perf_counter()
    scores = (format_reward(hostile).value, tag_count(hostile).value, repetition(hostile).value,
              length(hostile, unit="tokens").value, overlong(hostile).value)
    assert time.perf_counter() - start < 3.0
    assert all(isinstance(s, float) for s in scores)
    expect_ok = hostile.endswith("</think><answer>b</answer>")
    assert scores[0] == (1.0 if expect_ok else 0.0)


# -- length, overlong, repetition ------------------------------------------------------------
def test_length_unit_and_target_params_change_the_score():
    text = "one two three four five, six!"  # 29 chars; 8 tokens by the approximation
    assert score_inline("length", [text], {"target": 29})[0].score == 1.0
    assert score_inline("length", [text], {"target": 8, "unit": "tokens"})[0].score == 1.0
    assert score_inline("length", [text], {"target": 8})[0].score == 0.0
    # An unknown unit is refused when the reward is bound, naming the param.
    with pytest.raises(RewardParamError, match="unit"):
        bind_reward(get_plugin_manager().get_reward("length"), {"unit": "words"})


def test_token_rewards_prefer_completion_ids_over_the_approximation():
    ids = [list(range(16)), None]
    rows = score_inline("overlong", ["a", "a b c d e f g h i j k l m n o p"],
                        {"max_length": 20, "buffer": 5}, completion_ids=ids)
    assert [r.score for r in rows] == [-0.2, -0.2]
    assert [r.details["counted_by"] for r in rows] == ["completion_ids", "approximation"]


def test_trl_passes_completion_ids_through_to_rewards_that_ask_for_them():
    funcs = grpo_host.load_rewards(
        [("length", {"target": 4, "unit": "tokens"}), ("overlong", {"max_length": 8, "buffer": 4}), "format"],
        workers=0,
    )
    completions = [[{"role": "assistant", "content": "short"}]] * 2
    prompts = [[{"role": "user", "content": "q"}]] * 2
    completion_ids = [[5, 6, 7, 8], [5, 6, 7, 8, 9, 10, 11, 12]]
    kwargs = dict(prompts=prompts, completions=completions, completion_ids=completion_ids, trainer_state=None)
    assert funcs[0](**kwargs) == [1.0, 0.0]
    assert funcs[1](**kwargs) == [0.0, -1.0]
    assert funcs[2](**kwargs) == [0.0, 0.0]
    funcs[0].reward_set.close()


def test_repetition_params_and_scale():
    loop = "I will check again. " * 50
    assert repetition(loop).value == pytest.approx(-(1 - 4 / 198))
    assert repetition(loop, max_penalty=-0.5).value == pytest.approx(-0.5 * (1 - 4 / 198))
    # n=1 sees four distinct words among 200; n=8 still sees the loop.
    assert repetition(loop, n=1).value == pytest.approx(-(1 - 4 / 200))
    assert repetition(loop, n=8).value == pytest.approx(-(1 - 4 / 193))
    assert repetition("no loop in this sentence at all").value == 0.0


# -- the host's view: CLI, wheels, import cost -----------------------------------------------
def test_rewards_json_lists_both_plugins_with_params():
    result = run_cli("rewards", "--json")
    assert result.returncode == 0, result.stderr
    rewards = {r["name"]: r for r in json.loads(result.stdout)["rewards"]}
    expected = {
        "format": ("grpo-reward-format", {"think_tag": "think", "answer_tag": "answer"}),
        "tag-count": ("grpo-reward-format", {"think_tag": "think", "answer_tag": "answer"}),
        "length": ("grpo-reward-length", {"target": 200, "unit": "chars"}),
        "overlong": ("grpo-reward-length", {"max_length": 1024, "buffer": 256}),
        "repetition": ("grpo-reward-length", {"n": 3, "max_penalty": -1.0}),
    }
    for name, (plugin, params) in expected.items():
        assert rewards[name]["plugin"] == plugin
        assert {p["name"]: p["default"] for p in rewards[name]["params"]} == params
        assert "completion_ids" not in {p["name"] for p in rewards[name]["params"]}


def test_try_reward_scores_format_and_takes_set_params():
    result = run_cli("try-reward", "format,length", "--json", "--workers", "1", "--set", "length.target=34",
                     "--completion", "<think>a</think><answer>b</answer>")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)
    assert row["rewards"]["format"]["score"] == 1.0
    assert row["rewards"]["length"]["score"] == 1.0


@pytest.mark.slow
def test_overlong_counts_real_trainer_token_ids(tmp_path):
    """In TRL's GRPOTrainer, completions cut at max_completion_length are counted from their ids."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from grpo_host.training.builtin import arithmetic_rows, ensure_tiny_qwen2

    model_dir = ensure_tiny_qwen2(root=tmp_path / "cache")
    rewards = grpo_host.load_rewards([("overlong", {"max_length": 12, "buffer": 4}), "format"], workers=1)
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=12, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
    )
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(model_dir), reward_funcs=rewards, args=args,
                          processing_class=AutoTokenizer.from_pretrained(model_dir),
                          train_dataset=Dataset.from_list(arithmetic_rows(8, seed=1)))
    reward_set = rewards[0].reward_set
    scored = []
    score = reward_set.runtime.score

    def spy(samples):
        results = score(samples)
        scored.extend(zip(samples, results["overlong"], strict=True))
        return results

    reward_set.runtime.score = spy
    try:
        trainer.train()
    finally:
        reward_set.close()
    assert len(scored) == 4
    for sample, result in scored:
        ids = sample["completion_ids"]
        assert result.details == {"tokens": len(ids), "counted_by": "completion_ids", "punished_above": 8}
        assert result.score == pytest.approx(max(-1.0, min(0.0, (8 - len(ids)) / 4)))
