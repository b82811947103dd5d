"""generation.speed: which path the worker picks, and that it changes sampling only.

The fast path (a static KV cache, compiled on GPUs) reaches TRL only through
``trainer.generation_config``; with LoRA the policy also samples from a merged copy of its
weights (grpo_host.training.sampling_copy). These tests sample one batch of completions, then
compute the GRPO loss, the per-token log-probs and the gradients (the adapters' for LoRA) of
that same batch through a trainer on TRL's default and through one on the fast path (same
weights): they must be equal. Greedy completions with and without the fast path must be the
same tokens, also after the adapters change (the copy is refreshed before every generate). On
CPU transformers does not compile, so the static cache alone is exercised here; the compiled
decode step is measured on the GPU (bench/gpu.py, bench/gpu_sampling.py).
"""

from __future__ import annotations

import copy

import pytest

from grpo_host.config import ConfigError, load_config
from grpo_host.training.generation import apply_generation_speed, generation_choice


def _config(**sets):
    from grpo_host.cli.common import parse_sets

    return load_config(None, parse_sets([f"{k}={v}" for k, v in sets.items()]) if sets else None)


def length_reward(completions, **kwargs):
    return [-abs(len(c[-1]["content"] if isinstance(c, list) else c) - 20) / 20 for c in completions]


def _grpo_trainer(tmp_path_factory, folder, model, built, train_ds, *, beta):
    """A TRL GRPOTrainer on the built model's tokenizer (and LoRA config, when it has one)."""
    from trl import GRPOConfig, GRPOTrainer

    args = GRPOConfig(output_dir=str(tmp_path_factory.mktemp(folder)), per_device_train_batch_size=8,
                      num_generations=4, max_completion_length=24, beta=beta, use_cpu=True,
                      report_to="none", disable_tqdm=True, save_strategy="no", logging_steps=1, seed=0)
    return GRPOTrainer(model=model, reward_funcs=[length_reward], args=args, train_dataset=train_ds,
                       processing_class=built.tokenizer, peft_config=built.peft_config)


def _prompt_ids(tok, rows):
    """The token ids of one prompt per group (rows come in groups of 4), as TRL tokenizes them."""
    return [tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True, return_dict=False)
            if isinstance(r["prompt"], list) else tok(r["prompt"])["input_ids"] for r in rows[::4]]


# -- the choice ----------------------------------------------------------------------------------
def test_auto_is_static_compile_on_a_gpu_and_trl_default_on_cpu():
    config = _config()
    assert generation_choice(config, cuda=True, sharded=False)[0] == "static-compile"
    path, why = generation_choice(config, cuda=False, sharded=False)
    assert path == "off" and "CPU" in why


def test_auto_takes_the_fast_path_for_lora_and_qlora_on_a_gpu():
    for sets, kind in (({"peft.enabled": "true"}, "(LoRA)"),
                       ({"peft.enabled": "true", "quantization.load_in_4bit": "true", "warmup.steps": "0"}, "(QLoRA)")):
        path, why = generation_choice(_config(**sets), cuda=True, sharded=False)
        assert path == "static-compile" and kind in why
        assert generation_choice(_config(**sets), cuda=False, sharded=False)[0] == "off"
        assert generation_choice(_config(**sets), cuda=True, sharded=True)[0] == "off"


