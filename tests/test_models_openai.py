"""ChatClient / OpenAIModel against a real HTTP server on 127.0.0.1 speaking /v1/chat/completions."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from halbench.models import load_model
from halbench.models.openai import ChatClient, OpenAIModel, chat_url, split_spec
from halbench.schema import GenerationSettings, Request

SECRET = "sk-test-3f9a1c-very-secret"


class FakeServer:
    """Threaded server; `behave(n, body) -> (status, payload|bytes, delay_s, headers)` decides each reply."""

    def __init__(self):
        self.calls: list[dict] = []
        self.lock = threading.Lock()
        self.inflight = self.max_inflight = 0
        self.behave = lambda n, body: (200, self.ok_payload(body), 0.0, {})
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_GET(self):
                server._send(self, 200, {"object": "list", "data": [{"id": "m-a"}, {"id": "tiny-served"}]}, {})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    n = len(server.calls)
                    server.calls.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    server.inflight += 1
                    server.max_inflight = max(server.max_inflight, server.inflight)
                try:
                    status, payload, delay, headers = server.behave(n, body)
                    time.sleep(delay)
                    server._send(self, status, payload, headers)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and hung up
                finally:
                    with server.lock:
                        server.inflight -= 1

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    @staticmethod
    def ok_payload(body, text=None):
        last = body["messages"][-1]["content"]
        prompt = last if isinstance(last, str) else next(p["text"] for p in last if p["type"] == "text")
        return {"id": "x", "object": "chat.completion", "model": "tiny-served-2024",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text or f" echo: {prompt} "}}],
                "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}}

    @staticmethod
    def _send(handler, status, payload, headers):
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for k, v in headers.items():
            handler.send_header(k, v)
        handler.end_headers()
        handler.wfile.write(data)


@pytest.fixture
def server():
    s = FakeServer()
    yield s
    s.httpd.shutdown()
    s.httpd.server_close()


def _msgs(n):
    return [[{"role": "user", "content": f"q{i}"}] for i in range(n)]


def test_chat_url():
    assert chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"
    assert split_spec("openai:gpt-4o@http://h:1/v1") == ("gpt-4o", "http://h:1/v1")
    assert split_spec("org/model@x@https://u@h/v1") == ("org/model@x", "https://u@h/v1")


def test_image_arrives_as_data_url(server, tmp_path, monkeypatch):
    from PIL import Image

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    img = tmp_path / "cat.png"
    Image.new("RGB", (8, 6), (10, 200, 30)).save(img)
    model = OpenAIModel("tiny", server.url, backoff=0.01)
    reqs = [Request(id="a", prompt="Is there a cat?", image=str(img), system="Be brief.",
                    generation=GenerationSettings(max_new_tokens=7)),
            Request(id="b", prompt="No image.", generation=GenerationSettings(do_sample=True, temperature=0.7))]
    out = model.generate(reqs)
    assert [r.text for r in out] == ["echo: Is there a cat?", "echo: No image."]
    assert out[0].model_id == "tiny-served-2024" and out[0].n_generated_tokens == 3
    assert out[0].usage == {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8}
    bodies = {c["body"]["messages"][-1]["content"][-1]["text"]: c for c in server.calls}
    first = bodies["Is there a cat?"]
    assert first["path"] == "/v1/chat/completions" and "Authorization" not in first["headers"]
    body = first["body"]
    assert body["model"] == "tiny" and body["max_tokens"] == 7 and body["temperature"] == 0.0
    assert body["messages"][0] == {"role": "system", "content": "Be brief."}
    image_part = body["messages"][1]["content"][0]
    assert image_part["type"] == "image_url"
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    assert base64.b64decode(url.split(",", 1)[1]) == img.read_bytes()
    assert bodies["No image."]["body"]["temperature"] == 0.7
    assert [p["type"] for p in bodies["No image."]["body"]["messages"][0]["content"]] == ["text"]


def test_fingerprint_uses_served_model_id(server):
    model = OpenAIModel("tiny-served", server.url)
    before = model.fingerprint()  # from GET /v1/models
    assert before == hashlib.sha256(f"{server.url}\0tiny-served".encode()).hexdigest()[:16]
    model.generate([Request(id="a", prompt="hi")])
    assert model.served_model_id == "tiny-served-2024"
    assert model.fingerprint() == hashlib.sha256(f"{server.url}\0tiny-served-2024".encode()).hexdigest()[:16]
    assert model.capabilities == {"generate", "image"}
    assert load_model(f"openai:tiny@{server.url}").client.url == server.url + "/chat/completions"


def test_concurrency_is_bounded(server):
    server.behave = lambda n, body: (200, server.ok_payload(body), 0.15, {})
    results = ChatClient(server.url, "m", concurrency=3).complete(_msgs(9))
    assert all(r.ok for r in results)
    assert [r.text for r in results] == [f" echo: q{i} " for i in range(9)]  # order kept
    assert 2 <= server.max_inflight <= 3
    assert all(r.latency >= 0.15 for r in results)


def test_retries_5xx_and_429_then_succeeds(server):
    replies = [(500, {"error": "boom"}, 0, {}), (429, {"error": "slow down"}, 0, {"Retry-After": "0"}), None]
    server.behave = lambda n, body: replies[n] or (200, server.ok_payload(body), 0, {})
    [res] = ChatClient(server.url, "m", max_retries=3, backoff=0.01).complete(_msgs(1))
    assert res.ok and res.text == " echo: q0 " and len(server.calls) == 3


def test_retries_exhausted_sets_error(server):
    server.behave = lambda n, body: (503, {"error": "down"}, 0, {})
    results = ChatClient(server.url, "m", max_retries=2, backoff=0.01).complete(_msgs(2))
    assert all(r.text == "" and "HTTP 503" in r.error and "after 3 attempts" in r.error for r in results)
    assert len(server.calls) == 6


def test_timeout_is_retried_then_error(server):
    server.behave = lambda n, body: (200, server.ok_payload(body), 0.6, {})
    [res] = ChatClient(server.url, "m", timeout=0.2, max_retries=1, backoff=0.01).complete(_msgs(1))
    assert res.error and "timeout" in res.error and len(server.calls) == 2


def test_malformed_json_is_an_error(server):
    server.behave = lambda n, body: (200, b"{not json", 0, {})
    [res] = ChatClient(server.url, "m", max_retries=1, backoff=0.01).complete(_msgs(1))
    assert "malformed" in res.error and len(server.calls) == 2
    server.behave = lambda n, body: (200, {"choices": []}, 0, {})
    [res] = ChatClient(server.url, "m", max_retries=0).complete(_msgs(1))
    assert "malformed" in res.error


def test_client_error_not_retried(server):
    server.behave = lambda n, body: (400, {"error": "bad request"}, 0, {})
    [res] = ChatClient(server.url, "m", max_retries=3, backoff=0.01).complete(_msgs(1))
    assert "HTTP 400" in res.error and len(server.calls) == 1


def test_connection_refused_is_an_error():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    [res] = ChatClient(f"http://127.0.0.1:{port}/v1", "m", max_retries=1, backoff=0.01).complete(_msgs(1))
    assert "connection error" in res.error


def test_api_key_from_env_never_shown(server, monkeypatch, caplog):
    monkeypatch.setenv("HB_TEST_KEY", SECRET)
    replies = [(500, {"error": "boom"}, 0, {})]
    server.behave = lambda n, body: replies[n] if n < len(replies) else (200, server.ok_payload(body), 0, {})
    model = OpenAIModel("tiny", server.url, api_key_env="HB_TEST_KEY", backoff=0.01)
    with caplog.at_level(logging.DEBUG):
        out = model.generate([Request(id="a", prompt="hi"), Request(id="b", prompt="x", image="/no/such.png")])
    assert all(c["headers"]["Authorization"] == f"Bearer {SECRET}" for c in server.calls)
    assert "retry 1/3" in caplog.text
    assert out[0].ok and out[1].error and "/no/such.png" in out[1].error
    assert len(server.calls) == 2  # the request with a missing image never went out
    shown = " ".join([caplog.text, repr(model), repr(model.client), str(model.describe()), str(vars(model.client)),
                      str(vars(model)), str(out)])
    assert SECRET not in shown and "HB_TEST_KEY" in repr(model.client)


def test_beam_search_rejected(server):
    [res] = OpenAIModel("tiny", server.url).generate(
        [Request(id="a", prompt="hi", generation=GenerationSettings(num_beams=3))])
    assert res.error and "num_beams" in res.error and not server.calls
