"""Secrets: credentials in URLs never reach config.yaml, results.json, samples, report.html or logs; userinfo
in a URL is refused; an API key goes only to the endpoint it was named for, and never in clear to a remote
host unless --allow-insecure-http. End to end against a real chat server on 127.0.0.1."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner

from halbench.cli import main
from halbench.errors import HalbenchError
from halbench.models.openai import ChatClient, chat_url, key_env_for
from halbench.redact import REDACTED, redact, redact_text, redact_url
from tests.misbehaving_server import JudgeServer

SECRET = "sk-live-7d1e0c-do-not-leak"
SECRET2 = "tok-2b5f-also-secret"


@pytest.mark.parametrize("url, expected", [
    (f"https://gw.example.com/v1?api_key={SECRET}", f"https://gw.example.com/v1?api_key={REDACTED}"),
    (f"https://gw.example.com/v1?key={SECRET}&model=x", f"https://gw.example.com/v1?key={REDACTED}&model=x"),
    (f"https://h/v1?token={SECRET}", f"https://h/v1?token={REDACTED}"),
    (f"https://h/v1?access_token={SECRET}", f"https://h/v1?access_token={REDACTED}"),
    (f"https://blob.example.com/x.png?sv=2020&sig={SECRET}", f"https://blob.example.com/x.png?sv=2020&sig={REDACTED}"),
    (f"https://h/v1?X-Amz-Signature={SECRET}", f"https://h/v1?X-Amz-Signature={REDACTED}"),
    (f"https://h/v1?my_api_token={SECRET}", f"https://h/v1?my_api_token={REDACTED}"),
    (f"http://user:{SECRET}@127.0.0.1:8000/v1", f"http://{REDACTED}@127.0.0.1:8000/v1"),
    (f"https://{SECRET}@h/v1", f"https://{REDACTED}@h/v1"),
    ("http://127.0.0.1:8000/v1?model=llava&temperature=0", "http://127.0.0.1:8000/v1?model=llava&temperature=0"),
    ("https://api.openai.com/v1", "https://api.openai.com/v1"),
])
def test_redact_url(url, expected):
    assert redact_url(url) == expected
    assert redact_url(expected) == expected  # idempotent


def test_redact_walks_strings_in_objects():
    obj = {"model": f"openai:m@http://127.0.0.1:1/v1?api_key={SECRET}", "n": 3,
           "list": [f"see https://h/x?token={SECRET2} now", None], "t": (f"https://u:{SECRET}@h",)}
    out = redact(obj)
    assert SECRET not in repr(out) and SECRET2 not in repr(out)
    assert out["n"] == 3 and out["list"][1] is None and out["list"][0].endswith(" now")
    assert redact_text("no url here") == "no url here"


def test_chat_url_keeps_the_query_at_the_end():
    assert chat_url("http://h:1/v1?api_key=k") == "http://h:1/v1/chat/completions?api_key=k"
    assert chat_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/chat/completions") == "http://h:1/v1/chat/completions"


@pytest.mark.parametrize("url, env, expected", [
    ("https://api.openai.com/v1", None, "OPENAI_API_KEY"),
    ("http://api.openai.com/v1", None, None),  # never over plain http by default
    ("http://127.0.0.1:8000/v1", None, None),  # a local vLLM gets no key unless asked
    ("https://gateway.example.com/v1", None, None),
    ("https://gateway.example.com/v1", "GW_KEY", "GW_KEY"),
    ("https://api.openai.com/v1", "", None),  # '' = send no key
    ("https://api.openai.com/v1", "none", None),
])
def test_key_goes_only_where_asked(url, env, expected):
    assert key_env_for(url, env) == expected


def test_no_key_in_clear_to_a_remote_host():
    with pytest.raises(HalbenchError, match="--allow-insecure-http"):
        ChatClient("http://10.1.2.3:8000/v1", "m", api_key_env="MY_KEY")
    ChatClient("http://10.1.2.3:8000/v1", "m", api_key_env="MY_KEY", allow_insecure_http=True)
    ChatClient("http://10.1.2.3:8000/v1", "m")  # no key named: nothing to protect
    ChatClient("http://localhost:8000/v1", "m", api_key_env="MY_KEY")  # loopback is fine
    ChatClient("http://[::1]:8000/v1", "m", api_key_env="MY_KEY")
    with pytest.raises(HalbenchError, match="credentials"):
        ChatClient(f"http://u:{SECRET}@127.0.0.1:1/v1", "m")


@pytest.fixture
def server():
    s = JudgeServer()
    yield s
    s.close()


def _args(server, out, judge_url, model_url, *extra):
    return ["eval", "--tasks", "mmhal", "--world", "default", "--model", f"openai:served-vlm@{model_url}",
            "--judge", f"openai:gpt-judge@{judge_url}", "--output-dir", str(out),
            "--task-option", "mmhal.n=2", "--task-option", "mmhal.judge_cache=off",
            "--task-option", "mmhal.judge_backoff=0.01", *extra]


def test_tokens_in_urls_never_reach_run_dir_report_or_logs(server, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)  # set, but no endpoint here asked for it
    plan = iter(["500"] + ["ok"] * 100)  # one retry, so a retry warning gets logged
    server.plan = lambda i: next(plan)
    out = tmp_path / "run"
    caplog.set_level(logging.WARNING)
    r = CliRunner().invoke(main, _args(server, out, f"{server.url}?api_key={SECRET2}",
                                       f"{server.url}?token={SECRET2}"))
    assert r.exit_code == 0, r.output
    assert server.calls and all(a is None for a in server.auth)  # OPENAI_API_KEY went nowhere
    for f in out.rglob("*"):
        if f.is_file():
            data = f.read_bytes()
            assert SECRET2.encode() not in data and SECRET.encode() not in data, f
    assert SECRET2 not in r.output and SECRET2 not in caplog.text
    assert "REDACTED" in (out / "config.yaml").read_text()
    assert (out / "report.html").is_file()
    # the redacted config matches itself: the same command resumes instead of refusing
    again = CliRunner().invoke(main, _args(server, out, f"{server.url}?api_key={SECRET2}",
                                           f"{server.url}?token={SECRET2}"))
    assert again.exit_code == 0, again.output


def test_key_sent_to_the_endpoint_that_names_it(server, tmp_path, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", SECRET)
    monkeypatch.setenv("OPENAI_API_KEY", SECRET2)
    r = CliRunner().invoke(main, _args(server, tmp_path / "run", server.url, server.url,
                                       "--judge-api-key-env", "JUDGE_KEY"))
    assert r.exit_code == 0, r.output
    calls = list(zip(server.calls, server.auth))
    judge_auth = {a for (_, p), a in calls if "image_url" not in p}  # the judge is text-only here
    model_auth = {a for (_, p), a in calls if "image_url" in p}
    assert judge_auth == {f"Bearer {SECRET}"} and model_auth == {None}, calls


@pytest.mark.parametrize("flag_url, hint", [
    ("--model", "--model-api-key-env"),
    ("--judge", "--judge-api-key-env"),
])
def test_userinfo_in_url_is_refused_before_anything(server, tmp_path, flag_url, hint):
    bad = server.url.replace("http://", f"http://user:{SECRET}@")
    model_url, judge_url = (bad, server.url) if flag_url == "--model" else (server.url, bad)
    out = tmp_path / "run"
    r = CliRunner().invoke(main, _args(server, out, judge_url, model_url))
    assert r.exit_code == 2 and "credentials" in r.output and hint in r.output, r.output
    assert SECRET not in r.output and not out.exists() and not server.calls


def test_remote_plain_http_with_a_key_is_refused_unless_allowed(tmp_path):
    out = tmp_path / "run"
    args = ["eval", "--tasks", "mmhal", "--world", "default", "--model", "openai:m@http://192.0.2.10:8000/v1",
            "--model-api-key-env", "SOME_KEY", "--output-dir", str(out), "--task-option", "mmhal.n=1"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "--allow-insecure-http" in r.output and not out.exists(), r.output


def test_errors_and_default_output_dir_never_show_a_token(tmp_path, monkeypatch):
    from halbench.cli_common import _default_output_dir

    name = str(_default_output_dir(f"openai:m@http://127.0.0.1:1/v1?api_key={SECRET}", ["pope"]))
    assert SECRET not in name and "REDACTED" in name
    monkeypatch.chdir(tmp_path)
    r = CliRunner().invoke(main, ["eval", "--tasks", "mmhal", "--judge", f"openai:@http://h/v1?token={SECRET}"])
    assert r.exit_code == 2 and SECRET not in r.output, r.output
