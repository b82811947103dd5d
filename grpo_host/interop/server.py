"""The reward server: chosen rewards behind HTTP, for trainers on other machines.

An ASGI app (:class:`RewardApp`) on uvicorn (httptools and uvloop when installed). Requests are
parsed on the event loop and scored by a :class:`~grpo_host.interop.scoring.ScoringPool`:
requests that arrive together are scored as one batch (micro-batching across clients: a free
lane waits up to 2 ms for the requests of clients still at work, see ``active_clients``), on
lanes of one worker process each, so a hanging sample holds up only its own batch while the
other lanes go on; the runtime's per-sample timeouts apply as in training. The server does not
trust its clients: every malformed request gets a JSON 4xx (body size, JSON nesting depth and
number length, bad Content-Length, 405 with ``Allow``), headers and body each have a deadline
(a client trickling bytes is cut off), open connections are capped, a bearer token can be
required, and SIGTERM drains what is in flight and stops the workers (their shared-memory files
go with them). The protocol is documented in docs/serve-rewards.md.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import json
import os
import signal
import socket
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from http import HTTPStatus
from typing import Any

from grpo_host.errors import GrpoHostError
from grpo_host.interop import trainer_side
from grpo_host.interop.end_tokens import DEFAULT_END_TOKENS, strip_completion
from grpo_host.interop.scoring import ScoringPool, check_samples, results_json
from grpo_host.rewards.runtime import BoundReward

DEFAULT_MAX_REQUEST_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_SAMPLES = 4096


@dataclass(frozen=True)
class Limits:
    """What one client may take of the server."""

    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_samples: int = DEFAULT_MAX_SAMPLES
    max_connections: int = 1024
    # From a connection's start (or its last response) until the request's headers are in.
    header_timeout_s: float = 15.0
    # From the headers until the whole body is in: 8 MiB at 2 Mbit/s fits.
    body_timeout_s: float = 40.0
    max_header_bytes: int = 64 * 1024
    max_json_depth: int = 64
    # Digits (and sign, point, exponent) of one JSON number: 4300-digit ints are CPU, not data.
    max_number_chars: int = 100


# Bodies larger than this are parsed off the event loop, so small requests keep flowing.
INLINE_PARSE_BYTES = 256 * 1024
KEEP_ALIVE_S = 15
# Many trainer ranks connect at once; a short backlog resets connections.
BACKLOG = 2048
GRACEFUL_SHUTDOWN_S = 30
# The micro-batching window: a free lane waits up to this long for requests on their way (see
# RewardApp.active_clients) before it scores what is waiting.
GATHER_S = 0.002
# A client answered this recently counts as one whose next request is on its way (trainers' reward
# loops send the next sample at once); after that its connection counts as idle.
RECENT_S = 0.25
# The GIL's switch interval in a serving process (see RewardServer.serve_forever).
SWITCH_INTERVAL_S = 0.0005
ROUTES = {"/health": "GET", "/rewards": "GET", "/score": "POST", "/get_reward": "POST"}


# Set in a request's scope by the connection guard when it enforces the body deadline itself.
BODY_DEADLINE_KEY = "grpo_host.body_deadline"


def body_timeout_text(limits: Limits) -> str:
    return f"the request body did not arrive within {limits.body_timeout_s:g} s (--body-timeout); the connection is closed"


class RequestError(GrpoHostError):
    """A request the server refuses: its HTTP status and a message saying what to do."""

    def __init__(self, status: int, message: str, *, close: bool = False, headers: Sequence[tuple[str, str]] = ()):
        super().__init__(message)
        self.status = status
        self.close = close
        self.headers = list(headers)


class _ClientGone(Exception):
    pass


class _NumberTooLong(ValueError):
    pass


def _error_bytes(status: int, message: str) -> bytes:
    return json.dumps({"error": message, "status": status}).encode()


def json_decoder(limits: Limits) -> json.JSONDecoder:
    """A decoder that refuses numbers longer than the limit and NaN/Infinity (not JSON)."""
    cap = limits.max_number_chars

    def number(kind: type) -> Any:
        def parse(text: str) -> Any:
            if len(text) > cap:
                raise _NumberTooLong(f"a number of {len(text)} characters (this server takes at most {cap})")
            return kind(text)
        return parse

    def constant(name: str) -> Any:
        raise _NumberTooLong(f"{name} is not JSON; send finite numbers (or null)")

    return json.JSONDecoder(parse_int=number(int), parse_float=number(float), parse_constant=constant)


def parse_body(raw: bytes, limits: Limits, decoder: json.JSONDecoder | None = None) -> dict[str, Any]:
    """The request body as a JSON object, or a 400 saying what is wrong with it."""
    if not raw.strip():
        raise RequestError(400, "the body is empty: send a JSON object (see docs/serve-rewards.md)")
    try:
        body = (decoder or json_decoder(limits)).decode(raw.decode("utf-8"))
    except RecursionError:
        raise RequestError(400, f"the body is nested too deeply; this server takes at most {limits.max_json_depth} "
                                "levels of arrays and objects") from None
    except _NumberTooLong as exc:
        raise RequestError(400, f"the body holds {exc}") from None
    except UnicodeDecodeError as exc:
        raise RequestError(400, f"the body is not valid JSON: it is not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except ValueError as exc:
        raise RequestError(400, f"the body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RequestError(400, f"the body must be a JSON object, not {type(body).__name__}")
    stack: list[tuple[Any, int]] = [(body, 1)]
    while stack:
        value, depth = stack.pop()
        if depth > limits.max_json_depth:
            raise RequestError(400, f"the body is nested {depth}+ levels deep; this server takes at most "
                                    f"{limits.max_json_depth} levels of arrays and objects")
        children = value.values() if isinstance(value, dict) else value
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return body


_ENCODER = json.JSONEncoder(default=str)


ARRIVING, IN_POOL = 1, 2


class RewardApp:
    """The ASGI application: routes, auth, limits, and the JSON of both protocols."""

    def __init__(self, pool: ScoringPool, bound: Sequence[BoundReward], *, limits: Limits, label_column: str,
                 end_tokens: Sequence[str], token: str | None):
        self.pool, self.bound, self.limits = pool, list(bound), limits
        self.names = [b.name for b in self.bound]
        self.label_column, self.end_tokens = label_column, list(end_tokens)
        self._strip = functools.partial(strip_completion, tokens=tuple(end_tokens)) if end_tokens else None
        self._token = token.encode() if token else None
        self.started = time.time()
        self.counts = {"requests": 0, "rejected": 0}
        self._decoder = json_decoder(limits)
        # For the micro-batching window: requests being read (not yet in the pool), requests
        # handed to the pool and not answered yet, and the connections answered in the last
        # RECENT_S (by client address, oldest first).
        self._arriving = 0
        self._in_pool = 0
        self._recent: OrderedDict[Any, float] = OrderedDict()

    def active_clients(self) -> int:
        """About how many clients are at work now: their requests read, scored or answered, or
        answered a moment ago (the next one on its way). Read from the lanes' threads."""
        return self._arriving + self._in_pool + len(self._recent)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        client = scope.get("client")
        recent = self._recent
        if recent:
            recent.pop(client, None)
            self._forget_quiet(time.monotonic())  # after a pause the window must not wait for them
        arrival = [ARRIVING]  # where the request is, for active_clients
        self._arriving += 1
        headers: list[tuple[str, str]] = []
        try:
            status, payload = await self._handle(scope, receive, arrival)
        except _ClientGone:
            return
        except RequestError as exc:
            self.counts["rejected"] += exc.status < 500
            status, payload, headers = exc.status, {"error": str(exc), "status": exc.status}, exc.headers
            if exc.close:
                headers = [*headers, ("connection", "close")]
                client = None
        except Exception as exc:  # noqa: BLE001 - the server's own fault, said as JSON, and it goes on
            status = 500
            payload = {"error": f"the reward server failed: {type(exc).__name__}: {exc}", "status": 500}
        finally:
            if arrival[0] == ARRIVING:
                self._arriving -= 1
        body = _ENCODER.encode(payload).encode()
        raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if headers:
            raw_headers += [(k.encode(), v.encode()) for k, v in headers]
        try:
            await send({"type": "http.response.start", "status": status, "headers": raw_headers})
            await send({"type": "http.response.body", "body": body})
        finally:
            if arrival[0] == IN_POOL:  # counted as active until answered: its client comes back soon
                self._in_pool -= 1
        if client is not None:
            now = time.monotonic()
            recent[client] = now
            self._forget_quiet(now)

    def _forget_quiet(self, now: float) -> None:
        """Drop the connections answered over RECENT_S ago (oldest first): they count as idle."""
        recent = self._recent
        while recent:
            oldest = next(iter(recent))
            if now - recent[oldest] <= RECENT_S:
                return
            del recent[oldest]

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                # Uvicorn has drained the requests in flight; stop the workers now, before it
                # re-raises SIGTERM (their shared-memory files go with them).
                await asyncio.to_thread(self.pool.close)
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- routing ---------------------------------------------------------------------------
    async def _handle(self, scope: dict[str, Any], receive: Any, arrival: list[int]) -> tuple[int, dict[str, Any]]:
        path = scope["path"].rstrip("/") or "/"
        allowed = ROUTES.get(path)
        if allowed is None:
            routes = ", ".join(f"{m} {p}" for p, m in ROUTES.items())
            raise RequestError(404, f"no endpoint {path}; endpoints: {routes}")
        if scope["method"] != allowed:
            what = "a JSON body" if allowed == "POST" else "no body"
            raise RequestError(405, f"{path} takes {allowed} ({what}), not {scope['method']}; see docs/serve-rewards.md",
                               headers=[("allow", allowed)])
        if self._token is not None:
            self._check_token(scope, self._token)
        if allowed == "GET":
            return 200, (self.health() if path == "/health" else self.rewards())
        self.counts["requests"] += 1
        raw = await self._read_body(scope, receive)
        if len(raw) > INLINE_PARSE_BYTES:
            body = await asyncio.to_thread(parse_body, raw, self.limits, self._decoder)
        else:
            body = parse_body(raw, self.limits, self._decoder)
        if path == "/score":
            return 200, await self._score(body, arrival)
        return 200, await self._get_reward(body, arrival)

    def _check_token(self, scope: dict[str, Any], expected: bytes) -> None:
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), expected):
            raise RequestError(401, "this server needs 'Authorization: Bearer <token>' (the token it was started "
                                    "with through --token-env)", headers=[("www-authenticate", "Bearer")])

    async def _read_body(self, scope: dict[str, Any], receive: Any) -> bytes:
        limit = self.limits.max_request_bytes
        for name, value in scope["headers"]:
            if name == b"content-length" and int(value) > limit:  # the parser has checked it is a number
                raise RequestError(413, f"request body of {int(value)} bytes is over this server's limit of {limit} "
                                        "(--max-request-bytes): split the batch", close=True)
        # The protocol times the body itself when it can (one timer per request, no task
        # cancellation); the app does only under a protocol that cannot.
        deadline = None if BODY_DEADLINE_KEY in scope else asyncio.get_running_loop().time() + self.limits.body_timeout_s
        chunks, size = [], 0
        while True:
            try:
                message = await receive() if deadline is None else await _receive_by(receive, deadline)
            except TimeoutError:
                raise RequestError(408, body_timeout_text(self.limits), close=True) from None
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise RequestError(413, f"request body over this server's limit of {limit} bytes "
                                        "(--max-request-bytes): split the batch", close=True)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- endpoints -------------------------------------------------------------------------
    async def _scored(self, samples: list[dict[str, Any]], arrival: list[int]) -> dict[str, list]:
        arrival[0] = IN_POOL
        self._arriving -= 1
        self._in_pool += 1
        try:
            return await self.pool.submit(samples, asyncio.get_running_loop())
        except GrpoHostError as exc:  # shutting down
            raise RequestError(503, f"{exc}; retry against a running server") from None

    async def _score(self, body: dict[str, Any], arrival: list[int]) -> dict[str, Any]:
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
        results = await self._scored(samples, arrival)
        return {
            "names": self.names,
            "results": results_json(self.bound, results, len(samples), details=details),
            "seconds": round(time.perf_counter() - start, 6),
        }

    async def _get_reward(self, body: dict[str, Any], arrival: list[int]) -> dict[str, Any]:
        """OpenRLHF's remote reward model: ``{"query", "prompts", "labels"}`` -> ``{"rewards", ...}``."""
        queries = body.get("query")
        if not isinstance(queries, list):
            raise RequestError(400, "a /get_reward request needs 'query': a list of prompt+response strings "
                                    "(OpenRLHF's remote reward model shape; also 'prompts' and 'labels')")
        lists = {"prompts": body.get("prompts"), "labels": body.get("labels")}
        for key, values in lists.items():
            if values is not None and (not isinstance(values, list) or len(values) != len(queries)):
                raise RequestError(400, f"'{key}' must be a list as long as 'query' ({len(queries)} items)")
        bad = next((i for i, q in enumerate(queries) if not isinstance(q, str)), None)
        if bad is not None:
            raise RequestError(400, f"query[{bad}] must be text (the prompt and the response), "
                                    f"not {type(queries[bad]).__name__}")
        self._count_ok(len(queries))
        samples = trainer_side.openrlhf_samples(queries, lists["prompts"], lists["labels"], self.label_column,
                                                self.end_tokens)
        samples = self._checked(samples, strip=False)
        results = results_json(self.bound, await self._scored(samples, arrival), len(samples), details=False)
        totals, logs = trainer_side.flatten(results, self.names)
        return {"rewards": totals, "scores": totals, "extra_logs": logs}

    def _checked(self, samples: Any, strip: bool = True) -> list[dict[str, Any]]:
        if isinstance(samples, list):
            self._count_ok(len(samples))
        try:
            return check_samples(samples, self._strip if strip else None)
        except GrpoHostError as exc:
            raise RequestError(400, str(exc)) from None

    def _count_ok(self, count: int) -> None:
        if count > self.limits.max_samples:
            raise RequestError(413, f"{count} samples in one request; this server takes at most "
                                    f"{self.limits.max_samples} (--max-samples): split the batch")

    def health(self) -> dict[str, Any]:
        from grpo_host import __version__

        return {
            "status": "ok",
            "version": __version__,
            "rewards": self.names,
            "uptime_s": round(time.time() - self.started, 3),
            "workers": self.pool.workers,
            "lanes": len(self.pool.runtimes),
            "busy_lanes": self.pool.busy,
            "pending": self.pool.pending,
            "counts": {**self.counts, **self.pool.counts},
            "outcomes": self.pool.totals,
            "limits": asdict(self.limits),
            "auth": self._token is not None,
            "end_tokens": self.end_tokens,
        }

    def rewards(self) -> dict[str, Any]:
        return {"rewards": [b.provenance() | {"description": b.spec.description} for b in self.bound]}


