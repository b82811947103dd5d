"""`grpo-host serve-rewards`: both protocols, micro-batching, a hanging reward, hostile clients.

One server for the module, started as a user starts it (`python -m grpo_host serve-rewards ...
--port 0`) on 127.0.0.1, serving rewards of a plugin written into a temp folder: `has-answer`
(1.0 when the `answer` column is in the completion), `stall` (hangs when the completion says
HANG; its timeout set to 3 s on the command line) and `ends-answer` (1.0 when the completion
ends with `</answer>`, anchored on the end as the `format` reward is). Its header and body
deadlines are short (2 s, 3 s) so the slow-client tests take seconds; every hostile request
must get a JSON 4xx within 2 s, and the server must go on answering.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from .conftest import write_distribution

pytestmark = pytest.mark.slow

PLUGIN = """
    import time

    import grpo_host

    @grpo_host.reward(name="has-answer")
    def has_answer(completion: str, **columns) -> float:
        '''1.0 when the answer column appears in the completion.'''
        answer = columns.get("answer")
        if answer is None:
            return None
        return 1.0 if str(answer) in completion else 0.0

    @grpo_host.reward(name="stall", timeout=30.0)
    def stall(completion: str, **columns) -> float:
        '''Hangs on HANG, sleeps 2 s on SLOW; 0.5 otherwise.'''
        if "HANG" in completion:
            time.sleep(120)
        if "SLOW" in completion:
            time.sleep(2)
        return 0.5

    @grpo_host.reward(name="ends-answer")
    def ends_answer(completion: str, **columns) -> float:
        '''1.0 when the completion ends with </answer>, as format anchors on the end.'''
        return 1.0 if completion.endswith("</answer>") else 0.0
"""
MAX_BYTES = 20_000
MAX_SAMPLES = 50
STALL_TIMEOUT = 3
HEADER_TIMEOUT = 2
BODY_TIMEOUT = 3
MAX_CONNECTIONS = 40
HOSTILE_ANSWER_S = 2.0


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("interop-site")
    write_distribution(root, "grpo-reward-interop-probe", {"interop_probe": PLUGIN}, {"probe": "interop_probe"})
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


def start_cli_server(env: dict[str, str], *args: str) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "grpo_host", "serve-rewards", *args, "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    if "serving rewards" not in line:
        proc.kill()
        raise AssertionError((line, proc.stderr.read()))
    return proc, line.split()[-1]


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="module")
def server(plugin_env):
    proc, url = start_cli_server(
        plugin_env, "has-answer,stall,ends-answer", "--workers", "3",
        "--set", f"stall.timeout={STALL_TIMEOUT}", "--max-request-bytes", str(MAX_BYTES),
        "--max-samples", str(MAX_SAMPLES), "--header-timeout", str(HEADER_TIMEOUT),
        "--body-timeout", str(BODY_TIMEOUT), "--max-connections", str(MAX_CONNECTIONS))
    try:
        yield url
    finally:
        stop(proc)


def post(url: str, payload, *, raw: bytes | None = None, headers: dict | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST",
                                     headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str, headers: dict | None = None) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def address(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("http://").split(":")
    return host, int(port)


def raw_exchange(url: str, data: bytes, *, timeout: float = 10.0) -> tuple[int, dict[str, str], dict, float]:
    """Send bytes as they are; read the answer up to the server's close. (status, headers, body, seconds)."""
    started = time.monotonic()
    with socket.create_connection(address(url), timeout=timeout) as sock:
        sock.sendall(data)
        return read_answer(sock, started)


def read_answer(sock: socket.socket, started: float) -> tuple[int, dict[str, str], dict, float]:
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, f"closed with no answer after {buf!r}"
        buf += chunk
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "closed mid-body"
        rest += chunk
    assert headers["content-type"] == "application/json", headers
    return status, headers, json.loads(rest[:length]), time.monotonic() - started


def still_serving(url: str) -> None:
    status, body = post(url + "/score", {"samples": [{"completion": "it is 7", "answer": "7"}]})
    assert status == 200 and body["results"][0]["total"] == 1.5, body


