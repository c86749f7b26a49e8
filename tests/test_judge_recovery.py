"""Judge failures are recovered, never lost: against a real misbehaving chat server on 127.0.0.1
(tests/misbehaving_server.py), `halbench eval` of MMHal (world questions) and Object HalBench (LLM extraction)
counts every kind of failure (500, 429, timeout, malformed JSON, no rating, a connection dropped mid-body, a
body that does not decode), writes strict JSON with null metrics, and exits 3 with one summary line; the same
command against a healthy server re-asks exactly the failed verdicts and leaves the good ones alone."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner

from halbench.cli import main
from halbench.models.openai import ChatClient
from halbench.runs import read_records
from tests.misbehaving_server import JudgeServer, healthy

FAILS = ["500", "429", "timeout", "malformed", "norating", "drop", "gzip"]


def strict_loads(text: str):
    """json.loads that refuses NaN / Infinity (what a strict parser, e.g. JavaScript's, does)."""
    def bad(c):
        raise ValueError(f"non-standard JSON constant {c}")
    return json.loads(text, parse_constant=bad)


@pytest.fixture
def server():
    s = JudgeServer(timeout_sleep=1.5)
    yield s
    s.close()


def eval_args(server: JudgeServer, out: Path, cache: Path, *extra: str,
              tasks: tuple[str, ...] = ("mmhal", "object_halbench")) -> list[str]:
    opts = {"judge_timeout": 0.5, "judge_max_retries": 0, "judge_backoff": 0.01, "judge_concurrency": 1,
            "judge_cache": str(cache), "max_new_tokens": 24}
    sizes = {"mmhal": 8, "object_halbench": 4}
    args = ["eval", "--tasks", ",".join(tasks), "--judge", f"openai:gpt-judge@{server.url}",
            "--output-dir", str(out), "--batch-size", "8"]
    for task in tasks:
        for k, v in {**opts, "n": sizes[task]}.items():
            args += ["--task-option", f"{task}.{k}={v}"]
    return args + list(extra)


def test_failed_verdicts_are_reasked_exactly_once_on_rerun(server, tmp_path):
    # the 1st distinct prompt gets a good verdict, the next seven each fail a different way, the rest succeed
    server.plan = lambda i: "ok" if i == 0 or i > len(FAILS) else FAILS[i - 1]
    out, cache = tmp_path / "run", tmp_path / "cache.sqlite"
    runner = CliRunner()
    first = runner.invoke(main, eval_args(server, out, cache))
    assert first.exit_code == 3, first.output
    summary = [line for line in first.output.splitlines() if "judge failures over" in line]
    assert len(summary) == 1 and "mmhal 7/8" in summary[0]
    assert {k for k, _ in server.calls} >= set(FAILS)
    results = strict_loads((out / "results.json").read_text())  # written before the non-zero exit
    m = results["tasks"]["mmhal"]["metrics"]
    assert m["n_judge_failures"] == 7 and m["n_judged"] == 1
    assert (out / "report.html").is_file()
    recs = {r["id"]: r for r in read_records(out / "samples" / "mmhal.jsonl")}
    good = [r for r in recs.values() if r["judge_error"] is None]
    assert len(good) == 1 and good[0]["rating"] == 4
    errors = " | ".join(r["judge_error"] for r in recs.values() if r["judge_error"])
    for needle in ("HTTP 500", "HTTP 429", "timeout", "malformed", "Rating", "transport error"):
        assert needle in errors, needle
    objhal_failed = results["tasks"]["object_halbench"]["metrics"]["n_judge_failures"]

    server.plan = healthy
    asked_before = set(server.prompts)
    server.reset_counts()
    second = runner.invoke(main, eval_args(server, out, cache))
    assert second.exit_code == 0, second.output
    # exactly the failed verdicts were asked again, each once; the good one came from the record untouched
    assert len(server.calls) == 7 + objhal_failed
    assert {p for _, p in server.calls} <= asked_before
    again = {r["id"]: r for r in read_records(out / "samples" / "mmhal.jsonl")}
    assert again[good[0]["id"]] == good[0]
    results = strict_loads((out / "results.json").read_text())
    m = results["tasks"]["mmhal"]["metrics"]
    assert m["n_judge_failures"] == 0 and m["n_judged"] == 8 and m["avg_score"] == 4
    assert results["tasks"]["object_halbench"]["metrics"]["n_judge_failures"] == 0

    server.reset_counts()  # a third run has nothing left to ask
    assert runner.invoke(main, eval_args(server, out, cache)).exit_code == 0 and not server.calls


def test_no_valid_verdict_gives_null_metrics_and_gate_can_be_relaxed(server, tmp_path):
    server.plan = lambda i: "500"
    out = tmp_path / "run"
    args = eval_args(server, out, tmp_path / "c.sqlite", "--max-judge-failure-rate", "1", tasks=("mmhal",))
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output  # a rate of 1 allows every failure
    text = (out / "results.json").read_text()
    assert "NaN" not in text
    m = strict_loads(text)["tasks"]["mmhal"]["metrics"]
    assert m["avg_score"] is None and m["hallucination_rate"] is None and m["n_judge_failures"] == 8


@pytest.mark.parametrize("kind", ["drop", "gzip", "malformed", "500", "timeout", "trickle"])
def test_chat_client_counts_every_transport_failure(server, kind):
    server.plan = lambda i: kind
    client = ChatClient(server.url, "m", timeout=0.5, max_retries=1, backoff=0.01)
    start = time.monotonic()
    [res] = client.complete([[{"role": "user", "content": "hi"}]])
    assert time.monotonic() - start < 5  # the timeout bounds the whole call, however slowly bytes arrive
    assert res.error and "after 2 attempts" in res.error
    assert len(server.calls) == 2  # retried once, then counted


def test_tls_error_is_a_counted_failure(server):
    https_url = server.url.replace("http://", "https://")  # TLS handshake against a plain-http server
    [res] = ChatClient(https_url, "m", timeout=1, max_retries=1, backoff=0.01).complete([[{"role": "user",
                                                                                       "content": "x"}]])
    assert res.error and ("SSL" in res.error or "transport" in res.error or "connection" in res.error)


def test_every_request_exception_is_retried(monkeypatch):
    import requests.exceptions as rex

    for exc in (rex.ChunkedEncodingError, rex.ContentDecodingError, rex.SSLError, rex.TooManyRedirects,
                rex.RequestException):
        client = ChatClient("http://127.0.0.1:9/v1", "m", max_retries=2, backoff=0.0)
        calls = []

        def boom(*a, _exc=exc, **k):
            calls.append(1)
            raise _exc("boom")
        monkeypatch.setattr(requests.Session, "post", boom)
        [res] = client.complete([[{"role": "user", "content": "x"}]])
        assert res.error and exc.__name__ in res.error and len(calls) == 3, exc