if sys.version_info >= (3, 11):
    async def _receive_by(receive: Any, deadline: float) -> dict[str, Any]:
        async with asyncio.timeout_at(deadline):
            return await receive()
else:  # pragma: no cover - Python 3.10
    async def _receive_by(receive: Any, deadline: float) -> dict[str, Any]:
        remaining = deadline - asyncio.get_running_loop().time()
        try:
            return await asyncio.wait_for(receive(), max(remaining, 0.0))
        except asyncio.TimeoutError:
            raise TimeoutError from None


# -- the connection guard ------------------------------------------------------------------
def _reply_and_close(transport: Any, status: int, message: str) -> None:
    """A JSON answer written straight to the socket, for what happens before the app is called."""
    if transport.is_closing():
        return
    body = _error_bytes(status, message)
    head = (f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n")
    transport.write(head.encode() + body)
    transport.close()


class _CoalescingTransport:
    """A transport whose writes within one event-loop step go out as one: uvicorn writes a
    response's head and body separately, two syscalls (and, with TCP_NODELAY, two segments) per
    answer; on a loopback-heavy trainer node each one costs as much as the rest of the request.
    When the transport has nothing buffered, the bytes go straight to the socket with
    ``os.write``, which lets go of the GIL during the system call (uvloop's ``write`` holds it):
    on loopback the kernel delivers the segment to the client inside that call, tens of µs per
    answer during which the lanes could not run."""

    __slots__ = ("_transport", "_loop", "_chunks", "_scheduled", "_fd")

    def __init__(self, transport: Any, loop: asyncio.AbstractEventLoop):
        self._transport, self._loop = transport, loop
        self._chunks: list[bytes] = []
        self._scheduled = False
        sock = transport.get_extra_info("socket")
        try:
            self._fd = sock.fileno() if sock is not None else -1
        except (AttributeError, OSError):
            self._fd = -1

    def write(self, data: bytes) -> None:
        self._chunks.append(data)
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        self._scheduled = False
        if not self._chunks:
            return
        data = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self._chunks.clear()
        transport = self._transport
        if transport.is_closing():
            return
        if self._fd >= 0 and not transport.get_write_buffer_size():
            try:
                sent = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                sent = 0  # the transport's own write sees the error and closes the connection
            if sent == len(data):
                return
            data = data[sent:]
        transport.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


# The guards are mixins put in front of uvicorn's protocol class by guarded_protocol (uvicorn is
# imported only when a server starts); typed loosely, so their super() calls into it check.
_UvicornProtocol: Any = object


class _ConnectionGuard(_UvicornProtocol):
    """What uvicorn leaves out of a connection: a deadline for a request's headers (uvicorn only
    times out idle keep-alive connections, so a client trickling a byte at a time held its
    connection forever), a cap on open connections, coalesced writes, and JSON instead of plain
    text for a request the parser rejects. ``limits`` is set on the class guarded_protocol makes."""

    limits: Limits
    _header_timer: asyncio.TimerHandle | None = None
    _body_timer: asyncio.TimerHandle | None = None
    _header_bytes = 0
    _refusal = ""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.transport = _CoalescingTransport(transport, self.loop)
        cap = self.limits.max_connections
        if len(self.connections) > cap:
            _reply_and_close(transport, 503, f"this server holds at most {cap} open connections "
                                             "(--max-connections); retry shortly")
            return
        self._arm_header_deadline()

    def _arm_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_bytes = 0
        self._header_timer = self.loop.call_later(self.limits.header_timeout_s, self._header_deadline_passed)

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        cycle = self.cycle
        if cycle is not None and not cycle.response_complete:
            return  # a request is in: its body has its own deadline; the next headers get a new one
        _reply_and_close(self.transport, 408, f"the request headers did not arrive within "
                                              f"{self.limits.header_timeout_s:g} s (--header-timeout); "
                                              "the connection is closed")

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        self._stop_body_deadline()
        super().connection_lost(exc)

    def _stop_body_deadline(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def send_400_response(self, msg: str) -> None:
        reason = self._refusal or "the HTTP request line, headers or Content-Length are malformed"
        _reply_and_close(self.transport, 400, f"{reason}; the connection is closed")


class _HttptoolsGuard(_ConnectionGuard):
    """Under httptools (h11 bounds a request's head itself, and answers 400): a cap on header
    bytes (httptools has none), and the body's deadline kept here, one timer per request, so the
    app's read of the body stays plain."""

    def on_headers_complete(self) -> None:
        self.scope[BODY_DEADLINE_KEY] = True
        super().on_headers_complete()
        self._stop_body_deadline()
        if not self.transport.is_closing():
            self._body_timer = self.loop.call_later(self.limits.body_timeout_s, self._body_deadline_passed)

    def on_message_complete(self) -> None:
        self._stop_body_deadline()
        super().on_message_complete()

    def _body_deadline_passed(self) -> None:
        self._body_timer = None
        # The app waiting for the rest of the body gets a disconnect and answers nothing.
        _reply_and_close(self.transport, 408, body_timeout_text(self.limits))

    def on_url(self, url: bytes) -> None:
        self._count_header_bytes(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_header_bytes(len(name) + len(value))
        super().on_header(name, value)

    def _count_header_bytes(self, count: int) -> None:
        self._header_bytes += count
        cap = self.limits.max_header_bytes
        if self._header_bytes > cap:
            self._refusal = f"the request line and headers are over {cap} bytes"
            raise ValueError(self._refusal)  # httptools turns it into a parser error: a 400


def guarded_protocol(limits: Limits) -> type:
    """Uvicorn's HTTP protocol (httptools when installed, else h11) behind the guards above."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    guard = _HttptoolsGuard if hasattr(AutoHTTPProtocol, "on_header") else _ConnectionGuard
    return type("GuardedProtocol", (guard, AutoHTTPProtocol), {"limits": limits})


def is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RewardServer:
    """Serve ``bound`` rewards on ``host:port`` (port 0: a free one; see ``.port``)."""

    def __init__(
        self,
        bound: Sequence[BoundReward],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        workers: int | None = None,
        limits: Limits | None = None,
        label_column: str = "answer",
        end_tokens: Sequence[str] = DEFAULT_END_TOKENS,
        token: str | None = None,
        warm: bool = False,
        verbose: bool = False,
        executor: str = "local",
        executor_options: dict[str, Any] | None = None,
    ):
        import uvicorn

        self.limits = limits or Limits()
        self.sock = _listen(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        try:
            self.pool = ScoringPool(bound, workers=workers, warm=warm, gather_s=GATHER_S, executor=executor,
                                    executor_options=executor_options)
        except BaseException:
            self.sock.close()
            raise
        self.app = RewardApp(self.pool, bound, limits=self.limits, label_column=label_column,
                             end_tokens=end_tokens, token=token)
        self.pool.expected = self.app.active_clients
        self.names = self.app.names
        config = uvicorn.Config(
            self.app, http=guarded_protocol(self.limits), ws="none", lifespan="on", interface="asgi3",
            log_level="info" if verbose else "warning", access_log=verbose, timeout_keep_alive=KEEP_ALIVE_S,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S, backlog=BACKLOG, server_header=False, date_header=False,
            proxy_headers=False,
            h11_max_incomplete_event_size=self.limits.max_header_bytes,
        )
        self.uvicorn = uvicorn.Server(config)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def serve_forever(self) -> None:
        """Serve from this (the main) thread until SIGTERM or Ctrl-C; both drain what is in flight."""
        if threading.current_thread() is threading.main_thread():
            # Uvicorn re-raises the signal it shut down on, under the handler it found: with this
            # one a SIGTERM ends the process with status 0 after the cleanup below.
            signal.signal(signal.SIGTERM, _exit_cleanly)
        # The process is the server's own (`grpo-host serve-rewards`): a lane whose worker has
        # answered waits for the GIL while the event loop parses and answers requests, up to
        # the switch interval (5 ms by default, the length of a one-sample request's whole trip).
        sys.setswitchinterval(SWITCH_INTERVAL_S)
        try:
            self.uvicorn.run(sockets=[self.sock])
        finally:
            self.close()

    def start(self) -> RewardServer:
        """Serve from a background thread (tests, benchmarks, notebooks)."""
        self._thread = threading.Thread(target=self.uvicorn.run, kwargs={"sockets": [self.sock]},
                                        name="grpo-host-server", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.uvicorn.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.uvicorn.started:
            self.close()
            raise GrpoHostError("the reward server did not start within 30 s")
        return self

    def close(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            self.uvicorn.should_exit = True
            self._thread.join(GRACEFUL_SHUTDOWN_S + 5)
        self.pool.close()
        self.sock.close()

    def __enter__(self) -> RewardServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _exit_cleanly(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def _listen(host: str, port: int) -> socket.socket:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, _, _, _, address = infos[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        # Listening from here on: a client that connects before uvicorn runs waits in the backlog.
        sock.listen(BACKLOG)
    except OSError as exc:
        raise GrpoHostError(f"cannot listen on {host}:{port}: {exc.strerror or exc}; "
                            "pick another --port (0 takes a free one)") from None
    sock.set_inheritable(True)
    return sock
