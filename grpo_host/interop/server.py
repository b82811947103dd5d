"""The reward server: chosen rewards behind HTTP, for trainers on other machines.

Handler threads (one per connection, stdlib ``ThreadingHTTPServer``) parse and check requests;
one scorer thread owns the :class:`~grpo_host.rewards.runtime.RewardRuntime` and scores
whatever requests are waiting as one batch, so concurrent clients share the worker pool
instead of queueing one by one, and the runtime's per-sample timeouts apply as in training (a
hanging reward gives that sample a ``timeout`` outcome; the server goes on). Requests are
bounded in bytes and samples; every error is JSON with a status that says whose fault it is.
The protocol is documented in docs/serve-rewards.md.
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from grpo_host.errors import GrpoHostError
from grpo_host.interop import trainer_side
from grpo_host.interop.scoring import check_samples, results_json
from grpo_host.rewards.runtime import BoundReward, RewardRuntime

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_SAMPLES = 4096
# One runtime call scores at most this many samples; more waiting requests go in the next one.
MAX_BATCH_SAMPLES = 2048
# An oversized body up to this much over the limit is read and dropped before the 413 goes out.
DRAIN_BYTES = 1024 * 1024


class RequestError(GrpoHostError):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class _Job:
    samples: list[dict[str, Any]]
    done: threading.Event = field(default_factory=threading.Event)
    results: dict[str, list] | None = None
    error: str | None = None


class RewardServer:
    """Serve ``bound`` rewards on ``host:port`` (port 0: a free one; see ``.port``)."""

    def __init__(
        self,
        bound: Sequence[BoundReward],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        workers: int | None = None,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_samples: int = DEFAULT_MAX_SAMPLES,
        label_column: str = "answer",
        verbose: bool = False,
    ):
        self.bound = list(bound)
        self.names = [b.name for b in self.bound]
        self.runtime = RewardRuntime(self.bound, workers=workers)
        self.max_request_bytes, self.max_samples = int(max_request_bytes), int(max_samples)
        self.label_column, self.verbose = label_column, verbose
        self.started = time.time()
        self.counts = {"requests": 0, "rejected": 0, "samples": 0, "batches": 0}
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._scorer = threading.Thread(target=self._score_loop, name="grpo-host-scorer", daemon=True)
        handler = type("Handler", (_Handler,), {"app": self})
        try:
            self.httpd = _HTTPServer((host, port), handler)
        except OSError as exc:
            self.runtime.close()
            raise GrpoHostError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                                "pick another --port (0 takes a free one)") from None
        self.host, self.port = self.httpd.server_address[:2]
        self._scorer.start()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- lifecycle -------------------------------------------------------------------------
    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever(poll_interval=0.2)
        finally:
            self.close()

    def start(self) -> RewardServer:
        """Serve from a background thread (tests, benchmarks, notebooks)."""
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True).start()
        return self

    def close(self) -> None:
        if self._scorer.is_alive():
            self.httpd.shutdown()
            self._jobs.put(None)
            self._scorer.join(timeout=10)
        self.httpd.server_close()
        self.runtime.close()

    def __enter__(self) -> RewardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- scoring ---------------------------------------------------------------------------
    def score(self, samples: list[dict[str, Any]]) -> dict[str, list]:
        """Queue ``samples`` for the scorer thread and wait for their results."""
        job = _Job(samples)
        self._jobs.put(job)
        job.done.wait()
        if job.error is not None:
            raise RequestError(500, job.error)
        assert job.results is not None
        return job.results

    def _score_loop(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            jobs, size = [first], len(first.samples)
            while size < MAX_BATCH_SAMPLES:  # everything already waiting goes into this batch
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._jobs.put(None)
                    break
                jobs.append(job)
                size += len(job.samples)
            try:
                merged = [s for job in jobs for s in job.samples]
                results = self.runtime.score(merged) if merged else {n: [] for n in self.names}
                start = 0
                for job in jobs:
                    end = start + len(job.samples)
                    job.results = {name: rows[start:end] for name, rows in results.items()}
                    start = end
                self.counts["batches"] += 1
                self.counts["samples"] += len(merged)
            except Exception as exc:  # noqa: BLE001 - the runtime failing is the server's error, said per request
                for job in jobs:
                    job.error = f"the reward runtime failed: {type(exc).__name__}: {exc}"
            for job in jobs:
                job.done.set()

    def health(self) -> dict[str, Any]:
        from grpo_host import __version__

        return {
            "status": "ok",
            "version": __version__,
            "rewards": self.names,
            "uptime_s": round(time.time() - self.started, 3),
            "workers": self.runtime.size,
            "pending": self._jobs.qsize(),
            "counts": dict(self.counts),
            "outcomes": {name: dict(totals) for name, totals in self.runtime.totals.items()},
            "limits": {"max_request_bytes": self.max_request_bytes, "max_samples": self.max_samples},
        }


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 resets connections when many trainer ranks connect at once.
    request_queue_size = 256


class _Handler(BaseHTTPRequestHandler):
    app: RewardServer  # set on the subclass each server makes
    protocol_version = "HTTP/1.1"  # keep-alive: a trainer's client reuses its connection
    timeout = 60  # a client that stops sending mid-request frees its thread
    # Headers and body go out in two writes; with Nagle on, the client's delayed ACK adds 40 ms to each.
    disable_nagle_algorithm = True

    GET_ROUTES = ("/health", "/rewards")
    POST_ROUTES = ("/score", "/get_reward")

    # -- routing ---------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path == "/health":
            self._send(200, self.app.health())
        elif path == "/rewards":
            self._send(200, {"rewards": [b.provenance() | {"description": b.spec.description} for b in self.app.bound]})
        elif path in self.POST_ROUTES:
            self._error(405, f"{path} takes POST with a JSON body; see docs/serve-rewards.md")
        else:
            self._not_found(path)

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        if path in self.GET_ROUTES:
            self._error(405, f"{path} takes GET")
            return
        if path not in self.POST_ROUTES:
            self._not_found(path)
            return
        self.app.counts["requests"] += 1
        try:
            body = self._read_json()
            if path == "/score":
                self._send(200, self._score(body))
            else:
                self._send(200, self._get_reward(body))
        except RequestError as exc:
            self.app.counts["rejected"] += exc.status < 500
            self._error(exc.status, str(exc))

    def _not_found(self, path: str) -> None:
        routes = [f"GET {r}" for r in self.GET_ROUTES] + [f"POST {r}" for r in self.POST_ROUTES]
        self._error(404, f"no endpoint {path}; endpoints: {', '.join(routes)}")

    # -- endpoints -------------------------------------------------------------------------
    def _score(self, body: dict[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(body) - {"samples", "details"})
        if unknown:
            raise RequestError(400, f"unknown field(s) {', '.join(unknown)}; a /score request has "
                                    "'samples' (a list of {completion, prompt, <columns>}) and optional 'details'")
        if "samples" not in body:
            raise RequestError(400, "a /score request needs 'samples': a list of {completion, prompt, <columns>}")
        details = body.get("details", True)
        if not isinstance(details, bool):
            raise RequestError(400, "'details' must be true or false")
        samples = self._checked(body["samples"])
        start = time.perf_counter()
        results = self.app.score(samples)
        return {
            "names": self.app.names,
            "results": results_json(self.app.bound, results, len(samples), details=details),
            "seconds": round(time.perf_counter() - start, 6),
        }

    def _get_reward(self, body: dict[str, Any]) -> dict[str, Any]:
        """OpenRLHF's remote reward model: ``{"query", "prompts", "labels"}`` -> ``{"rewards", ...}``."""
        queries = body.get("query")
        if not isinstance(queries, list):
            raise RequestError(400, "a /get_reward request needs 'query': a list of prompt+response strings "
                                    "(OpenRLHF's remote reward model shape; also 'prompts' and 'labels')")
        lists = {"prompts": body.get("prompts"), "labels": body.get("labels")}
        for key, values in lists.items():
            if values is not None and (not isinstance(values, list) or len(values) != len(queries)):
                raise RequestError(400, f"'{key}' must be a list as long as 'query' ({len(queries)} items)")
        if len(queries) > self.app.max_samples:
            self._too_many(len(queries))
        samples = trainer_side.openrlhf_samples(queries, lists["prompts"], lists["labels"], self.app.label_column)
        samples = self._checked(samples)
        results = results_json(self.app.bound, self.app.score(samples), len(samples), details=False)
        totals, logs = trainer_side.flatten(results, self.app.names)
        return {"rewards": totals, "scores": totals, "extra_logs": logs}

    def _checked(self, samples: Any) -> list[dict[str, Any]]:
        if isinstance(samples, list) and len(samples) > self.app.max_samples:
            self._too_many(len(samples))
        try:
            return check_samples(samples)
        except GrpoHostError as exc:
            raise RequestError(400, str(exc)) from None

    def _too_many(self, count: int) -> None:
        raise RequestError(413, f"{count} samples in one request; this server takes at most "
                                f"{self.app.max_samples} (--max-samples): split the batch")

    # -- plumbing --------------------------------------------------------------------------
    def _read_json(self) -> dict[str, Any]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self.close_connection = True
            raise RequestError(411, "send the body with a Content-Length, not chunked")
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            self.close_connection = True
            raise RequestError(411, "a POST needs a Content-Length header")
        try:
            length = int(length_text)
        except ValueError:
            self.close_connection = True
            raise RequestError(400, f"Content-Length {length_text!r} is not a number") from None
        if length > self.app.max_request_bytes:
            if length <= self.app.max_request_bytes + DRAIN_BYTES:
                self.rfile.read(length)  # read and dropped, so the client sees the answer, not a reset
            else:
                self.close_connection = True  # the body is left unread: this connection cannot go on
            raise RequestError(413, f"request body of {length} bytes is over this server's limit of "
                                    f"{self.app.max_request_bytes} (--max-request-bytes): split the batch")
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise RequestError(400, f"the body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise RequestError(400, f"the body must be a JSON object, not {type(body).__name__}")
        return body

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload, default=str).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: int, message: str) -> None:
        self._send(status, {"error": message, "status": status})

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - http.server's signature
        if self.app.verbose:
            super().log_message(format, *args)
