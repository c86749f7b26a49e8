"""A real OpenAI-compatible chat server on 127.0.0.1 that misbehaves on purpose (tests only).

`JudgeServer(plan)` answers POST .../chat/completions. `plan(index)` gives the behaviour for the index-th
distinct prompt it sees (the same prompt always gets the same behaviour, so retries and re-asks stay
deterministic); `server.plan` can be swapped between runs (e.g. to `healthy`).

Behaviours: "ok" (a reply with a rating / object list), "500", "429", "timeout" (sleeps past the client's
timeout), "malformed" (200 with a body that is not JSON), "norating" (valid JSON, content without a rating),
"drop" (Content-Length larger than the body, then the connection closes: requests' ChunkedEncodingError),
"gzip" (Content-Encoding: gzip on a body that is not gzip: ContentDecodingError), "trickle" (one byte
every 0.2 s, so no single read times out), "huge" (a 300 kB reply
that does carry a rating).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

SERVED = "judge-served-1"


def reply_text(prompt: str, rating: int = 4) -> str:
    """A reply both judged tasks parse: MMHal's 'Rating: N' and Object HalBench's JSON object list."""
    return f'The answer lists these objects: ["dog", "person"]. Rating: {rating}'


def healthy(_index: int) -> str:
    return "ok"


class JudgeServer:
    def __init__(self, plan: Callable[[int], str] = healthy, timeout_sleep: float = 1.0, huge_chars: int = 300_000):
        self.plan = plan
        self.huge_chars = huge_chars
        self.timeout_sleep = timeout_sleep
        self.prompts: dict[str, int] = {}
        self.calls: list[tuple[str, str]] = []  # (behaviour, prompt)
        self.auth: list[str | None] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):  # /v1/models
                body = json.dumps({"data": [{"id": SERVED}]}).encode()
                self._send(200, body)

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(n))
                prompt = json.dumps(body["messages"])
                with server.lock:
                    idx = server.prompts.setdefault(prompt, len(server.prompts))
                    kind = server.plan(idx)
                    server.calls.append((kind, prompt))
                    server.auth.append(self.headers.get("Authorization"))
                getattr(self, f"_{kind}")(body)

            def _send(self, code, body: bytes, headers=()):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                for k, v in headers:
                    self.send_header(k, v)
                if not any(k == "Content-Length" for k, _ in headers):
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _completion(self, text: str) -> bytes:
                return json.dumps({"model": SERVED, "choices": [{"message": {"content": text}}],
                                   "usage": {"prompt_tokens": 10, "completion_tokens": 5}}).encode()

            def _ok(self, body):
                self._send(200, self._completion(reply_text(json.dumps(body["messages"]))))

            def _huge(self, body):
                self._send(200, self._completion("x " * (server.huge_chars // 2) + reply_text("")))

            def _norating(self, body):
                self._send(200, self._completion("I cannot grade this."))

            def _malformed(self, body):
                self._send(200, b"<html>upstream error</html>")

            def _500(self, body):
                self._send(500, b'{"error": "internal"}')

            def _429(self, body):
                self._send(429, b'{"error": "slow down"}', headers=[("Retry-After", "0")])

            def _timeout(self, body):
                time.sleep(server.timeout_sleep)
                try:
                    self._ok(body)
                except OSError:
                    pass

            def _drop(self, body):
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "5000")
                self.end_headers()
                self.wfile.write(b'{"model": "x", "choi')
                self.wfile.flush()
                self.close_connection = True

            def _trickle(self, body):  # headers at once, then one byte every 0.2 s: never a read timeout
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "100")
                self.end_headers()
                try:
                    for _ in range(100):
                        self.wfile.write(b" ")
                        self.wfile.flush()
                        time.sleep(0.2)
                except OSError:
                    pass
                self.close_connection = True

            def _gzip(self, body):
                self._send(200, b"this is not gzip at all", headers=[("Content-Encoding", "gzip")])

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def kinds(self) -> Counter:
        return Counter(k for k, _ in self.calls)

    def reset_counts(self) -> None:
        with self.lock:
            self.calls.clear()
            self.auth.clear()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
