"""The local reward model: a Hugging Face sequence-classification model with its own tokenizer.

Imported only when a ``reward-model`` with a ``model`` param is built: this is where torch and
transformers come in. Texts are scored in batches of ``batch_size``, sorted by length so a batch
pads little; the score of a text is the model's logit at ``label_index``. The model runs on
the GPU when one is present (``device="auto"``), in bfloat16 there, in float32 on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class LocalScorer:
    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        max_length: int = 4096,
        label_index: int = 0,
        trust_remote_code: bool = False,
    ):
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.torch = torch
        self.device = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        if dtype == "auto":
            on_gpu = self.device.startswith("cuda")
            dtype = "bfloat16" if on_gpu and torch.cuda.is_bf16_supported() else "float32"
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ValueError(f"reward-model: dtype {dtype!r} is not a torch dtype; use auto, float32, bfloat16 or float16")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(model, trust_remote_code=trust_remote_code)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                model, dtype=torch_dtype, trust_remote_code=trust_remote_code
            )
        except OSError as exc:
            raise OSError(
                f"reward-model: could not load {model!r} ({exc}); give a local folder with the model "
                "and its tokenizer, or a Hugging Face id this machine can download"
            ) from None
        if self.tokenizer.pad_token is None:
            # Sequence classifiers find each row's last real token through the pad id.
            self.tokenizer.pad_token = self.tokenizer.eos_token or self.tokenizer.unk_token
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id
        labels = self.model.config.num_labels
        if not 0 <= label_index < labels:
            raise ValueError(f"reward-model: label_index {label_index} is out of range; {model!r} has {labels} label(s)")
        self.label_index, self.max_length = label_index, max_length
        self.model.to(self.device).eval()

    @property
    def has_chat_template(self) -> bool:
        return bool(getattr(self.tokenizer, "chat_template", None))

    def render_chat(self, conversation: list[dict[str, Any]]) -> str:
        return self.tokenizer.apply_chat_template(conversation, tokenize=False)

    def score_texts(self, texts: Sequence[str], templated: Sequence[bool], batch_size: int) -> list[float | None]:
        """One score per text; ``templated[i]`` says the text already holds its special tokens.

        A text with no tokens at all (empty prompt and completion, no special tokens) gives
        None: there is nothing for the model to score.
        """
        encoded = [
            self.tokenizer(t, add_special_tokens=not tmpl, truncation=True, max_length=self.max_length)["input_ids"]
            for t, tmpl in zip(texts, templated, strict=True)
        ]
        # Length-sorted batches pad little; ties are broken by the tokens themselves, so a
        # sample's batch (and its score) does not depend on where it sat in the input.
        order = sorted((i for i in range(len(encoded)) if encoded[i]), key=lambda i: (len(encoded[i]), encoded[i]))
        scores: list[float | None] = [None] * len(encoded)
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in chunk]}, return_tensors="pt")
            batch = {k: v.to(self.device) for k, v in batch.items()}
            with self.torch.inference_mode():
                logits = self.model(**batch).logits
            values = logits[:, self.label_index].float().cpu().tolist()
            for i, value in zip(chunk, values, strict=True):
                scores[i] = float(value)
        return scores
