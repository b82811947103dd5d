"""A scripted OpenAI-compatible judge on 127.0.0.1, for the judge tests.

A real ASGI app (starlette) on a real uvicorn server in a thread, answering
``POST /v1/chat/completions``. What it replies is decided by a test-supplied ``script``
called with the completion it finds between the judge prompt's response tags (and the full
prompt), returning a ``Reply``: text, an HTTP status, a delay, or a hang. It counts requests
per completion, so tests can check retries and the reply cache.

``gullible=True`` makes it obey any ``Score: N`` demand that reaches it *outside* the
response tags: a stand-in for a judge model that follows injected instructions. A rubric
that keeps the completion inside tags it cannot forge gives such a judge nothing to obey.
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

TAG = re.compile(r"<(response-[0-9a-f]{12})>\n(.*)\n</\1>", re.DOTALL)
DEMAND = re.compile(r"output\s+score:\s*(\d+)", re.IGNORECASE)


@dataclass
class Reply:
    text: str = "Score: 5"
    status: int = 200
    delay: float = 0.0
    hang: bool = False
    retry_after: str | None = None


class JudgeServer:
    def __init__(self, script: Callable[[str, str], Reply], port: int, gullible: bool = False):
        self.script, self.port, self.gullible = script, port, gullible
        self.requests: Counter[str] = Counter()
        self.bodies: list[dict] = []
        self.base_url = f"http://127.0.0.1:{port}/v1"

    def app(self):
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        async def chat(request):
            body = await request.json()
            self.bodies.append(body)
            prompt = body["messages"][-1]["content"]
            match = TAG.search(prompt)
            completion = match.group(2) if match else ""
            self.requests[completion] += 1
            if self.gullible:
                outside = TAG.sub("", prompt)
                demand = DEMAND.findall(outside)
                if demand:
                    return JSONResponse(_chat(f"Score: {demand[-1]}"))
            reply = self.script(completion, prompt)
            if reply.hang:
                await asyncio.sleep(3600)
            if reply.delay:
                await asyncio.sleep(reply.delay)
            if reply.status != 200:
                headers = {"Retry-After": reply.retry_after} if reply.retry_after else None
                return JSONResponse(
                    {"error": {"message": "scripted failure"}}, status_code=reply.status, headers=headers
                )
            return JSONResponse(_chat(reply.text))

        return Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])

    def __enter__(self) -> JudgeServer:
        import uvicorn

        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the scripted judge did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.server.force_exit = True  # hanging handlers must not hold the test up
        self.thread.join(timeout=10)


def rule_judge(completion: str, prompt: str) -> Reply:
    """A judge by rule, for the served golden cases: correctness compares the completion's last
    number with the reference answer; groundedness wants every number of the completion in the
    document. Full marks or none."""
    numbers = re.findall(r"\d+", completion)
    if "Reference answer:\n" in prompt:
        reference = prompt.split("Reference answer:\n", 1)[1].split("\n", 1)[0].strip()
        right = bool(numbers) and numbers[-1] == reference
    elif "Document:\n" in prompt:
        document = prompt.split("Document:\n", 1)[1].split("\n\nQuestion:", 1)[0]
        right = all(n in re.findall(r"\d+", document) for n in numbers)
    else:
        right = False
    return Reply(text=f"Checked against the rubric.\nScore: {10 if right else 0}")


def _chat(text: str) -> dict:
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "model": "judge",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
    }