# -- the protocols ---------------------------------------------------------------------------
def test_health_and_rewards(server):
    status, health = get(server + "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["rewards"] == ["has-answer", "stall", "ends-answer"]
    assert health["lanes"] == 3 and health["workers"] == 3 and health["auth"] is False
    limits = health["limits"]
    assert (limits["max_request_bytes"], limits["max_samples"]) == (MAX_BYTES, MAX_SAMPLES)
    assert (limits["header_timeout_s"], limits["body_timeout_s"]) == (HEADER_TIMEOUT, BODY_TIMEOUT)
    assert "<|im_end|>" in health["end_tokens"]
    # The warm-up that started every worker (this is the module's first request) is not counted.
    assert health["counts"]["samples"] == 0 and all(sum(v.values()) == 0 for v in health["outcomes"].values())
    status, rewards = get(server + "/rewards")
    assert status == 200
    by_name = {r["name"]: r for r in rewards["rewards"]}
    assert by_name["stall"]["timeout"] == STALL_TIMEOUT and by_name["has-answer"]["plugin"] == "grpo-reward-interop-probe"


def test_score_native_protocol(server):
    samples = [
        {"completion": "the answer is 42", "answer": "42", "prompt": "q"},
        {"completion": "the answer is 41", "answer": "42"},
        {"completion": [{"role": "assistant", "content": "42!"}], "answer": 42},
        {"completion": "no reference here"},
    ]
    status, body = post(server + "/score", {"samples": samples})
    assert status == 200, body
    assert body["names"] == ["has-answer", "stall", "ends-answer"]
    got = [(r["rewards"]["has-answer"]["outcome"], r["rewards"]["has-answer"]["score"], r["total"])
           for r in body["results"]]
    assert got == [("ok", 1.0, 1.5), ("ok", 0.0, 0.5), ("ok", 1.0, 1.5), ("not_applicable", None, 0.5)]
    assert all(r["rewards"]["stall"]["score"] == 0.5 for r in body["results"])


def test_end_tokens_are_cut_off_before_scoring(server):
    """OpenRLHF decodes with skip_special_tokens=False: the EOS must not cost the format score."""
    clean = "<think>6*7</think><answer>42</answer>"
    tails = ["", "<|im_end|>", "<|im_end|><|endoftext|><|endoftext|>", "</s>", "<|eot_id|>\n", "<end_of_turn>"]
    status, body = post(server + "/score", {"samples": [{"completion": clean + t} for t in tails]
                                             + [{"completion": [{"role": "assistant", "content": clean + "<|im_end|>"}]}]})
    assert status == 200, body
    assert [r["rewards"]["ends-answer"]["score"] for r in body["results"]] == [1.0] * (len(tails) + 1)
    # Not an end token, or not at the end: left alone.
    status, body = post(server + "/score", {"samples": [{"completion": clean + "<|im_start|>"},
                                                        {"completion": "<|im_end|>" + clean + " trailing"}]})
    assert [r["rewards"]["ends-answer"]["score"] for r in body["results"]] == [0.0, 0.0]


def test_openrlhf_get_reward(server):
    payload = {
        "query": ["<|user|>What is 6*7?<|assistant|>It is 42", "<|user|>What is 6*7?<|assistant|>It is 41",
                  "<|user|>Say 42<|assistant|>Nope"],
        "prompts": ["<|user|>What is 6*7?<|assistant|>", "<|user|>What is 6*7?<|assistant|>",
                    "<|user|>Say 42<|assistant|>"],
        "labels": ["42", "42", "42"],
    }
    status, body = post(server + "/get_reward", payload)
    assert status == 200, body
    # The third query's prompt holds "42", the response does not: the prompt is cut off first.
    assert body["rewards"] == [1.5, 0.5, 0.5]
    assert body["scores"] == body["rewards"]
    assert body["extra_logs"]["has-answer"] == [1.0, 0.0, 0.0]
    assert body["extra_logs"]["stall/failed"] == [0.0, 0.0, 0.0]
    # Only `query`, as OpenRLHF's plain reward-model client sends it: no label, so not applicable.
    status, body = post(server + "/get_reward", {"query": ["anything"]})
    assert status == 200 and body["rewards"] == [0.5] and body["extra_logs"]["has-answer/failed"] == [1.0]


def test_openrlhf_query_ending_in_eos_scores_as_without(server):
    prompt = "<|im_start|>user\nWhat is 6*7?<|im_end|>\n<|im_start|>assistant\n"
    response = "<think>6*7=42</think><answer>42</answer>"
    answers = [post(server + "/get_reward", {"query": [prompt + response + tail], "prompts": [prompt],
                                             "labels": ["42"]}) for tail in ("", "<|im_end|>")]
    assert answers[0] == answers[1]
    assert answers[0][1]["rewards"] == [2.5] and answers[0][1]["extra_logs"]["ends-answer"] == [1.0]


def test_openrlhf_client_request_shape(server):
    """OpenRLHF 0.11's remote-RM client (openrlhf/utils/agent.py, SingleTurnAgentExecutor
    ._fetch_rewards_via_http): an aiohttp session per request, `session.post(url, json=...)`
    with one sample, `raise_for_status()`, `await response.json()`, every rollout at once; then
    `torch.tensor([rewards_info["rewards"]])` (samples_generator.py): a list of one number."""
    aiohttp = pytest.importorskip("aiohttp")
    import asyncio

    prompt = "<|im_start|>user\nWhat is {0}+{0}?<|im_end|>\n<|im_start|>assistant\n"

    async def one(i: int) -> tuple[int, dict]:
        query = prompt.format(i) + f"<think>sum</think><answer>{2 * i + i % 2}</answer><|im_end|>"
        payload = {"query": [query], "prompts": [prompt.format(i)], "labels": [str(2 * i)]}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=180)) as session:
            async with session.post(server + "/get_reward", json=payload) as response:
                response.raise_for_status()
                return i, await response.json()

    async def all_at_once() -> list[tuple[int, dict]]:
        return await asyncio.gather(*(one(i) for i in range(32)))

    for i, info in asyncio.run(all_at_once()):
        expected = (1.0 if i % 2 == 0 else 0.0) + 0.5 + 1.0
        assert info["rewards"] == [expected] and info["scores"] == [expected], (i, info)
        assert info["extra_logs"]["ends-answer"] == [1.0]


