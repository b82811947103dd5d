"""The trainer's side of interop: verl's and OpenRLHF's calls turned into grpo-host samples.

This module is the body of every file ``grpo-host export`` writes: everything below the
``EXPORTED BODY`` line is copied into it verbatim, after a header that sets ``REWARDS``, ``URL``,
``LABEL_COLUMN``, ``WORKERS``, ``TIMEOUT_S``, ``END_TOKENS`` and ``TOKEN_ENV``. So it imports only
the standard library at its top: with ``URL`` set, the exported file runs on a trainer machine
where grpo-host is not installed. The reward server imports the same functions for its ``/get_reward`` endpoint, so
a trainer sees the same samples and numbers whichever way it reaches grpo-host.

What the trainers need that grpo-host does not give by itself is a number for every sample:
the total is the weighted sum of the rewards that gave a score (as TRL sums them), 0.0 when
none did; each reward's own value is its score or 0.0, with ``<name>/failed`` set to 1.0 when
it gave none (error, timeout or not applicable), so a failing reward shows in the trainer's logs.
Trailing EOS/pad tokens (``END_TOKENS``) are cut off every completion first: OpenRLHF decodes
with ``skip_special_tokens=False``, and a reward anchored on the text's end would score 0.

verl 0.9.1 and OpenRLHF 0.11 call these functions once per sample, from many threads at once;
concurrent calls are scored together (by the server's micro-batching with ``URL``, by the
in-process scorer's without), each thread keeping its own HTTP connection.
"""

from __future__ import annotations

from typing import Any

# Set by the exported file's header; these defaults are what the server's import sees.
REWARDS: list[Any] = []
URL: str | None = None
LABEL_COLUMN = "answer"
WORKERS: int | None = None
TIMEOUT_S = 600.0
END_TOKENS: list[str] = []
TOKEN_ENV: str | None = None

# ---- EXPORTED BODY (copied into exported files from here on) ----
import http.client  # noqa: E402 - the exported file puts its header above this line
import json  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
import urllib.parse  # noqa: E402


def strip_end_tokens(text: str, tokens: list[str] | tuple[str, ...]) -> str:
    """``text`` with a trailing run of ``tokens`` (EOS, padding) cut off; whitespace after a cut
    token goes with it, whitespace before the first one stays (as a decode that skips them)."""
    if not tokens or not isinstance(text, str):
        return text
    while True:
        stripped = text.rstrip()
        for token in tokens:
            if stripped.endswith(token):
                text = stripped[: -len(token)]
                break
        else:
            return text


def label_columns(label: Any, label_column: str) -> dict[str, Any]:
    """A trainer's label (OpenRLHF's ``labels[i]``, verl's ``ground_truth``) as dataset columns:
    a dict gives its keys, anything else goes into ``label_column``."""
    if isinstance(label, dict):
        return dict(label)
    return {} if label is None else {label_column: label}


def openrlhf_samples(queries: list[Any], prompts: list[Any] | None, labels: list[Any] | None,
                     label_column: str, end_tokens: list[str] | tuple[str, ...] = ()) -> list[dict[str, Any]]:
    """OpenRLHF sends ``query`` = prompt + response (its template applied, special tokens kept);
    the completion is the query with its prompt cut off the front and its end tokens off the back."""
    samples = []
    for i, query in enumerate(queries):
        prompt = prompts[i] if prompts is not None else None
        text = "" if query is None else str(query)
        if isinstance(prompt, str) and prompt and text.startswith(prompt):
            text = text[len(prompt):]
        sample = label_columns(labels[i] if labels is not None else None, label_column)
        sample.update(completion=strip_end_tokens(text, end_tokens), prompt=prompt)
        samples.append(sample)
    return samples


