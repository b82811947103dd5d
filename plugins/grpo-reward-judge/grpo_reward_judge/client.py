"""The judge's HTTP side: one OpenAI-compatible chat call, with retries and a reply cache.

``POST {base_url}/chat/completions`` is what vLLM, TGI, SGLang, llama.cpp's server and the
hosted APIs all answer. Rate limits (429) and server errors (5xx) and dropped connections are
retried with exponential backoff (``Retry-After`` honoured, within a cap); anything else is
the sample's error at once. The reply cache is keyed by everything that decides the reply
(url, model, rendered prompt, sampling settings, which of several samples), and lives as long
as the worker process, so a GRPO group re-scored after a retry or a repeated prompt costs
nothing. The key itself is read from the environment when the client is built and never
appears in an error or a detail.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections import OrderedDict
from typing import Any

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504})
MAX_RETRY_AFTER_S = 30.0
CACHE_SIZE = 65536


class JudgeError(RuntimeError):
    """The judge could not give a reply (after retries, or an answer that is not one)."""


class ReplyCache:
    """A bounded LRU of judge replies, shared by every judge built in this process."""

    def __init__(self, size: int = CACHE_SIZE):
        self.size = size
        self._items: OrderedDict[str, str] = OrderedDict()
        self.hits = self.misses = 0

    @staticmethod
    def key(*parts: Any) -> str:
        return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()

    def get(self, key: str) -> str | None:
        reply = self._items.get(key)
        if reply is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return reply

    def put(self, key: str, reply: str) -> None:
        self._items[key] = reply
        self._items.move_to_end(key)
        while len(self._items) > self.size:
            self._items.popitem(last=False)


CACHE = ReplyCache()


class ChatClient:
    """An async chat-completions client for one endpoint and model.

    httpx's client belongs to the event loop it first ran on; the runtime keeps one loop per
    worker for the worker's life, and a new loop (a test calling ``asyncio.run`` twice) gets a
    client of its own.
    """

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout: float,
        retries: int,
        backoff: float,
        max_keepalive: int = 64,
    ):
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model, self.timeout, self.retries, self.backoff = model, timeout, retries, backoff
        self._headers = {"Content-Type": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self._max_keepalive = max_keepalive
        self._clients: dict[int, Any] = {}

    def _client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        client = self._clients.get(id(loop))
        if client is None or client.is_closed:
            client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout),
                limits=httpx.Limits(max_connections=None, max_keepalive_connections=self._max_keepalive),
                headers=self._headers,
            )
            self._clients = {id(loop): client}  # an earlier loop is gone: its client with it
        return client

    async def complete(
        self, messages: list[dict[str, str]], temperature: float, max_tokens: int, seed: int
    ) -> str:
        """The judge's reply text, from the cache or the server."""
        key = ReplyCache.key(self.url, self.model, messages, temperature, max_tokens, seed)
        cached = CACHE.get(key)
        if cached is not None:
            return cached
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        if seed:
            # Several samples of one prompt must differ: servers that honour `seed` vary by it.
            body["seed"] = seed
        reply = await self._post(body)
        CACHE.put(key, reply)
        return reply

    async def _post(self, body: dict[str, Any]) -> str:
        import httpx

        client = self._client()
        last, retry_after = "", None
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self._delay(attempt, retry_after))
            retry_after = None
            try:
                response = await client.post(self.url, json=body)
            except httpx.TransportError as exc:  # refused, reset, timed out: worth another try
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                continue
            if response.status_code in RETRY_STATUSES:
                last = f"HTTP {response.status_code}: {_snippet(response.text)}"
                retry_after = response.headers.get("retry-after")
                continue
            if response.status_code >= 400:
                raise JudgeError(
                    f"judge at {self.url} answered HTTP {response.status_code}: {_snippet(response.text)}"
                )
            return _reply_text(response, self.url)
        raise JudgeError(f"judge at {self.url} failed after {self.retries + 1} attempt(s); last: {last}")

    def _delay(self, attempt: int, retry_after: str | None) -> float:
        delay = self.backoff * 2 ** (attempt - 1)
        if retry_after:
            try:
                delay = max(delay, min(float(retry_after), MAX_RETRY_AFTER_S))
            except ValueError:
                pass  # an HTTP date: keep our own backoff
        return delay


def _reply_text(response: Any, url: str) -> str:
    try:
        payload = response.json()
        content = payload["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise JudgeError(
            f"judge at {url} did not answer in the chat-completions form "
            f"(choices[0].message.content): {_snippet(response.text)}"
        ) from None
    if isinstance(content, list):  # content parts
        content = "".join(p.get("text", "") for p in content if isinstance(p, dict))
    if not isinstance(content, str):
        raise JudgeError(f"judge at {url} replied with no text: {_snippet(response.text)}")
    return content


def _snippet(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
