"""The same rewards, unchanged, inside TRL's real GRPOTrainer through `load_rewards`."""

from __future__ import annotations

import pytest

from .conftest import write_distribution

REWARDS = """
    import grpo_host

    @grpo_host.reward(name="short")
    def short(completion: str, target: int = 8, **columns) -> float:
        '''Closeness to a target length in characters, in [-1, 0].'''
        return -min(1.0, abs(len(completion) - target) / target)

    @grpo_host.reward(name="echo-answer")
    def echo_answer(completion: str, answer: str, **columns):
        '''Not applicable for half the rows; 1 when the answer appears in the completion.'''
        if int(answer) % 2:
            return None
        return float(answer in completion)
"""


@pytest.mark.slow
def test_load_rewards_drives_a_real_grpo_trainer(plugin_dir, tmp_path):
    pytest.importorskip("trl")
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    import grpo_host
    from grpo_host.plugins.manager import PluginManager
    from grpo_host.training.builtin import arithmetic_rows, ensure_tiny_qwen2

    write_distribution(plugin_dir, "grpo-reward-trltest", {"trltest_plugin": REWARDS}, {"t": "trltest_plugin"})
    model_dir = ensure_tiny_qwen2(root=tmp_path / "cache")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir)
    dataset = Dataset.from_list(arithmetic_rows(32, seed=1))

    rewards = grpo_host.load_rewards(
        ["short", {"name": "echo-answer", "weight": 0.5}], workers=2, manager=PluginManager()  # sees plugin_dir
    )
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=3, per_device_train_batch_size=4, num_generations=4,
        max_completion_length=12, logging_steps=1, report_to=[], use_cpu=True, save_strategy="no",
        reward_weights=[r.weight for r in rewards], learning_rate=1e-3,
    )
    trainer = GRPOTrainer(model=model, processing_class=tokenizer, reward_funcs=rewards, args=args,
                          train_dataset=dataset)
    trainer.train()
    reward_set = rewards[0].reward_set
    try:
        assert trainer.state.global_step == 3
        logged = [h for h in trainer.state.log_history if "rewards/short/mean" in h]
        assert len(logged) == 3 and all(-1.0 <= h["rewards/short/mean"] <= 0.0 for h in logged)
        assert any("rewards/echo-answer/mean" in h for h in trainer.state.log_history)
        # One runtime pass per generation batch serves both rewards; counts are honest.
        assert len(reward_set.step_log) == 3
        for step in reward_set.step_log:
            assert step["rewards/short/ok"] == 4
            assert step["rewards/echo-answer/ok"] + step["rewards/echo-answer/not_applicable"] == 4
            assert step["rewards/short/error"] == step["rewards/short/timeout"] == 0
    finally:
        reward_set.close()