# -- many clients, one hanging sample --------------------------------------------------------
def test_32_clients_one_sample_each_get_their_own_scores_batched(server):
    """32 clients, one sample per request, for a bounded time: nothing lost, nothing mixed up,
    and fewer batches than requests (they were scored together)."""
    before = get(server + "/health")[1]["counts"]
    stop_at = time.monotonic() + 6
    wrong: list = []

    def client(k: int) -> int:
        conn = http.client.HTTPConnection(*address(server), timeout=60)
        sent = 0
        while time.monotonic() < stop_at:
            value = k * 1000 + sent
            answer = str(value if sent % 3 else value + 1)  # every third one wrong on purpose
            body = json.dumps({"samples": [{"completion": f"value {value}", "answer": answer}], "details": False})
            conn.request("POST", "/score", body, {"Content-Type": "application/json"})
            response = conn.getresponse()
            payload = json.loads(response.read())
            expected = 1.0 if sent % 3 else 0.0
            got = payload["results"][0]["rewards"]["has-answer"]["score"] if response.status == 200 else payload
            if got != expected:
                wrong.append((k, sent, got))
            sent += 1
        conn.close()
        return sent

    with ThreadPoolExecutor(max_workers=32) as pool:
        sent = sum(pool.map(client, range(32)))
    assert not wrong, wrong[:5]
    after = get(server + "/health")[1]["counts"]
    assert after["requests"] - before["requests"] == sent and after["samples"] - before["samples"] == sent
    assert after["batches"] - before["batches"] < sent, (before, after, sent)


def test_a_hanging_sample_stalls_only_its_own_batch(server):
    samples = [{"completion": "fine 1", "answer": "1"}, {"completion": "HANG", "answer": "x"},
               {"completion": "fine 2", "answer": "2"}]
    hung: dict = {}

    def hang() -> None:
        started = time.monotonic()
        hung["answer"] = post(server + "/score", {"samples": samples})
        hung["seconds"] = time.monotonic() - started

    thread = threading.Thread(target=hang)
    thread.start()
    time.sleep(0.5)  # the hanging batch is in its lane
    latencies = []
    while thread.is_alive() and len(latencies) < 200:
        started = time.monotonic()
        still_serving(server)
        latencies.append(time.monotonic() - started)
    thread.join()
    status, body = hung["answer"]
    assert status == 200, body
    stall = [r["rewards"]["stall"] for r in body["results"]]
    assert [s["outcome"] for s in stall] == ["ok", "timeout", "ok"]
    assert f"{STALL_TIMEOUT} s budget" in stall[1]["details"]["error"]
    assert body["results"][1]["total"] == 0.0  # has-answer still scored it; the timeout adds nothing
    assert STALL_TIMEOUT - 0.5 < hung["seconds"] < STALL_TIMEOUT + 20
    # Meanwhile the other lane answered, each well inside the hanging sample's timeout.
    assert len(latencies) >= 3 and max(latencies) < STALL_TIMEOUT / 2, latencies
    assert get(server + "/health")[1]["outcomes"]["stall"]["timeout"] >= 1


