"""Judges over a REAL chat-completions server on 127.0.0.1 (a thread, random port), with injected faults.

`ChatServer` is imported by the task tests too. Its replies are scripted by markers in the prompt:
  [[RATE n]]          reply "Explanation. Rating: n"            (default: Rating: 4)
  [[500]] / [[500x1]] HTTP 500 always / on the first attempt only
  [[SLOW]] / [[SLOWx1]] sleep past the client timeout always / once
  [[BADJSON]]         HTTP 200 with a body that is not JSON
  [[NORATING]] / [[NORATINGx1]] a reply with no rating, always / on the first attempt only
  [[OBJS a|b]]        reply with a ```json ["a", "b"]``` block (Object HalBench extraction)
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from halbench.errors import JudgeError
from halbench.judge_cache import JudgeCache
from halbench.judges import JudgeRequest, RuleJudge, judge_from_options, make_judge, parse_price
from halbench.judges.http import OpenAIJudge, parse_openai_spec
from halbench.schema import Request

SERVED_ID = "judge-model-2024-05-13"
SECRET = "sk-test-SECRET-do-not-store-4f1c9"


class ChatServer:
    """A minimal OpenAI chat-completions server; counts attempts per prompt and keeps every request."""

    def __init__(self, slow_s: float = 1.5):
        self.attempts: Counter = Counter()
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.slow_s = slow_s
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # keep pytest output clean
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.handle(self, body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    @property
    def calls(self) -> int:
        return sum(self.attempts.values())

    def handle(self, h: BaseHTTPRequestHandler, body: dict) -> None:
        msgs = body["messages"]
        content = msgs[-1]["content"]
        prompt = content if isinstance(content, str) else " ".join(p.get("text", "") for p in content)
        with self.lock:
            self.attempts[prompt] += 1
            n = self.attempts[prompt]
            self.requests.append({"auth": h.headers.get("Authorization"), "body": body})
        if "[[500]]" in prompt or ("[[500x1]]" in prompt and n == 1):
            return self._send(h, 500, b'{"error": "boom"}')
        if "[[SLOW]]" in prompt or ("[[SLOWx1]]" in prompt and n == 1):
            time.sleep(self.slow_s)
        if "[[BADJSON]]" in prompt:
            return self._send(h, 200, b'{"choices": [ {"message": ')
        if "[[NORATING]]" in prompt or ("[[NORATINGx1]]" in prompt and n == 1):
            return self._reply(h, "The answer looks fine to me.", prompt)
        objs = re.search(r"\[\[OBJS ([^\]]*)\]\]", prompt)
        if objs:
            items = [o for o in objs.group(1).split("|") if o]
            return self._reply(h, f"Objects:\n```json\n{json.dumps(items)}\n```", prompt)
        m = re.search(r"\[\[RATE (\d+)\]\]", prompt)
        self._reply(h, f"Explanation: checked. Rating: {m.group(1) if m else 4}", prompt)

    def _reply(self, h, text: str, prompt: str) -> None:
        usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        data = {"id": "cmpl-1", "object": "chat.completion", "model": SERVED_ID, "usage": usage,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}]}
        self._send(h, 200, json.dumps(data).encode())

    @staticmethod
    def _send(h, status: int, payload: bytes) -> None:
        try:
            h.send_response(status)
            h.send_header("Content-Type", "application/json")
            h.send_header("Content-Length", str(len(payload)))
            h.end_headers()
            h.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client timed out and left
            pass

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = ChatServer()
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path):
    c = JudgeCache(tmp_path / "cache.sqlite")
    yield c
    c.close()


def rating_parser(text):
    m = re.search(r"Rating: (\d)", text)
    return (int(m.group(1)), None) if m else (None, "no rating")


def http_judge(server, cache=None, **kw):
    kw = {"timeout": 0.5, "max_retries": 2, "backoff": 0.01, "concurrency": 4, **kw}
    return make_judge(f"openai:gpt-4o@{server.url}", cache=cache, **kw)


def reqs(*prompts):
    return [Request(id=str(i), prompt=p) for i, p in enumerate(prompts)]


def test_verdicts_record_returned_model_tokens_and_cost(server, cache, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    judge = http_judge(server, cache, api_key_env="OPENAI_API_KEY")  # a local server gets a key only when named
    verdicts = judge.judge(reqs("a [[RATE 5]]", "b [[RATE 1]]", "c"), rating_parser)
    assert [v.value for v in verdicts] == [5, 1, 4]
    assert {v.model_id for v in verdicts} == {SERVED_ID}
    assert judge.stats.judged == 3 and judge.stats.calls == 3 and judge.stats.failed == 0
    assert judge.stats.prompt_tokens > 0 and judge.stats.completion_tokens > 0
    m = judge.stats.as_metrics(judge.price)
    assert m["judge_cost_usd"] > 0  # gpt-4o has a default list price
    assert all(r["body"]["temperature"] == 0.0 for r in server.requests)
    assert all(r["auth"] == f"Bearer {SECRET}" for r in server.requests)
    assert judge.describe()["returned_model_ids"] == {SERVED_ID: 3}


def test_faults_are_retried_then_counted_as_failures_nothing_lost(server, cache):
    prompts = ["ok [[RATE 6]]", "[[500x1]] [[RATE 2]]", "[[500]]", "[[SLOWx1]] [[RATE 3]]", "[[SLOW]]",
               "[[BADJSON]]", "[[NORATING]]", "[[NORATINGx1]] [[RATE 5]]"]
    judge = http_judge(server, cache)
    verdicts = judge.judge(reqs(*prompts), rating_parser)
    assert len(verdicts) == len(prompts)
    got = {p: (v.value, v.error is None) for p, v in zip(prompts, verdicts)}
    assert got["ok [[RATE 6]]"] == (6, True)
    assert got["[[500x1]] [[RATE 2]]"] == (2, True)  # retried by ChatClient
    assert got["[[SLOWx1]] [[RATE 3]]"] == (3, True)
    assert got["[[NORATINGx1]] [[RATE 5]]"] == (5, True)  # re-asked by the judge
    for p in ("[[500]]", "[[SLOW]]", "[[BADJSON]]", "[[NORATING]]"):
        value, ok = got[p]
        assert value is None and not ok, p
    failed = {p: v.error for p, v in zip(prompts, verdicts) if not v.ok}
    assert "HTTP 500" in failed["[[500]]"] and "timeout" in failed["[[SLOW]]"]
    assert "malformed" in failed["[[BADJSON]]"] and "no rating" in failed["[[NORATING]]"]
    assert server.attempts["[[500]]"] == 3 and server.attempts["[[BADJSON]]"] == 3  # 1 + max_retries
    assert server.attempts["[[NORATING]]"] == 2  # asked once more, then given up
    assert judge.stats.judged == 4 and judge.stats.failed == 4 and judge.stats.total == 8


def test_second_run_is_served_from_cache_with_zero_http_calls(server, cache):
    prompts = [f"item {i} [[RATE {i % 7}]]" for i in range(10)] + ["[[500]]"]
    first = http_judge(server, cache).judge(reqs(*prompts), rating_parser)
    calls = server.calls
    again = http_judge(server, cache)
    second = again.judge(reqs(*prompts[:10]), rating_parser)
    assert server.calls == calls  # zero HTTP calls the second time
    assert [v.value for v in second] == [v.value for v in first[:10]]
    assert all(v.cached and v.model_id == SERVED_ID for v in second)
    assert again.stats.cached == 10 and again.stats.calls == 0
    http_judge(server, cache).judge(reqs("[[500]]"), rating_parser)
    assert server.calls > calls  # failures are not cached: asked again


def test_cache_is_keyed_by_judge_and_full_prompt(server, cache):
    http_judge(server, cache).judge(reqs("x [[RATE 2]]"), rating_parser)
    n = server.calls
    make_judge(f"openai:other-model@{server.url}", cache=cache, timeout=0.5).judge(reqs("x [[RATE 2]]"), rating_parser)
    http_judge(server, cache).judge(reqs("x [[RATE 2]] "), rating_parser)
    assert server.calls == n + 2


def test_max_judge_calls_cap(server, cache):
    judge = http_judge(server, cache, max_calls=3)
    verdicts = judge.judge(reqs(*[f"p{i} [[RATE 5]]" for i in range(5)]), rating_parser)
    assert server.calls == 3 and sum(v.ok for v in verdicts) == 3
    assert all("max_judge_calls=3" in v.error for v in verdicts[3:])
    more = judge.judge(reqs("p9"), rating_parser)  # the cap is for the judge's lifetime
    assert server.calls == 3 and not more[0].ok and judge.stats.capped == 3
    cached = http_judge(server, cache, max_calls=0).judge(reqs("p0 [[RATE 5]]"), rating_parser)
    assert cached[0].ok and cached[0].cached  # cached verdicts cost no call


def test_cap_counts_parse_retries(server):
    judge = http_judge(server, None, max_calls=1)
    v = judge.judge(reqs("[[NORATING]]"), rating_parser)[0]
    assert server.calls == 1 and not v.ok and "no rating" in v.error


def test_key_is_never_written(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MY_JUDGE_KEY", SECRET)
    db = tmp_path / "c.sqlite"
    judge = judge_from_options({"judge": f"openai:gpt-4o@{server.url}", "judge_api_key_env": "MY_JUDGE_KEY",
                                "judge_cache": str(db), "judge_timeout": 0.5, "judge_backoff": 0.01})
    judge.judge(reqs("k [[RATE 5]]"), rating_parser)
    assert server.requests[-1]["auth"] == f"Bearer {SECRET}"
    judge.cache.close()
    on_disk = b"".join(f.read_bytes() for f in tmp_path.iterdir())  # the db and any WAL/journal files
    assert b"k [[RATE 5]]" in on_disk  # the verdict is there...
    assert SECRET.encode() not in on_disk + json.dumps(judge.describe()).encode() + repr(vars(judge)).encode()


def test_spec_errors():
    with pytest.raises(JudgeError, match="credentials"):
        parse_openai_spec("openai:gpt-4o@https://user:pw@api.example.com/v1")
    with pytest.raises(JudgeError):
        make_judge("openai:@")
    with pytest.raises(JudgeError, match="no rule-based judge"):
        make_judge("rule")
    with pytest.raises(JudgeError, match="not found"):
        make_judge("hf:/nonexistent/judge")
    assert parse_price("2.5,10") == (2.5, 10.0) and parse_price(None) is None
    with pytest.raises(JudgeError):
        parse_price("cheap")


def test_judge_id_drops_query_string():
    judge = OpenAIJudge("openai:gpt-4o@https://gw.example.com/v1?token=abc", client=object())
    assert "token" not in judge.judge_id and judge.judge_id.startswith("openai:gpt-4o@https://gw.example.com/v1")


def test_image_aware_http_judge_sends_the_image(server, tmp_path):
    from PIL import Image

    img = tmp_path / "x.png"
    Image.new("RGB", (4, 4), "red").save(img)
    judge = http_judge(server, None, image=True)
    v = judge.judge([Request(id="1", prompt="look [[RATE 6]]", image=str(img))], rating_parser)[0]
    assert v.value == 6 and "image" in judge.capabilities and judge.judge_id.endswith("+image")
    parts = server.requests[-1]["body"]["messages"][-1]["content"]
    assert parts[0]["image_url"]["url"].startswith("data:image/png;base64,")


def test_rule_judge_and_model_protocol():
    judge = RuleJudge(lambda r: f"Rating: {r.fields['n']}", "demo")
    out = judge.generate([JudgeRequest(id="a", prompt="", fields={"n": 3}), Request(id="b", prompt="")])
    assert out[0].text == "Rating: 3" and out[0].model_id == "rule:demo@v1"
    assert out[1].error and "JudgeRequest" in out[1].error
    assert judge.stats.judged == 1 and judge.stats.failed == 1 and judge.cache is None
    verdicts = judge.judge([JudgeRequest(id="c", prompt="", fields={})], rating_parser)
    assert not verdicts[0].ok and "rule failed" in verdicts[0].error
