"""``reward-model``: scores from an external reward model, local or behind an HTTP endpoint.

A class reward with ``isolation="inline"``: it runs in the calling process, never in the
reward worker pool. A model is stateful and expensive to load, and one copy per worker
process (each wanting the GPU) would multiply its memory; a remote client is I/O-bound and
gains nothing from a process either. Isolation is fixed when the reward is declared, so it is
inline in both modes. The cost: the runtime's per-sample ``timeout`` does not apply to inline
rewards, so the remote client bounds its own time (``request_timeout`` x attempts) and the
local model is bounded by its batch size and ``max_length``.

Nothing heavy is imported here: torch and transformers come in with ``local.py``, when a reward
with a ``model`` param is built.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import grpo_host


@grpo_host.reward(name="reward-model", isolation="inline", timeout=600.0)
class RewardModel:
    """The score an external reward model gives the prompt and the completion together.

    Local (``model``: a folder or a Hugging Face id of a sequence-classification model): the
    model's logit at ``label_index``, computed in batches of ``batch_size`` on the GPU when one
    is present; prompt and completion go through the model's chat template when the tokenizer
    has one and the prompt is a chat. Remote (``url``): an HTTP endpoint taking
    ``{"query": [prompt + completion, ...], ...}`` and answering ``{"rewards": [...]}`` (OpenRLHF's
    ``/get_reward``) or ``{"scores": [...]}``, with ``request_timeout``, ``retries`` and
    batching (with ``tokenizer``, chat prompts are rendered with that tokenizer's chat template
    before they are sent); a server that stays down gives ``error`` outcomes, not a hang. The
    range is the model's: unbounded.
    """

    def __init__(
        self,
        model: str = "",
        url: str = "",
        batch_size: int = 16,
        max_length: int = 4096,
        label_index: int = 0,
        chat_template: bool = True,
        device: str = "auto",
        dtype: str = "auto",
        trust_remote_code: bool = False,
        request_timeout: float = 60.0,
        retries: int = 2,
        retry_backoff: float = 1.0,
        score_key: str = "",
        label_field: str = "answer",
        tokenizer: str = "",
    ):
        if bool(model) == bool(url):
            raise ValueError(
                "reward-model needs exactly one of the params `model` (a local folder or Hugging Face id "
                "of a sequence-classification model) and `url` (an HTTP reward server)"
                + ("; both are set" if model else "")
            )
        if batch_size < 1:
            raise ValueError(f"reward-model: batch_size must be at least 1, not {batch_size}")
        self.batch_size, self.chat_template, self.label_field = int(batch_size), chat_template, label_field
        self.local = self.remote = None
        if model:
            from grpo_reward_model.local import LocalScorer

            self.local = LocalScorer(
                model, device=device, dtype=dtype, max_length=max_length, label_index=label_index,
                trust_remote_code=trust_remote_code,
            )
        else:
            from grpo_reward_model.remote import RemoteScorer

            self.remote = RemoteScorer(
                url, timeout=request_timeout, retries=retries, backoff=retry_backoff, score_key=score_key
            )
        self._template = None
        if tokenizer and self.remote is not None and chat_template:
            # OpenRLHF's server scores `query` as given: the client renders chats with the
            # reward model's template (the one place remote mode imports transformers).
            from transformers import AutoTokenizer

            self._template = AutoTokenizer.from_pretrained(tokenizer, trust_remote_code=trust_remote_code)
            if not getattr(self._template, "chat_template", None):
                raise ValueError(f"reward-model: the tokenizer {tokenizer!r} has no chat template")

    def score_batch(
        self, completions: Sequence[str], messages: Sequence[Any] | None = None, **columns: Any
    ) -> list[float | None | Exception]:
        n = len(completions)
        prompts = _column(columns.get("prompt"), n)
        chats = _column(messages, n)
        if self.local is not None:
            return self._score_local(completions, prompts, chats)
        return self._score_remote(completions, prompts, chats, _column(columns.get(self.label_field), n))

    # -- local ---------------------------------------------------------------------------------
    def _score_local(self, completions: Sequence[str], prompts: list[Any], chats: list[Any]) -> list[float | None]:
        texts, templated = [], []
        use_template = self.chat_template and self.local.has_chat_template
        for completion, prompt, chat in zip(completions, prompts, chats, strict=True):
            if use_template and is_chat(prompt):
                texts.append(self.local.render_chat(conversation(prompt, completion, chat)))
                templated.append(True)
            else:
                texts.append(plain_prompt(prompt) + (completion or ""))
                templated.append(False)
        return self.local.score_texts(texts, templated, self.batch_size)

    # -- remote --------------------------------------------------------------------------------
    def _score_remote(
        self, completions: Sequence[str], prompts: list[Any], chats: list[Any], labels: list[Any]
    ) -> list[float | Exception]:
        from grpo_reward_model.remote import RemoteRewardError, batches

        results: list[float | Exception] = [RemoteRewardError("not scored")] * len(completions)
        failure: Exception | None = None
        for rows in batches(len(completions), self.batch_size):
            if failure is not None:  # the server just failed a whole batch: do not wait again
                skipped = RemoteRewardError(f"not sent: an earlier batch of this call failed ({failure})")
                for i in rows:
                    results[i] = skipped
                continue
            payload = {
                "query": [self._query(prompts[i], completions[i], chats[i]) for i in rows],
                "prompts": [plain_prompt(prompts[i]) for i in rows],
                "completions": [completions[i] or "" for i in rows],
                "labels": ["" if labels[i] is None else str(labels[i]) for i in rows],
                "messages": [conversation(prompts[i], completions[i], chats[i]) if is_chat(prompts[i]) else None
                             for i in rows],
            }
            try:
                scores = self.remote.score_batch(payload)
            except RemoteRewardError as exc:
                failure = exc
                for i in rows:
                    results[i] = exc
                continue
            for i, score in zip(rows, scores, strict=True):
                results[i] = score
        return results

    def _query(self, prompt: Any, completion: str, chat: Any) -> str:
        if self._template is not None and is_chat(prompt):
            return self._template.apply_chat_template(conversation(prompt, completion, chat), tokenize=False)
        return plain_prompt(prompt) + (completion or "")


def _column(values: Sequence[Any] | None, n: int) -> list[Any]:
    return [None] * n if values is None else list(values)


def is_chat(prompt: Any) -> bool:
    return isinstance(prompt, (list, tuple)) and bool(prompt) and all(isinstance(m, Mapping) for m in prompt)


def conversation(prompt: Any, completion: str, chat: Any) -> list[dict[str, Any]]:
    """The prompt's messages followed by the completion's (or one assistant message)."""
    reply = [dict(m) for m in chat] if is_chat(chat) else [{"role": "assistant", "content": completion or ""}]
    return [dict(m) for m in prompt] + reply


def plain_prompt(prompt: Any) -> str:
    """A prompt as text: itself, or its messages' contents one per line when it is a chat."""
    if prompt is None:
        return ""
    if is_chat(prompt):
        return "".join(f"{_content(m.get('content'))}\n" for m in prompt)
    return str(prompt)


def _content(content: Any) -> str:
    if isinstance(content, list):  # content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping))
    return "" if content is None else str(content)
