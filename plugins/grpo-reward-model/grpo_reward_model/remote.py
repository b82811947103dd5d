"""The remote reward model client: JSON over HTTP with a timeout, retries and batching.

Standard library only (urllib). One request per batch; a batch whose request still fails
after the retries gets an exception for each of its samples (the runtime records them as
``error``), and the batches after it in the same call fail at once without a request, so a
dead or hanging server costs one batch's retries, not one per batch.

Protocol (see the README): POST ``{"query": [...], "prompts": [...], "completions": [...],
"labels": [...], "messages": [...]}``; the answer is ``{"rewards": [...]}`` (OpenRLHF's
``/get_reward``), ``{"scores": [...]}``, or a bare JSON list, one number per query.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from typing import Any

LOOPBACK = {"127.0.0.1", "localhost", "::1"}
RESPONSE_KEYS = ("rewards", "scores", "reward", "score")
_RETRIED_STATUS = {408, 425, 429, 500, 502, 503, 504}


class RemoteRewardError(RuntimeError):
    """The reward server could not give scores for a batch."""


class RemoteScorer:
    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        retries: int,
        backoff: float,
        score_key: str = "",
        headers: dict[str, str] | None = None,
    ):
        parsed = urllib.parse.urlparse(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"reward-model: url must be an http:// or https:// address, not {url!r}")
        if timeout <= 0:
            raise ValueError(f"reward-model: request_timeout must be positive, not {timeout}")
        if retries < 0:
            raise ValueError(f"reward-model: retries must be 0 or more, not {retries}")
        self.url, self.timeout, self.retries, self.backoff = url, float(timeout), int(retries), float(backoff)
        self.score_key = score_key
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", **(headers or {})}
        # A loopback server is never reached through the environment's HTTP proxy.
        handlers = [urllib.request.ProxyHandler({})] if parsed.hostname in LOOPBACK else []
        self._opener = urllib.request.build_opener(*handlers)
        self.requests = 0  # how many HTTP requests were sent (for tests and logs)

    def score_batch(self, payload: dict[str, list[Any]]) -> list[float]:
        """Scores for one batch, retrying transient failures; raises ``RemoteRewardError``."""
        size = len(payload["query"])
        body = json.dumps(payload).encode()
        last: str = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff * 2 ** (attempt - 1))
            try:
                answer = self._post(body)
            except _Permanent as exc:
                raise RemoteRewardError(str(exc)) from None
            except _Transient as exc:
                last = str(exc)
                continue
            return parse_scores(answer, size, self.score_key)
        tries = self.retries + 1
        raise RemoteRewardError(
            f"reward server {self.url} failed {tries} time{'s' if tries > 1 else ''} ({last}); "
            "check that it is running and reachable, or raise request_timeout/retries"
        )

    def _post(self, body: bytes) -> Any:
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        self.requests += 1
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            text = _excerpt(exc.read() if exc.fp else b"")
            message = f"HTTP {exc.code} {exc.reason}: {text}"
            if exc.code in _RETRIED_STATUS:
                raise _Transient(message) from None
            raise _Permanent(f"reward server {self.url} refused the request: {message}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Transient(f"{type(reason).__name__}: {reason}") from None
        try:
            return json.loads(raw)
        except ValueError:
            raise _Transient(f"the answer is not JSON: {_excerpt(raw)}") from None


class _Transient(Exception):
    pass


class _Permanent(Exception):
    pass


def parse_scores(answer: Any, size: int, score_key: str = "") -> list[float]:
    """One float per query from ``{"rewards": [...]}``, ``{"scores": [...]}`` or ``[...]``."""
    if isinstance(answer, dict):
        keys = (score_key,) if score_key else RESPONSE_KEYS
        found = next((answer[k] for k in keys if k in answer), None)
        if found is None:
            wanted = score_key or " or ".join(RESPONSE_KEYS)
            raise RemoteRewardError(f"the reward server's answer has no {wanted!r} key: {_excerpt(json.dumps(answer).encode())}")
        answer = found
    if not isinstance(answer, list):
        raise RemoteRewardError(f"the reward server answered {type(answer).__name__}, expected a list of scores")
    if len(answer) != size:
        raise RemoteRewardError(f"the reward server gave {len(answer)} scores for {size} queries")
    return [_one_score(x) for x in answer]


def _one_score(value: Any) -> float:
    if isinstance(value, list) and len(value) == 1:  # [[0.3], [0.7]] from a one-label head
        value = value[0]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise RemoteRewardError(f"the reward server gave {value!r} as a score, expected a number")
    return float(value)


def _excerpt(raw: bytes, limit: int = 200) -> str:
    text = raw.decode("utf-8", "replace").strip()
    return text if len(text) <= limit else text[:limit] + "..."


def batches(n: int, size: int) -> Sequence[range]:
    return [range(start, min(n, start + size)) for start in range(0, n, size)]