@pytest.mark.parametrize("sets, reason", [
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


def test_explicit_speed_with_vllm_is_refused_when_the_config_is_loaded():
    """A config-only rule: refused by the config, before any model (tests/test_config_rules.py
    runs it through the CLI)."""
    with pytest.raises(ConfigError, match=r"generation.speed=static and grpo.use_vllm both choose how to generate"):
        _config(**{"generation.speed": "static", "grpo.use_vllm": "true"})
    assert generation_choice(_config(**{"generation.speed": "off", "grpo.use_vllm": "true"}), cuda=True,
                             sharded=False)[0] == "off"


def test_unknown_speed_is_refused():
    with pytest.raises(ConfigError, match="generation.speed"):
        _config(**{"generation.speed": "fast"})


# -- the math ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def trainers(tmp_path_factory):
    """Two GRPO trainers on the tiny built-in model with the same weights: TRL's default
    generation, and generation.speed=static."""
    import torch

    from grpo_host.training.data import load_datasets
    from grpo_host.training.model import build_model

    torch.set_num_threads(1)
    config = _config(**{"generation.speed": "static"})
    built = build_model(config)
    train_ds, _ = load_datasets(config.data, built.tokenizer)
    default = _grpo_trainer(tmp_path_factory, "default", built.model, built, train_ds, beta=0.04)
    fast = _grpo_trainer(tmp_path_factory, "fast", copy.deepcopy(built.model), built, train_ds, beta=0.04)
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


def test_the_static_cache_is_sized_once_for_the_longest_prompt_of_the_data(trainers):
    """Sized per call, a longer prompt later would reallocate the cache and recompile the decode step."""
    default, fast, _ = trainers
    tok = fast.processing_class
    longest = max(len(tok.apply_chat_template(r["prompt"], add_generation_prompt=True, tokenize=True,
                                              return_dict=False)) for r in fast.train_dataset.select(range(min(2048, len(fast.train_dataset)))))
    length = fast.generation_config.max_cache_len
    assert length % 64 == 0 and longest + 24 <= length < longest + 24 + 64, (length, longest)
    assert getattr(default.generation_config, "max_cache_len", None) is None


def test_greedy_completions_are_the_same_tokens_with_and_without_the_static_cache(trainers):
    import torch

    default, fast, rows = trainers
    prompt_ids = _prompt_ids(default.processing_class, rows)
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


# -- LoRA ----------------------------------------------------------------------------------------
def _lora_trainers(tmp_path_factory, sampling: str | None, **peft_sets):
    """Two GRPO trainers on the tiny model with LoRA (same base and adapter weights, adapters
    moved off their zero start): TRL's default, and generation.speed=static with ``sampling``."""
    import os

    import torch

    from grpo_host.training.data import load_datasets
    from grpo_host.training.model import build_model

    torch.set_num_threads(1)
    config = _config(**{"generation.speed": "static", "peft.enabled": "true", "peft.r": "4", "peft.alpha": "8",
                        **peft_sets})
    built = build_model(config)
    train_ds, _ = load_datasets(config.data, built.tokenizer)
    base = copy.deepcopy(built.model)
    default = _grpo_trainer(tmp_path_factory, "lora-default", built.model, built, train_ds, beta=0.0)
    fast = _grpo_trainer(tmp_path_factory, "lora-fast", base, built, train_ds, beta=0.0)
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():  # as after some training: zero B would make every adapter a no-op
        for name, p in default.model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
    fast.model.load_state_dict(default.model.state_dict())
    off = copy.deepcopy(config)
    off.generation.speed = "off"
    assert apply_generation_speed(default, off, built) == {"path": "off", "why": "set in the config"}
    saved = os.environ.pop("GRPO_HOST_LORA_SAMPLING", None)
    if sampling:
        os.environ["GRPO_HOST_LORA_SAMPLING"] = sampling
    try:
        choice = apply_generation_speed(fast, config, built)
    finally:
        os.environ.pop("GRPO_HOST_LORA_SAMPLING", None)
        if saved is not None:
            os.environ["GRPO_HOST_LORA_SAMPLING"] = saved
    rows = [train_ds[i] for i in (0, 1) for _ in range(4)]
    return default, fast, rows, choice


@pytest.fixture(scope="module")
def lora_merged(tmp_path_factory):
    return _lora_trainers(tmp_path_factory, None)


@pytest.fixture(scope="module")
def lora_adapters(tmp_path_factory):
    return _lora_trainers(tmp_path_factory, "adapters")


def _greedy(trainer, rows):
    import torch

    prompt_ids = _prompt_ids(trainer.processing_class, rows)
    saved = trainer.generation_config.do_sample
    trainer.generation_config.do_sample = False
    trainer.model.eval()  # no LoRA dropout: greedy tokens are then a function of the weights alone
    try:
        torch.manual_seed(0)
        ids, _ = trainer._generate_single_turn(prompt_ids, None, {}, 1)
    finally:
        trainer.generation_config.do_sample = saved
    return ids


@pytest.mark.slow
def test_lora_samples_from_a_merged_copy_outside_the_trained_model(lora_merged):
    default, fast, _, choice = lora_merged
    assert choice["path"] == "static" and choice["sampling"] == "merged copy", choice
    sampler = fast.model.__dict__["_grpo_host_sampler"]
    assert fast.model.generate == sampler.generate
    assert "generate" not in default.model.__dict__
    # Not part of what is trained or saved: the state dicts have the same keys, no copy's weights.
    assert fast.model.state_dict().keys() == default.model.state_dict().keys()
    assert not any(p is q for p in sampler.model.parameters() for q in fast.model.parameters())
    assert all(not p.requires_grad for p in sampler.model.parameters())


@pytest.mark.slow
@pytest.mark.parametrize("which", ["lora_merged", "lora_adapters"])
def test_lora_greedy_tokens_are_the_same_with_and_without_the_fast_path(which, request):
    import torch

    default, fast, rows, choice = request.getfixturevalue(which)
    assert choice["sampling"] == ("merged copy" if which == "lora_merged" else "adapters")
    sampler = fast.model.__dict__.get("_grpo_host_sampler")
    refreshes = sampler.refreshes if sampler else 0
    a, b = _greedy(default, rows), _greedy(fast, rows)
    assert a == b and sum(len(c) for c in a) > 0
    if sampler:
        assert sampler.refreshes == refreshes + 1, "the copy was not refreshed before generating"
        assert getattr(sampler.model, "_previous_max_cache_length", None), "the copy did not use the static cache"
    else:
        assert getattr(fast.model.get_base_model(), "_previous_max_cache_length", None) or \
            getattr(fast.model, "_previous_max_cache_length", None), "the static cache was not used"
    # The adapters change (as after an optimizer step): the fast path follows them.
    before = a
    with torch.no_grad():
        for trainer in (default, fast):
            for name, p in trainer.model.named_parameters():
                if "lora_B" in name:
                    p.mul_(-1.5)
    a, b = _greedy(default, rows), _greedy(fast, rows)
    assert a == b
    assert a != before, "changing the adapters changed no greedy token: the test cannot see a stale copy"
    with torch.no_grad():  # put them back for the other tests of the module
        for trainer in (default, fast):
            for name, p in trainer.model.named_parameters():
                if "lora_B" in name:
                    p.div_(-1.5)


@pytest.mark.slow
def test_lora_loss_log_probs_and_adapter_gradients_are_equal_with_and_without_the_fast_path(lora_merged):
    import torch

    default, fast, rows, _ = lora_merged
    torch.manual_seed(0)
    fast.model.train()
    batch = fast._generate_and_score_completions(rows)  # sampled once, from the merged copy
    assert batch["completion_mask"].sum() > 0
    results = []
    for trainer in (default, fast):
        model = trainer.model
        model.eval()  # no dropout: both forwards see the same weights and nothing random
        model.zero_grad()
        loss = trainer._compute_loss(model, batch)
        loss.backward()
        ids = torch.cat([batch["prompt_ids"], batch["completion_ids"]], dim=1)
        mask = torch.cat([batch["prompt_mask"], batch["completion_mask"]], dim=1)
        with torch.no_grad():
            logps, _, _ = trainer._get_per_token_logps_and_entropies(model, ids, mask, batch["completion_ids"].size(1))
        named = [(n, p.grad) for n, p in model.named_parameters() if p.grad is not None]
        assert named and all("lora_" in n for n, _ in named), "only the adapters train"
        grads = torch.cat([g.flatten() for _, g in named])
        assert grads.abs().sum() > 0
        results.append((loss.detach(), logps, grads))
    (loss_a, logps_a, grads_a), (loss_b, logps_b, grads_b) = results
    assert torch.isfinite(loss_a)
    torch.testing.assert_close(logps_a, logps_b, rtol=0, atol=0)
    torch.testing.assert_close(loss_a, loss_b, rtol=0, atol=0)
    torch.testing.assert_close(grads_a, grads_b, rtol=1e-6, atol=1e-7)


@pytest.mark.slow
def test_lora_the_merged_copy_holds_base_plus_the_adapters_deltas(lora_merged):
    import torch

    _, fast, _, _ = lora_merged
    sampler = fast.model.__dict__["_grpo_host_sampler"]
    sampler.refresh()
    copy_params = dict(sampler.model.named_parameters())
    checked = 0
    for name, module in fast.model.get_base_model().named_modules():
        if hasattr(module, "lora_A") and "default" in module.lora_A:
            expected = module.get_base_layer().weight + module.get_delta_weight("default")
            torch.testing.assert_close(copy_params[name + ".weight"], expected)
            assert not torch.equal(expected, module.get_base_layer().weight)
            checked += 1
    assert checked >= 2


@pytest.mark.slow
def test_lora_sampling_falls_back_to_the_adapters_where_a_copy_cannot_serve(tmp_path_factory, monkeypatch):
    """DoRA cannot be merged this way; a copy larger than half the free GPU memory is not taken;
    a bad override is refused."""
    import torch

    from grpo_host.training import generation

    _, fast, _, choice = _lora_trainers(tmp_path_factory, None, **{"peft.r": "2"})
    assert choice["sampling"] == "merged copy"
    fast.model.__dict__.pop("generate")
    config = _config(**{"peft.enabled": "true"})
    built = type("B", (), {"quantized": False, "dtype": "float32", "peft_config": object()})()
    monkeypatch.setattr(generation, "cuda", lambda: True)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda: (1024, 2**34))  # 1 KiB free
    sampling, why = generation.lora_sampling(fast, config, built)
    assert sampling == "adapters" and "over half" in why and "generate" not in fast.model.__dict__
    monkeypatch.setenv("GRPO_HOST_LORA_SAMPLING", "fastest")
    with pytest.raises(ConfigError, match="merged or adapters"):
        generation.lora_sampling(fast, config, built)
    monkeypatch.delenv("GRPO_HOST_LORA_SAMPLING")
    fast.model.peft_config["default"].use_dora = True
    sampling, why = generation.lora_sampling(fast, config, built)
    assert sampling == "adapters" and "DoRA" in why