# -- hostile requests: each a JSON 4xx within 2 s, and the server goes on --------------------
def request_bytes(method: str, path: str, body: bytes = b"", headers: dict | None = None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    headers = {"Content-Length": str(len(body)), **(headers or {})}
    lines += [f"{k}: {v}" for k, v in headers.items() if v is not None]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


DEEP = b'{"samples": ' + b"[" * 9_000 + b"]" * 9_000 + b"}"
DEEPISH = b'{"samples": [{"completion": "x", "n": ' + b"[" * 70 + b"]" * 70 + b"}]}"
HOSTILE = {
    "nested 9000 deep": (request_bytes("POST", "/score", DEEP), 400, "nested too deeply"),
    "nested 70 deep": (request_bytes("POST", "/score", DEEPISH), 400, "at most 64 levels"),
    "5000-digit integer": (request_bytes("POST", "/score", b'{"samples": [{"completion": "x", "n": '
                                         + b"7" * 5000 + b"}]}"), 400, "number of 5000 characters"),
    "5000-digit float": (request_bytes("POST", "/score", b'{"samples": [], "x": 0.' + b"1" * 5000 + b"}"),
                         400, "number of 5002 characters"),
    "NaN": (request_bytes("POST", "/score", b'{"samples": [{"completion": "x", "n": NaN}]}'), 400, "NaN is not JSON"),
    "invalid UTF-8": (request_bytes("POST", "/score", b'{"samples": [{"completion": "\xff\xfe"}]}'), 400,
                      "not valid JSON"),
    "empty body": (request_bytes("POST", "/score"), 400, "the body is empty"),
    "Content-Length -1": (request_bytes("POST", "/score", b"{}", {"Content-Length": "-1"}), 400, "malformed"),
    "Content-Length not a number": (request_bytes("POST", "/score", b"{}", {"Content-Length": "ten"}), 400,
                                    "malformed"),
    "two Content-Lengths": (request_bytes("POST", "/score", b"{}", {"Content-Length": "2\r\nContent-Length: 5"}),
                            400, "malformed"),
    "not HTTP": (b"HELLO THERE\r\n\r\n", 400, "malformed"),
    "headers over 64 KiB": (request_bytes("GET", "/health", headers={"X-Big": "a" * 70_000}), 400, "over 65536 bytes"),
    "body over the limit, announced": (request_bytes("POST", "/score", b"", {"Content-Length": str(50 * 2**20)}),
                                       413, "over this server's limit of 20000"),
    "body over the limit, chunked": (
        request_bytes("POST", "/score", b"%x\r\n%s\r\n" % (30_000, b"x" * 30_000),
                      {"Content-Length": None, "Transfer-Encoding": "chunked"}), 413, "limit of 20000 bytes"),
    "PUT": (request_bytes("PUT", "/score", b"{}"), 405, "takes POST"),
    "DELETE": (request_bytes("DELETE", "/score"), 405, "takes POST"),
    "PATCH": (request_bytes("PATCH", "/get_reward", b"{}"), 405, "takes POST"),
    "GET on a POST endpoint": (request_bytes("GET", "/score"), 405, "takes POST"),
    "POST on a GET endpoint": (request_bytes("POST", "/health", b"{}"), 405, "takes GET"),
    "unknown path": (request_bytes("GET", "/admin"), 404, "POST /get_reward"),
    "too many samples": (request_bytes("POST", "/score", json.dumps({"samples": [{"completion": "a"}] * 51}).encode()),
                         413, "at most 50"),
    "query not text": (request_bytes("POST", "/get_reward", b'{"query": [{"a": 1}]}'), 400, "query[0] must be text"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_request_gets_a_json_4xx_quickly(server, case):
    data, status, message = HOSTILE[case]
    got, headers, body, seconds = raw_exchange(server, data)
    assert got == status and body["status"] == status and message in body["error"], (got, body)
    assert seconds < HOSTILE_ANSWER_S, seconds
    if status == 405:
        assert headers["allow"] == ("GET" if "health" in body["error"] else "POST")
    if status == 413 and "limit" in message:
        assert headers.get("connection") == "close"
    still_serving(server)


@pytest.mark.parametrize(("payload", "message"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "must be a JSON object"),
    (json.dumps({"samples": "x"}).encode(), "'samples' must be a list"),
    (json.dumps({"samples": [{"answer": "1"}]}).encode(), "samples[0] has no 'completion'"),
    (json.dumps({"samples": [{"completion": 7}]}).encode(), "a completion must be text"),
    (json.dumps({"samples": [], "extra": 1}).encode(), "unknown field(s) extra"),
    (json.dumps({"samples": [], "details": "yes"}).encode(), "'details' must be true or false"),
    (json.dumps({"prompts": ["a"]}).encode(), "needs 'query'"),
    (json.dumps({"query": ["a", "b"], "labels": ["1"]}).encode(), "'labels' must be a list as long as 'query' (2 items)"),
])
def test_malformed_fields_are_clear_400s(server, payload, message):
    path = "/get_reward" if b"query" in payload or b"prompts" in payload else "/score"
    status, body = post(server + path, None, raw=payload)
    assert status == 400 and message in body["error"], body


def trickle(url: str, first: bytes, rest: bytes, every: float = 1.0) -> tuple[int, dict, float]:
    """Send ``first`` at once, then ``rest`` a byte every ``every`` s, until the server answers."""
    started = time.monotonic()
    with socket.create_connection(address(url), timeout=30) as sock:
        sock.sendall(first)
        try:
            for byte in rest:
                sock.sendall(bytes([byte]))
                time.sleep(every)
        except OSError:  # cut off mid-send: read what the server said
            pass
        status, _, body, _ = read_answer(sock, started)
        return status, body, time.monotonic() - started


def test_slow_clients_are_cut_off(server):
    """A client sending a byte a second: headers cut off at --header-timeout, a body at
    --body-timeout (408 JSON, connection closed); the server meanwhile answers everyone else."""
    head, body_part = request_bytes("POST", "/score", b'{"samples": []}' + b" " * 40).split(b"\r\n\r\n", 1)
    with ThreadPoolExecutor(max_workers=2) as pool:
        slow_head = pool.submit(trickle, server, b"", head + b"\r\n\r\n" + body_part)
        slow_body = pool.submit(trickle, server, head + b"\r\n\r\n", body_part)
        time.sleep(0.5)
        still_serving(server)  # while both trickle
        status, body, seconds = slow_head.result()
        assert status == 408 and "headers did not arrive within 2 s" in body["error"], body
        assert HEADER_TIMEOUT - 0.5 < seconds < HEADER_TIMEOUT + 3
        status, body, seconds = slow_body.result()
        assert status == 408 and "body did not arrive within 3 s" in body["error"], body
        assert BODY_TIMEOUT - 0.5 < seconds < BODY_TIMEOUT + 3
    still_serving(server)


def test_defaults_cut_a_trickling_client_off_within_60_s():
    from grpo_host.interop.server import Limits

    limits = Limits()
    assert limits.header_timeout_s + limits.body_timeout_s < 60


def test_open_connections_are_capped_and_idle_ones_expire(server):
    socks = []
    try:
        for _ in range(MAX_CONNECTIONS):
            socks.append(socket.create_connection(address(server), timeout=10))
        time.sleep(0.3)
        status, _, body, seconds = raw_exchange(server, request_bytes("GET", "/health"))
        assert status == 503 and f"at most {MAX_CONNECTIONS} open connections" in body["error"], body
        assert seconds < HOSTILE_ANSWER_S
        # Connections that never send a request are cut at the header deadline: room again.
        time.sleep(HEADER_TIMEOUT + 1.5)
        still_serving(server)
    finally:
        for sock in socks:
            sock.close()


def test_many_trickling_connections_do_not_hold_the_server(server):
    """Half the connection cap of clients trickling headers, a byte every 0.5 s: others are served."""
    socks = [socket.create_connection(address(server), timeout=10) for _ in range(MAX_CONNECTIONS // 2)]
    try:
        for _ in range(3):
            for sock in socks:
                try:
                    sock.sendall(b"G")
                except OSError:
                    pass
            started = time.monotonic()
            still_serving(server)
            assert time.monotonic() - started < HOSTILE_ANSWER_S
            time.sleep(0.5)
    finally:
        for sock in socks:
            sock.close()


# -- auth, shutdown, the exported file -------------------------------------------------------
def test_exported_file_scores_through_the_server(server, tmp_path, plugin_env):
    """`export verl --url`: the file needs no grpo-host where the trainer runs."""
    target = tmp_path / "verl_reward.py"
    proc = subprocess.run([sys.executable, "-m", "grpo_host", "export", "verl", "--url", server, "-o", str(target)],
                          capture_output=True, text=True, env=plugin_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    # A bare interpreter that cannot import grpo_host: -I ignores PYTHONPATH and user site.
    script = (
        "import importlib.util, json, sys\n"
        f"spec = importlib.util.spec_from_file_location('custom_module', {str(target)!r})\n"
        "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module)\n"
        "assert 'grpo_host' not in sys.modules\n"
        "print(json.dumps([module.compute_score(data_source='src', solution_str='it is 42<|im_end|>',\n"
        "                                       ground_truth='42', extra_info={'index': 3}),\n"
        "                  module.compute_score(data_sources=['a', 'b'], solution_strs=['42', 'x'],\n"
        "                                       ground_truths=['42', '42'], extra_infos=[None, None])]))\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    single, batch = json.loads(proc.stdout)
    assert single == {"score": 1.5, "has-answer": 1.0, "has-answer/failed": 0.0, "stall": 0.5, "stall/failed": 0.0,
                      "ends-answer": 0.0, "ends-answer/failed": 0.0}
    assert [b["score"] for b in batch] == [1.5, 0.5]


def test_token_auth(plugin_env, tmp_path):
    env = {**plugin_env, "PROBE_TOKEN": "s3cret-token-value"}
    proc, url = start_cli_server(env, "has-answer", "--workers", "1", "--token-env", "PROBE_TOKEN")
    try:
        sample = {"samples": [{"completion": "7", "answer": "7"}]}
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret-token-value"}):
            status, body = post(url + "/score", sample, headers=headers)
            assert status == 401 and "Bearer <token>" in body["error"], (headers, body)
        assert get(url + "/health")[0] == 401
        status, body = post(url + "/score", sample, headers={"Authorization": "Bearer s3cret-token-value"})
        assert status == 200 and body["results"][0]["total"] == 1.0
        # The exported file sends the token from the variable it names, never holds it.
        target = tmp_path / "r.py"
        done = subprocess.run([sys.executable, "-m", "grpo_host", "export", "verl", "--url", url,
                               "--token-env", "PROBE_TOKEN", "-o", str(target)],
                              capture_output=True, text=True, env=env, timeout=60)
        assert done.returncode == 0, done.stderr
        assert "s3cret" not in target.read_text()
        script = ("import importlib.util, json; spec = importlib.util.spec_from_file_location('custom_module', "
                  f"{str(target)!r}); m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m); "
                  "print(json.dumps(m.compute_score(data_source='s', solution_str='it is 7', ground_truth='7')))")
        out = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, env=env, timeout=60)
        assert out.returncode == 0 and json.loads(out.stdout)["score"] == 1.0, out.stderr
        out = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60,
                             env={k: v for k, v in env.items() if k != "PROBE_TOKEN"})
        assert out.returncode != 0 and "set PROBE_TOKEN where the trainer runs" in out.stderr
    finally:
        stop(proc)
    # No token in the variable: refused at start, saying what to do.
    done = subprocess.run([sys.executable, "-m", "grpo_host", "serve-rewards", "has-answer", "--token-env",
                           "NO_SUCH_VAR_16"], capture_output=True, text=True, env=plugin_env, timeout=60)
    assert done.returncode != 0 and "NO_SUCH_VAR_16" in done.stderr and "unset or empty" in done.stderr


def test_non_loopback_without_token_warns():
    from grpo_host.interop.server import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("")
    assert not is_loopback("my-host.example")


def worker_progress_files(pid: int) -> set[str]:
    """The shared-memory progress files the server's worker processes have mapped."""
    files = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                maps = Path(f"/proc/{child}/maps").read_text()
            except OSError:
                continue
            files |= {line.split()[-1] for line in maps.splitlines() if "grpo-host-progress-" in line}
    return files


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads /proc (Linux)")
def test_sigterm_finishes_in_flight_requests_and_removes_shared_memory(plugin_env):
    proc, url = start_cli_server(plugin_env, "stall", "--workers", "2")
    try:
        files = worker_progress_files(proc.pid)
        assert len(files) == 2 and all(os.path.exists(f) for f in files), files
        in_flight: dict = {}
        thread = threading.Thread(target=lambda: in_flight.update(answer=post(url + "/score", {"samples": [
            {"completion": "SLOW"}]})))
        thread.start()
        time.sleep(0.7)  # the 2 s sample is being scored
        proc.send_signal(signal.SIGTERM)
        thread.join(30)
        assert in_flight["answer"][0] == 200 and in_flight["answer"][1]["results"][0]["total"] == 0.5
        assert proc.wait(timeout=30) == 0
        assert not [f for f in files if os.path.exists(f)]
    finally:
        if proc.poll() is None:
            proc.kill()
