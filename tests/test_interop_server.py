"""`grpo-host serve-rewards`: both protocols, concurrent clients, a hanging reward, bad requests.

One server for the module, started as a user starts it (`python -m grpo_host serve-rewards ...
--port 0`) on 127.0.0.1, serving two rewards of a plugin written into a temp folder: `has-answer`
(1.0 when the `answer` column is in the completion) and `stall` (hangs when the completion says
HANG; its timeout is set to 1 s on the command line).
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from .conftest import write_distribution

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
        '''Hangs on HANG; 0.5 otherwise.'''
        if "HANG" in completion:
            time.sleep(120)
        return 0.5
"""
MAX_BYTES = 20_000
MAX_SAMPLES = 50


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("interop-site")
    write_distribution(root, "grpo-reward-interop-probe", {"interop_probe": PLUGIN}, {"probe": "interop_probe"})
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def server(plugin_env):
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpo_host", "serve-rewards", "has-answer,stall", "--port", "0", "--workers", "2",
         "--set", "stall.timeout=1", "--max-request-bytes", str(MAX_BYTES), "--max-samples", str(MAX_SAMPLES)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=plugin_env,
    )
    try:
        line = proc.stdout.readline()
        assert line.startswith("serving rewards has-answer, stall on http://127.0.0.1:"), (line, proc.stderr.read())
        yield line.split()[-1]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def post(url: str, payload, *, raw: bytes | None = None) -> tuple[int, dict]:
    data = raw if raw is not None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method="POST", headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_health_and_rewards(server):
    status, health = get(server + "/health")
    assert status == 200 and health["status"] == "ok"
    assert health["rewards"] == ["has-answer", "stall"]
    assert health["limits"] == {"max_request_bytes": MAX_BYTES, "max_samples": MAX_SAMPLES}
    status, rewards = get(server + "/rewards")
    assert status == 200
    by_name = {r["name"]: r for r in rewards["rewards"]}
    assert by_name["stall"]["timeout"] == 1.0 and by_name["has-answer"]["plugin"] == "grpo-reward-interop-probe"


def test_score_native_protocol(server):
    samples = [
        {"completion": "the answer is 42", "answer": "42", "prompt": "q"},
        {"completion": "the answer is 41", "answer": "42"},
        {"completion": [{"role": "assistant", "content": "42!"}], "answer": 42},
        {"completion": "no reference here"},
    ]
    status, body = post(server + "/score", {"samples": samples})
    assert status == 200, body
    assert body["names"] == ["has-answer", "stall"]
    got = [(r["rewards"]["has-answer"]["outcome"], r["rewards"]["has-answer"]["score"], r["total"])
           for r in body["results"]]
    assert got == [("ok", 1.0, 1.5), ("ok", 0.0, 0.5), ("ok", 1.0, 1.5), ("not_applicable", None, 0.5)]
    assert all(r["rewards"]["stall"]["score"] == 0.5 for r in body["results"])


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


def test_concurrent_clients_get_their_own_scores(server):
    def one(i: int):
        samples = [{"completion": f"value {i * 10 + j}", "answer": str(i * 10 + (j % 2) * j)} for j in range(6)]
        status, body = post(server + "/score", {"samples": samples, "details": False})
        assert status == 200, body
        return i, [r["rewards"]["has-answer"]["score"] for r in body["results"]]

    with ThreadPoolExecutor(max_workers=16) as pool:
        results = dict(pool.map(one, range(32)))
    for i, scores in results.items():
        expected = [1.0 if str(i * 10 + (j % 2) * j) in f"value {i * 10 + j}" else 0.0 for j in range(6)]
        assert scores == expected, i


