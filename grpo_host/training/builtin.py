"""The built-in model and data set: what runs with no network and no downloads.

``builtin:tiny-qwen2`` is a Qwen2 built from a config with random weights (hidden 64, 2
layers by default; any Qwen2Config field can be overridden, so a 0.5B shape works too) and a
byte-level BPE tokenizer trained locally with ``tokenizers`` on the arithmetic corpus, with a
chat template and the reasoning/answer tags as single tokens. Both are built once and cached
(``$GRPO_HOST_CACHE``, else ``~/.cache/grpo-host``) under a hash of their settings; the build
goes to a temporary folder that is renamed into place, so processes that race to build it
never see half a model.

``builtin:arithmetic`` generates ``{"prompt", "answer", "expression", "working", "near_miss"}``
rows ("What is 12 + 7?", "19", "12 + 7", "12 + 7 = 19", "20"); the warm-up's target completion is
built from them (``near_miss``, the answer plus one, is the wrong answer the default teaches it).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from grpo_host.datasets import arithmetic_rows  # the corpus is made of its rows

BUILTIN_VERSION = 1  # bump when the build changes, so caches are rebuilt

DEFAULT_MODEL = {
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "max_position_embeddings": 512,
    "tie_word_embeddings": True,
}
DEFAULT_TOKENIZER_VOCAB = 300
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
TAG_TOKENS = ["<think>", "</think>", "<answer>", "</answer>"]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def cache_root() -> Path:
    if os.environ.get("GRPO_HOST_CACHE"):
        return Path(os.environ["GRPO_HOST_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "grpo-host"


# -- data (the rows are made in grpo_host.datasets, the built-in data source's home) ------------
def _corpus(max_operand: int = 20) -> list[str]:
    rows = arithmetic_rows(3000, seed=1234, max_operand=max_operand, operations="+-*")
    lines = []
    for row in rows:
        q = row["prompt"].removeprefix("What is ").removesuffix("?")
        lines.append(row["prompt"])
        lines.append(f"<think>{q} = {row['answer']}</think> <answer>{row['answer']}</answer>")
    lines += ["The answer is", "Let me think step by step.", "user", "assistant", "system",
              "You are a helpful assistant. Think first, then answer."]
    return lines


# -- the model -----------------------------------------------------------------------------------
def builtin_settings(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    settings = {**DEFAULT_MODEL, "tokenizer_vocab_size": DEFAULT_TOKENIZER_VOCAB, "seed": 0}
    settings.update(dict(overrides or {}))
    return settings


def ensure_tiny_qwen2(overrides: Mapping[str, Any] | None = None, root: Path | None = None) -> Path:
    """The folder holding the built-in model and tokenizer, building it on first use."""
    settings = builtin_settings(overrides)
    digest = hashlib.sha256(json.dumps([BUILTIN_VERSION, settings], sort_keys=True).encode()).hexdigest()[:12]
    target = (root or cache_root()) / f"tiny-qwen2-{digest}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=target.parent))
    try:
        tokenizer = build_tokenizer(int(settings["tokenizer_vocab_size"]))
        tokenizer.save_pretrained(staging)
        build_model(tokenizer, settings).save_pretrained(staging)
        (staging / "grpo_host_builtin.json").write_text(json.dumps(settings, indent=2))
        try:
            os.rename(staging, target)
        except OSError:  # another process finished first: theirs is as good as ours
            if not (target / "config.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def build_tokenizer(vocab_size: int = DEFAULT_TOKENIZER_VOCAB):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        bos_token=None,
        unk_token=None,
        padding_side="left",
    )
    fast.add_tokens(TAG_TOKENS)  # the tags as single tokens: the format reward is reachable
    fast.chat_template = CHAT_TEMPLATE
    return fast


def build_model(tokenizer, settings: Mapping[str, Any]):
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    fields = {k: v for k, v in settings.items() if k not in ("tokenizer_vocab_size", "seed")}
    fields.setdefault("vocab_size", len(tokenizer))
    if fields["vocab_size"] < len(tokenizer):
        raise ValueError(f"model.builtin.vocab_size {fields['vocab_size']} is below the tokenizer's {len(tokenizer)}")
    config = Qwen2Config(
        **fields,
        bos_token_id=None,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(int(settings.get("seed", 0)))
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id
    )
    return model
