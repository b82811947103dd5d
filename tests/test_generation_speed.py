"""generation.speed: which path the worker picks, and that it changes sampling only.

The fast path (a static KV cache, compiled on GPUs) reaches TRL only through
``trainer.generation_config``. These tests sample one batch of completions, then compute the
GRPO loss and the per-token log-probs of that same batch through a trainer on TRL's default and
through one on the static cache (same weights): they must be equal. Greedy completions with and
without the static cache must be the same tokens. On CPU transformers does not compile, so the
static cache alone is exercised here; the compiled decode step is measured on the GPU
(bench/gpu.py).
"""

from __future__ import annotations

import copy

import pytest

from grpo_host.config import ConfigError, load_config
from grpo_host.training.worker import apply_generation_speed, generation_choice


def _config(**sets):
    from grpo_host.cli.common import parse_sets

    return load_config(None, parse_sets([f"{k}={v}" for k, v in sets.items()]) if sets else None)


# -- the choice ----------------------------------------------------------------------------------
def test_auto_is_static_compile_on_a_gpu_and_trl_default_on_cpu():
    config = _config()
    assert generation_choice(config, cuda=True, sharded=False)[0] == "static-compile"
    path, why = generation_choice(config, cuda=False, sharded=False)
    assert path == "off" and "CPU" in why


@pytest.mark.parametrize("sets, reason", [
    ({"peft.enabled": "true"}, "LoRA"),
    ({"grpo.use_vllm": "true"}, "use_vllm"),
    ({"grpo.cache_implementation": "dynamic"}, "cache_implementation"),
])
def test_auto_steps_aside(sets, reason):
    path, why = generation_choice(_config(**sets), cuda=True, sharded=False)
    assert path == "off" and reason in why


def test_auto_steps_aside_for_sharded_weights_and_explicit_choices_win():
    assert generation_choice(_config(), cuda=True, sharded=True)[0] == "off"
    assert generation_choice(_config(**{"generation.speed": "static-compile"}), cuda=True, sharded=True)[0] == \
        "static-compile"
    assert generation_choice(_config(**{"generation.speed": "off"}), cuda=True, sharded=False)[0] == "off"
    path, why = generation_choice(_config(**{"generation.speed": "static-compile"}), cuda=False, sharded=False)
    assert path == "static-compile" and "static cache alone" in why


def test_explicit_speed_with_vllm_is_an_error():
    with pytest.raises(ConfigError, match="use_vllm"):
        generation_choice(_config(**{"generation.speed": "static", "grpo.use_vllm": "true"}), cuda=True,
                          sharded=False)


def test_unknown_speed_is_refused():
    with pytest.raises(ConfigError, match="generation.speed"):
        _config(**{"generation.speed": "fast"})


# -- the math ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    """Two GRPO trainers on the tiny built-in model with the same weights: TRL's default
    generation, and generation.speed=static."""
    import torch
    from trl import GRPOConfig, GRPOTrainer

    from grpo_host.training.data import load_datasets
    from grpo_host.training.model import build_model

    torch.set_num_threads(1)
    config = _config(**{"generation.speed": "static"})
    built = build_model(config)
    train_ds, _ = load_datasets(config.data, built.tokenizer)

    def length_reward(completions, **kwargs):
        return [-abs(len(c[-1]["content"] if isinstance(c, list) else c) - 20) / 20 for c in completions]

    def make(model, folder):
        args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp(folder)), per_device_train_batch_size=8,
                          num_generations=4, max_completion_length=24, beta=0.04, use_cpu=True,
                          report_to="none", disable_tqdm=True, save_strategy="no", logging_steps=1, seed=0)
        return GRPOTrainer(model=model, reward_funcs=[length_reward], args=args, train_dataset=train_ds,
                           processing_class=built.tokenizer)

    default = make(built.model, "default")
    fast = make(copy.deepcopy(built.model), "fast")
    fast_off = copy.deepcopy(config)
    fast_off.generation.speed = "off"
    assert apply_generation_speed(default, fast_off, built)["path"] == "off"
    assert apply_generation_speed(fast, config, built)["path"] == "static"
    rows = [train_ds[i] for i in (0, 1) for _ in range(4)]  # 2 prompts x 4 generations, as TRL's sampler
    return default, fast, rows


def test_the_fast_path_sets_a_static_cache_and_the_default_does_not(trainers):
    default, fast, _ = trainers
    assert fast.generation_config.cache_implementation == "static"
    assert default.generation_config.cache_implementation is None
    assert default.generation_config.disable_compile is True  # TRL's own setting, left alone


def test_greedy_completions_are_the_same_tokens_with_and_without_the_static_cache(trainers):
    import torch

    default, fast, rows = trainers
    tok = default.processing_class
    prompt_ids = [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
                  if isinstance(r["prompt"], list) else tok(r["prompt"])["input_ids"] for r in rows[::4]]
    outs = []
    for trainer in (default, fast):
        saved = trainer.generation_config.do_sample
        trainer.generation_config.do_sample = False
        try:
            torch.manual_seed(0)
            ids, _ = trainer._generate_single_turn(prompt_ids, None, {}, 1)
        finally:
            trainer.generation_config.do_sample = saved
        outs.append(ids)
    assert getattr(fast.model, "_previous_max_cache_length", None), "the static cache was not used"
    assert getattr(default.model, "_previous_max_cache_length", None) is None
    assert outs[0] == outs[1]
    assert sum(len(c) for c in outs[0]) > 0


def test_loss_and_log_probs_of_one_sampled_batch_are_equal_with_and_without_the_fast_path(trainers):
    import torch

    default, fast, rows = trainers
    torch.manual_seed(0)
    batch = fast._generate_and_score_completions(rows)  # sampled once, through the static cache
    assert batch["completion_mask"].sum() > 0
    results = []
    for trainer in (default, fast):
        model = trainer.model
        model.zero_grad()
        loss = trainer._compute_loss(model, batch)
        loss.backward()
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        with torch.no_grad():
            logps, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, batch["completion_ids"].size(1))
        grads = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
        results.append((loss.detach(), logps, grads))
    (loss_a, logps_a, grads_a), (loss_b, logps_b, grads_b) = results
    assert torch.isfinite(loss_a)
    torch.testing.assert_close(logps_a, logps_b, rtol=0, atol=0)
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=0)
    torch.testing.assert_close(grads_a, grads_b, rtol=1e-6, atol=1e-7)
