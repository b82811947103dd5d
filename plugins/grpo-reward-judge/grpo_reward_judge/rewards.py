"""``llm-judge``: a score from a generative judge model over an OpenAI-compatible chat API.

The score is ``N / max_score`` where N is the number the judge's reply ends with
(``Score: N``, or else the last number in the reply). An async reward: a judge call waits on
the network, so the runtime awaits many samples at once (host param ``concurrency``, default
32, shared among the workers), each under the usual per-sample ``timeout``. A reply without a
number, a number outside ``0..max_score``, or a server that keeps failing after the retries is
the sample's ``error``, with the reply or the failure shown: never a silent 0.
"""

from __future__ import annotations

import asyncio
import os
import re
from typing import Any

import grpo_host

DEFAULT_SCORE = re.compile(
    r"score\s*(?:\(\s*0\s*-\s*\d+\s*\))?\s*[:=]\s*\**\s*(-?\d+(?:\.\d+)?)", re.IGNORECASE
)
LAST_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
# How much of the judge prompt a sample's details keep: enough to see the rubric and the
# completion in `try-reward --explain`, bounded so samples.jsonl stays small.
PROMPT_DETAIL_CHARS = 6000


@grpo_host.reward(name="llm-judge", timeout=120.0, score_range=(0.0, 1.0))
class LLMJudge:
    """A judge model's grade of the completion, from 0 to 1 (its ``Score: N`` over ``max_score``).

    ``base_url`` is the API root (``http://127.0.0.1:8000/v1`` for vLLM), ``model`` the judge
    model's name there, ``api_key_env`` the name of the environment variable holding the key
    (never the key). ``template`` is a built-in rubric (``correctness`` against the ``answer``
    column, ``helpfulness``, ``groundedness`` against the ``context`` column) or a template
    with ``{prompt}``, ``{completion}`` and column fields. ``samples`` judge calls are averaged
    (they differ by ``seed``; use a temperature above 0 for them to differ at all).
    """

    def __init__(
        self,
        base_url: str = "",
        model: str = "",
        api_key_env: str = "",
        template: str = "correctness",
        system: str = "",
        max_score: float = 10.0,
        score_pattern: str = "",
        temperature: float = 0.0,
        max_tokens: int = 512,
        samples: int = 1,
        retries: int = 3,
        retry_backoff: float = 0.5,
        request_timeout: float = 60.0,
    ):
        from grpo_reward_judge.client import ChatClient
        from grpo_reward_judge.templates import template_fields, template_text

        if not base_url:
            raise ValueError(
                "llm-judge needs base_url, the root of an OpenAI-compatible API "
                "(e.g. http://127.0.0.1:8000/v1 for `vllm serve MODEL`)"
            )
        if not model:
            raise ValueError("llm-judge needs model, the judge model's name on that server")
        if not max_score > 0:
            raise ValueError(f"llm-judge: max_score must be positive, not {max_score}")
        if samples < 1 or retries < 0 or max_tokens < 1 or not request_timeout > 0:
            raise ValueError(
                "llm-judge: samples and max_tokens must be at least 1, retries at least 0, request_timeout positive"
            )
        api_key = None
        if api_key_env:
            if api_key_env.startswith(("sk-", "hf_")) or len(api_key_env) > 64:
                raise ValueError(
                    "llm-judge: api_key_env is the *name* of the environment variable that holds the key "
                    "(e.g. OPENAI_API_KEY), not the key; remove the key from the config"
                )
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ValueError(
                    f"llm-judge: api_key_env names {api_key_env}, which is not set in the environment"
                )
        self.template = template
        template_fields(template_text(template))  # bad template: fail when built, not per sample
        self.system, self.max_score = system, float(max_score)
        self.pattern = re.compile(score_pattern) if score_pattern else None
        self.temperature, self.max_tokens, self.samples = float(temperature), int(max_tokens), int(samples)
        self.client = ChatClient(base_url, model, api_key, request_timeout, retries, retry_backoff)

    async def score(self, completion: str, prompt: Any = None, **columns: Any) -> grpo_host.Score:
        from grpo_reward_judge.templates import render

        judge_prompt = render(self.template, prompt, completion, columns, self.max_score)
        messages = ([{"role": "system", "content": self.system}] if self.system else []) + [
            {"role": "user", "content": judge_prompt}
        ]
        replies = await asyncio.gather(
            *(
                self.client.complete(messages, self.temperature, self.max_tokens, seed)
                for seed in range(self.samples)
            )
        )
        details: dict[str, Any] = {
            "judge_prompt": _clip(judge_prompt),
            "reply": replies[0] if len(replies) == 1 else replies,
        }
        values = [self.parse(reply) for reply in replies]
        details["judge_scores"] = values
        return grpo_host.Score(sum(values) / len(values) / self.max_score, details)

    def parse(self, reply: str) -> float:
        """The judge's number: the last ``score_pattern`` match, or ``Score: N``, or the last number."""
        if self.pattern is not None:
            found = list(self.pattern.finditer(reply))
            text = (found[-1].group(1) if found[-1].groups() else found[-1].group(0)) if found else None
        else:
            found = DEFAULT_SCORE.findall(reply) or LAST_NUMBER.findall(reply)
            text = found[-1] if found else None
        if text is None:
            raise ValueError(f"the judge's reply has no score: {reply!r}")
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"the judge's score {text!r} is not a number (reply: {reply!r})") from None
        if not 0 <= value <= self.max_score:
            raise ValueError(
                f"the judge's score {value:g} is outside 0..{self.max_score:g} (reply: {reply!r})"
            )
        return value


def _clip(text: str) -> str:
    return text if len(text) <= PROMPT_DETAIL_CHARS else text[:PROMPT_DETAIL_CHARS] + "\n[...]"