def verl_sample(data_source: Any, solution_str: Any, ground_truth: Any, extra_info: Any,
                label_column: str, end_tokens: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """verl's ``compute_score`` arguments as one sample: ``extra_info``'s keys become columns."""
    sample = dict(extra_info) if isinstance(extra_info, dict) else {}
    sample.update(label_columns(ground_truth, label_column))
    text = "" if solution_str is None else str(solution_str)
    sample.update(completion=strip_end_tokens(text, end_tokens), data_source=data_source)
    return sample


def flatten(results: list[dict[str, Any]], names: list[str]) -> tuple[list[float], dict[str, list[float]]]:
    """``(totals, logs)``: a number per sample, and per reward its scores and failed flags."""
    totals = [float(r["total"]) if r.get("total") is not None else 0.0 for r in results]
    logs: dict[str, list[float]] = {}
    for name in names:
        rows = [r["rewards"][name] for r in results]
        logs[name] = [float(x["score"]) if x["outcome"] == "ok" else 0.0 for x in rows]
        logs[f"{name}/failed"] = [0.0 if x["outcome"] == "ok" else 1.0 for x in rows]
    return totals, logs


def _plain(value: Any) -> Any:
    """verl hands numpy values (``ground_truth`` as ``np.str_`` or an array): JSON gets plain ones."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


_CONNECTIONS = threading.local()


def post_json(url: str, payload: dict[str, Any], timeout: float) -> dict[str, Any]:
    """POST ``payload`` on this thread's kept-alive connection; a connection the server closed
    while idle is opened again once (scoring is idempotent)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise RuntimeError(f"grpo-host reward server URL {url!r} must be http://HOST:PORT")
    body = json.dumps(payload, default=_plain).encode()
    headers = {"Content-Type": "application/json"}
    if TOKEN_ENV:
        token = os.environ.get(TOKEN_ENV)
        if not token:
            raise RuntimeError(f"the grpo-host reward server needs a token: set {TOKEN_ENV} where the trainer runs")
        headers["Authorization"] = f"Bearer {token}"
    pool = _CONNECTIONS.__dict__.setdefault("by_host", {})
    key = (parts.scheme, parts.netloc)
    for attempt in (0, 1):
        conn = pool.get(key)
        if conn is None:
            kind = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
            conn = pool[key] = kind(parts.hostname, parts.port, timeout=timeout)
        try:
            conn.request("POST", parts.path or "/", body, headers)
            response = conn.getresponse()
            data = response.read()
        except (OSError, http.client.HTTPException) as exc:  # closed while idle, reset, refused, timed out
            conn.close()
            pool.pop(key, None)
            stale = isinstance(exc, (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError))
            if attempt == 0 and stale:
                continue
            raise RuntimeError(f"cannot reach the grpo-host reward server at {url}: {exc}; "
                               "is `grpo-host serve-rewards` running there?") from None
        if response.getheader("Connection", "").lower() == "close":
            conn.close()
            pool.pop(key, None)
        if response.status != 200:
            text = data.decode(errors="replace")[:1000]
            raise RuntimeError(f"grpo-host reward server at {url} answered {response.status}: {text}")
        return json.loads(data)
    raise AssertionError("unreachable: the second attempt returns or raises")


def score_samples(samples: list[dict[str, Any]]) -> tuple[list[str], list[dict[str, Any]]]:
    """``(reward names, results)`` in the reward server's ``/score`` form, scored by the server
    at ``URL`` or, with no URL, in this process by grpo-host's runtime."""
    if URL:
        answer = post_json(URL.rstrip("/") + "/score", {"samples": samples, "details": False}, TIMEOUT_S)
        return answer["names"], answer["results"]
    from grpo_host.interop.scoring import local_scorer

    scorer = local_scorer(REWARDS, WORKERS)
    return scorer.names, scorer.score_json(samples, details=False)


def compute_score(data_source=None, solution_str=None, ground_truth=None, extra_info=None, *,
                  data_sources=None, solution_strs=None, ground_truths=None, extra_infos=None, **_ignored):
    """verl's ``custom_reward_function``: one sample per call, as every reward manager of verl 0.9.1
    calls it (naive, dapo, gdpo, rate_limited, remote; keyword arguments, from a thread pool), or
    lists of them (``data_sources=..., solution_strs=...``, the ``batch`` manager of verl before
    its reward loop). Returns a dict with ``score`` and each reward's value, or a list of them."""
    batched = solution_strs is not None
    if batched:
        n = len(solution_strs)
        samples = [
            verl_sample(
                data_sources[i] if data_sources is not None else None, solution_strs[i],
                ground_truths[i] if ground_truths is not None else None,
                extra_infos[i] if extra_infos is not None else None, LABEL_COLUMN, END_TOKENS,
            )
            for i in range(n)
        ]
    else:
        samples = [verl_sample(data_source, solution_str, ground_truth, extra_info, LABEL_COLUMN, END_TOKENS)]
    names, results = score_samples(samples)
    totals, logs = flatten(results, names)
    scored = [{"score": total, **{key: values[i] for key, values in logs.items()}} for i, total in enumerate(totals)]
    return scored if batched else scored[0]


def reward_func(queries, prompts=None, labels=None, **_ignored):
    """OpenRLHF's ``--reward.remote_url /path/to/this_file.py`` form (``--remote_rm_url`` before
    0.10.2): ``rewards`` for the advantage, ``scores`` (the same) for dynamic filtering,
    ``extra_logs`` with each reward's values."""
    names, results = score_samples(openrlhf_samples(list(queries), prompts, labels, LABEL_COLUMN, END_TOKENS))
    totals, logs = flatten(results, names)
    try:
        import torch
    except ImportError:  # OpenRLHF always has torch; plain lists elsewhere
        return {"rewards": totals, "scores": totals, "extra_logs": logs}
    rewards = torch.tensor(totals, dtype=torch.float32)
    return {"rewards": rewards, "scores": rewards,
            "extra_logs": {key: torch.tensor(values, dtype=torch.float32) for key, values in logs.items()}}
