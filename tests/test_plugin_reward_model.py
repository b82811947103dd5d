"""The reward-model plugin against a tiny model and a reward server started in the test.

Nothing is downloaded: the model is a Qwen2ForSequenceClassification built from a config with
the host's locally trained tokenizer (grpo_host.training.builtin), saved to a temp dir. The
reward server is a ThreadingHTTPServer on 127.0.0.1 that scores with that same model, speaking
OpenRLHF's ``/get_reward`` protocol. What must hold: scores are the model's own logits (each
text scored alone, no padding), batch order and batch size do not change them, the chat
template is applied to chat prompts, and a dead or hanging server gives ``error`` outcomes
after the retries, quickly, never a hang.
"""

from __future__ import annotations

import json
import random
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import grpo_host
from grpo_host.plugins.manager import get_plugin_manager
from grpo_host.rewards.runtime import RewardRuntime, bind_reward, prepare_samples

pytest.importorskip("grpo_reward_model", reason="install plugins/grpo-reward-model (pip install -e)")
torch = pytest.importorskip("torch")
pytest.importorskip("transformers")

PROMPTS = ["What is 2 + 3?", "What is 12 - 7?", "What is 4 * 5?", "Say something.", ""]
COMPLETIONS = [
    "<think>2 + 3 = 5</think> <answer>5</answer>",
    "The answer is 5",
    "<answer>20</answer>",
    "Let me think step by step. The answer is 42 and that is all there is to say about it.",
    "",
]
TOL = 1e-4
TEXTS = [p + c for p, c in zip(PROMPTS, COMPLETIONS, strict=True)]  # what a plain prompt + completion reads as