def test_hanging_reward_times_out_and_the_server_goes_on(server):
    samples = [{"completion": "fine 1", "answer": "1"}, {"completion": "HANG", "answer": "x"},
               {"completion": "fine 2", "answer": "2"}]
    started = time.monotonic()
    status, body = post(server + "/score", {"samples": samples})
    took = time.monotonic() - started
    assert status == 200, body
    stall = [r["rewards"]["stall"] for r in body["results"]]
    assert [s["outcome"] for s in stall] == ["ok", "timeout", "ok"]
    assert "1 s budget" in stall[1]["details"]["error"]
    assert body["results"][1]["total"] == 0.0  # has-answer still scored it; the timeout adds nothing
    assert took < 20, took
    # Another client meanwhile and afterwards: answered.
    status, body = post(server + "/score", {"samples": [{"completion": "7", "answer": "7"}]})
    assert status == 200 and body["results"][0]["total"] == 1.5
    assert get(server + "/health")[1]["outcomes"]["stall"]["timeout"] >= 1


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (json.dumps({"samples": "x"}).encode(), 400, "'samples' must be a list"),
        (json.dumps({"samples": [{"answer": "1"}]}).encode(), 400, "samples[0] has no 'completion'"),
        (json.dumps({"samples": [{"completion": 7}]}).encode(), 400, "a completion must be text"),
        (json.dumps({"samples": [], "extra": 1}).encode(), 400, "unknown field(s) extra"),
        (json.dumps({"rows": []}).encode(), 400, "unknown field(s) rows"),
        (json.dumps({"samples": [{"completion": "a"}] * (MAX_SAMPLES + 1)}).encode(), 413, "at most 50"),
    ],
)
def test_malformed_score_requests_are_clear_4xx(server, payload, status, message):
    got, body = post(server + "/score", None, raw=payload)
    assert got == status, body
    assert body["status"] == status and message in body["error"], body


def test_malformed_get_reward_requests(server):
    status, body = post(server + "/get_reward", {"prompts": ["a"]})
    assert status == 400 and "needs 'query'" in body["error"]
    status, body = post(server + "/get_reward", {"query": ["a", "b"], "labels": ["1"]})
    assert status == 400 and "'labels' must be a list as long as 'query' (2 items)" in body["error"]


def test_oversized_request_is_refused_before_it_is_read(server):
    big = {"samples": [{"completion": "x" * 1000, "answer": "1"}] * 30}  # about 31 KB > 20 KB
    status, body = post(server + "/score", big)
    assert status == 413 and "over this server's limit of 20000" in body["error"]
    # Far over the limit: refused from the header alone, the connection closed.
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/score")
    conn.putheader("Content-Length", str(50 * 1024 * 1024))
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 413 and response.getheader("Connection") == "close"
    assert "over this server's limit" in json.loads(response.read())["error"]
    conn.close()


def test_no_content_length_wrong_method_unknown_path(server):
    host, port = server.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    conn.putrequest("POST", "/score")
    conn.putheader("Transfer-Encoding", "chunked")
    conn.endheaders()
    response = conn.getresponse()
    assert response.status == 411 and "Content-Length" in json.loads(response.read())["error"]
    conn.close()
    status, body = get(server + "/score")
    assert status == 405 and "takes POST" in body["error"]
    status, body = get(server + "/nope")
    assert status == 404 and "POST /get_reward" in body["error"]


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
        "print(json.dumps([module.compute_score('src', 'it is 42', '42', {'index': 3}),\n"
        "                  module.compute_score(data_sources=['a', 'b'], solution_strs=['42', 'x'],\n"
        "                                       ground_truths=['42', '42'], extra_infos=[None, None])]))\n"
    )
    proc = subprocess.run([sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    single, batch = json.loads(proc.stdout)
    assert single == {"score": 1.5, "has-answer": 1.0, "has-answer/failed": 0.0, "stall": 0.5, "stall/failed": 0.0}
    assert [b["score"] for b in batch] == [1.5, 0.5]


def test_server_in_process_batches_concurrent_requests(plugin_env, monkeypatch):
    """RewardServer as a library: concurrent requests share one runtime call."""
    from grpo_host.interop.scoring import bind_rewards
    from grpo_host.interop.server import RewardServer
    from grpo_host.manager import PluginManager

    for path in reversed(plugin_env["PYTHONPATH"].split(os.pathsep)):
        if path:
            monkeypatch.syspath_prepend(path)
    bound = bind_rewards(["has-answer"], PluginManager())
    with RewardServer(bound, workers=0).start() as app:
        gate = threading.Event()
        original = app.runtime.score
        held: list[int] = []

        def slow_score(samples):
            if not held:
                held.append(len(samples))
                gate.wait(10)  # hold the first batch until every other request is queued
            return original(samples)

        app.runtime.score = slow_score
        with ThreadPoolExecutor(max_workers=8) as pool:
            futures = [pool.submit(post, app.url + "/score", {"samples": [{"completion": str(i), "answer": str(i)}]})
                       for i in range(8)]
            deadline = time.monotonic() + 10
            while not (held and held[0] + app._jobs.qsize() == 8) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert held and held[0] + app._jobs.qsize() == 8
            gate.set()
            answers = [f.result() for f in futures]
        assert all(status == 200 and body["results"][0]["total"] == 1.0 for status, body in answers)
        assert app.counts["samples"] == 8 and app.counts["batches"] == 2