@pytest.fixture(scope="module")
def tiny_rm(tmp_path_factory):
    """A folder with a tiny random sequence-classification model and its tokenizer."""
    from transformers import Qwen2Config, Qwen2ForSequenceClassification

    from grpo_host.training.builtin import build_tokenizer

    folder = tmp_path_factory.mktemp("tiny-rm")
    tokenizer = build_tokenizer(300)
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, num_labels=1,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id, bos_token_id=None,
    )
    torch.manual_seed(0)
    model = Qwen2ForSequenceClassification(config)
    with torch.no_grad():  # a random head gives logits near 0; spread them so comparisons mean something
        model.score.weight.mul_(50.0)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def reference(tiny_rm):
    """The model's own logit for one text, scored alone (no batch, no padding)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_rm)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_rm, dtype=torch.float32).eval()
    lock = threading.Lock()

    def logit(text: str, special_tokens: bool = True) -> float:
        ids = tokenizer(text, add_special_tokens=special_tokens, return_tensors="pt")
        with lock, torch.inference_mode():
            return float(model(**ids).logits[0, 0])

    logit.tokenizer = tokenizer
    return logit


def score(params: dict, completions, **columns):
    spec = get_plugin_manager().get_reward("reward-model")
    samples = prepare_samples(completions, columns)
    with RewardRuntime([bind_reward(spec, params)], workers=1) as runtime:
        return runtime.score(samples)["reward-model"]


def values(rows) -> list[float | None]:
    """Scores, with None for `not_applicable`; any error fails the test."""
    assert all(r.outcome in ("ok", "not_applicable") for r in rows), [(r.outcome, r.details) for r in rows]
    return [r.score for r in rows]


# -- local mode -------------------------------------------------------------------------------
def test_the_reward_runs_inline_and_its_module_imports_nothing_heavy():
    spec = get_plugin_manager().get_reward("reward-model")
    assert spec.isolation == "inline" and spec.batched
    code = "import sys, grpo_reward_model; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_local_scores_are_the_models_own_logits(tiny_rm, reference):
    rows = score({"model": str(tiny_rm), "batch_size": 4}, COMPLETIONS, prompt=PROMPTS)
    expected = [reference(t) for t in TEXTS[:4]]
    got = values(rows)
    assert got[:4] == pytest.approx(expected, abs=TOL)
    assert got[4] is None and rows[4].outcome == "not_applicable", "an empty prompt and completion: no tokens"
    assert len(set(round(x, 3) for x in expected)) == 4, "the tiny model should tell the texts apart"


def test_local_batch_order_and_batch_size_do_not_change_scores(tiny_rm):
    base = values(score({"model": str(tiny_rm), "batch_size": 3}, COMPLETIONS, prompt=PROMPTS))
    order = list(range(len(COMPLETIONS)))
    random.Random(1).shuffle(order)
    shuffled = values(score({"model": str(tiny_rm), "batch_size": 3}, [COMPLETIONS[i] for i in order],
                            prompt=[PROMPTS[i] for i in order]))
    assert [shuffled[order.index(i)] for i in range(len(order))] == pytest.approx(base, abs=TOL)
    one_by_one = values(score({"model": str(tiny_rm), "batch_size": 1}, COMPLETIONS, prompt=PROMPTS))
    assert one_by_one == pytest.approx(base, abs=TOL)


def test_local_chat_prompt_goes_through_the_chat_template(tiny_rm, reference):
    chat = [{"role": "system", "content": "Think first."}, {"role": "user", "content": "What is 2 + 3?"}]
    completion = [{"role": "assistant", "content": "<answer>5</answer>"}]
    rows = score({"model": str(tiny_rm)}, [completion], prompt=[chat])
    conversation = chat + completion
    templated = reference.tokenizer.apply_chat_template(conversation, tokenize=False)
    assert "<|im_start|>assistant" in templated
    assert values(rows) == pytest.approx([reference(templated, special_tokens=False)], abs=TOL)
    # Without the template the same sample is scored as plain text, and scores differently.
    plain = values(score({"model": str(tiny_rm), "chat_template": False}, [completion], prompt=[chat]))
    assert plain == pytest.approx([reference("Think first.\nWhat is 2 + 3?\n<answer>5</answer>")], abs=TOL)
    assert abs(plain[0] - values(rows)[0]) > 1e-3


def test_local_model_errors_name_the_problem(tiny_rm):
    rows = score({"model": str(tiny_rm), "label_index": 3}, ["x"])
    assert rows[0].outcome == "error" and "label_index 3 is out of range" in rows[0].details["error"]
    rows = score({"model": str(tiny_rm / "missing")}, ["x"])
    assert rows[0].outcome == "error" and "could not load" in rows[0].details["error"]


# -- remote mode ------------------------------------------------------------------------------
class RewardServer:
    """An OpenRLHF-style reward server on 127.0.0.1 with switchable misbehaviour."""

    def __init__(self, reference):
        self.reference = reference
        self.mode = "rewards"  # rewards | scores | list | hang | wrong-count | bad-request
        self.fail_first = 0  # answer 503 to this many requests first
        self.requests: list[dict] = []
        self.release = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append(body)
                if server.fail_first > 0:
                    server.fail_first -= 1
                    return self._send(503, {"error": "warming up"})
                if server.mode == "hang":
                    server.release.wait(30)
                    return
                if server.mode == "bad-request":
                    return self._send(400, {"error": "no such field"})
                rewards = [server.score(q) for q in body["query"]]
                if server.mode == "wrong-count":
                    rewards = rewards[:-1]
                if server.mode == "list":
                    return self._send(200, rewards)
                self._send(200, {"scores" if server.mode == "scores" else "rewards": rewards})

            def _send(self, code, payload):
                data = json.dumps(payload).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/get_reward"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def score(self, text: str) -> float:
        return self.reference(text) if text else 0.0  # an empty query has no tokens to score

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(reference):
    srv = RewardServer(reference)
    yield srv
    srv.close()


def test_remote_openrlhf_protocol_scores_and_batches(server, reference):
    params = {"url": server.url, "batch_size": 2}
    rows = score(params, COMPLETIONS, prompt=PROMPTS, answer=["5", "5", "20", "42", "0"])
    assert values(rows) == pytest.approx([server.score(t) for t in TEXTS], abs=TOL)
    assert [len(r["query"]) for r in server.requests] == [2, 2, 1]
    first = server.requests[0]
    assert first["query"] == [PROMPTS[0] + COMPLETIONS[0], PROMPTS[1] + COMPLETIONS[1]]
    assert first["prompts"] == PROMPTS[:2] and first["completions"] == COMPLETIONS[:2]
    assert first["labels"] == ["5", "5"] and first["messages"] == [None, None]


def test_remote_batch_order_does_not_change_scores(server):
    params = {"url": server.url, "batch_size": 2}
    base = values(score(params, COMPLETIONS, prompt=PROMPTS))
    order = [3, 0, 4, 2, 1]
    shuffled = values(score(params, [COMPLETIONS[i] for i in order], prompt=[PROMPTS[i] for i in order]))
    assert [shuffled[order.index(i)] for i in range(5)] == pytest.approx(base, abs=1e-9)


@pytest.mark.parametrize("mode", ["scores", "list"])
def test_remote_accepts_a_scores_key_and_a_bare_list(server, reference, mode):
    server.mode = mode
    rows = score({"url": server.url}, COMPLETIONS[:2], prompt=PROMPTS[:2])
    assert values(rows) == pytest.approx([reference(t) for t in TEXTS[:2]], abs=TOL)


def test_remote_chat_prompts_send_the_conversation(server):
    chat = [{"role": "user", "content": "What is 2 + 3?"}]
    values(score({"url": server.url}, ["5"], prompt=[chat]))
    sent = server.requests[0]
    assert sent["query"] == ["What is 2 + 3?\n5"]
    assert sent["messages"] == [chat + [{"role": "assistant", "content": "5"}]]


def test_remote_chat_queries_rendered_with_a_tokenizer_template(server, tiny_rm, reference):
    chat = [{"role": "user", "content": "What is 2 + 3?"}]
    rows = score({"url": server.url, "tokenizer": str(tiny_rm)}, ["5"], prompt=[chat])
    templated = reference.tokenizer.apply_chat_template(chat + [{"role": "assistant", "content": "5"}], tokenize=False)
    assert server.requests[0]["query"] == [templated]
    assert values(rows) == pytest.approx([reference(templated)], abs=TOL)


def test_remote_retries_a_transient_failure(server):
    server.fail_first = 1
    rows = score({"url": server.url, "retries": 2, "retry_backoff": 0.01}, COMPLETIONS[:3])
    values(rows)
    assert len(server.requests) == 2


def test_dead_server_gives_errors_after_the_retries_not_a_hang():
    with socket.socket() as sock:  # a port that was free a moment ago: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    start = time.monotonic()
    rows = score({"url": f"http://127.0.0.1:{port}/get_reward", "retries": 2, "retry_backoff": 0.05,
                  "batch_size": 2}, COMPLETIONS, prompt=PROMPTS)
    assert time.monotonic() - start < 10
    assert [r.outcome for r in rows] == ["error"] * len(COMPLETIONS)
    assert "failed 3 times" in rows[0].details["error"] and "Connection refused" in rows[0].details["error"]
    assert "not sent" in rows[-1].details["error"]  # later batches do not wait for the dead server again


def test_hanging_server_times_out_per_request_and_stops_trying(server):
    server.mode = "hang"
    start = time.monotonic()
    rows = score({"url": server.url, "request_timeout": 0.5, "retries": 1, "retry_backoff": 0.01,
                  "batch_size": 2}, COMPLETIONS, prompt=PROMPTS)
    elapsed = time.monotonic() - start
    assert [r.outcome for r in rows] == ["error"] * len(COMPLETIONS)
    assert len(server.requests) == 2, "one batch tried twice, the others not sent"
    assert elapsed < 5, elapsed


def test_wrong_answers_are_errors_and_client_errors_are_not_retried(server):
    server.mode = "wrong-count"
    rows = score({"url": server.url, "retries": 3, "retry_backoff": 0.01}, COMPLETIONS[:3])
    assert [r.outcome for r in rows] == ["error"] * 3 and "2 scores for 3 queries" in rows[0].details["error"]
    server.mode, server.requests = "bad-request", []
    rows = score({"url": server.url, "retries": 3, "retry_backoff": 0.01}, COMPLETIONS[:3])
    assert rows[0].outcome == "error" and "HTTP 400" in rows[0].details["error"]
    assert len(server.requests) == 1


def test_trl_form_turns_errors_into_none(server, reference):
    reward = grpo_host.load_reward("reward-model", url=server.url)
    try:
        got = reward(prompts=PROMPTS[:2], completions=COMPLETIONS[:2])
        assert got == pytest.approx([reference(t) for t in TEXTS[:2]], abs=TOL)
        server.mode = "bad-request"
        assert reward(prompts=PROMPTS[:2], completions=COMPLETIONS[2:4]) == [None, None]
    finally:
        reward.reward_set.close()
