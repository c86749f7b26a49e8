"""OpenAI-compatible chat endpoints (OpenAI, vLLM, SGLang, llama.cpp server, ...) as models and judge backends.

`ChatClient` sends many chat completions with bounded concurrency (a thread pool), retries timeouts, connection
errors, HTTP 429 / 5xx and malformed JSON with exponential backoff (honouring Retry-After), and never raises for
one failed call: the ChatResult carries `error` instead, so a failed call is counted as failed and never scored
as an answer. Every transport failure (timeouts, refused or dropped connections, a body cut off mid-stream,
undecodable content, TLS errors: any `requests.RequestException`) is retried and then counted, never raised.

API keys (see `key_env_for`): a key is sent only where the user asked for it. `api_key_env=NAME` sends $NAME to
that endpoint; with no `api_key_env` (the default) `OPENAI_API_KEY` is sent to https://api.openai.com only, and
nothing to any other host (a vLLM server, a model server on the LAN). A key is never sent over plain http to a
host that is not loopback unless `allow_insecure_http=True` (`--allow-insecure-http`). The key is read at call
time, sent as a Bearer token, and never stored on the object, logged, or put into an error message; URLs in
logs and errors are redacted (halbench.redact), and user:password@ in a URL is refused.

`OpenAIModel` implements the Model protocol on top of it: images travel as base64 data URLs in the OpenAI vision
message format (image part first, then the prompt, like LLaVA's "<image>\\n{prompt}"); greedy requests are sent
with temperature 0; the fingerprint hashes the base URL and the model id the server reports.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from halbench.errors import HalbenchError
from halbench.images import load_image
from halbench.redact import check_no_userinfo, redact_url
from halbench.schema import GenerationSettings, Request, Response
from halbench.models.base import Model

log = logging.getLogger(__name__)

_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp",
         ".gif": "image/gif"}


@dataclass
class ChatResult:
    """One chat completion: `text` ("" on failure), the server's model id, token usage, error, seconds taken."""

    text: str
    model_id: str | None = None
    usage: dict[str, int] | None = None
    error: str | None = None
    latency: float | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


class _Retryable(Exception):
    """A failure worth retrying (timeout, connection error, 429, 5xx, malformed body)."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def chat_url(base_url: str) -> str:
    """'http://h:8000' or 'http://h:8000/v1' or a full '.../chat/completions' URL -> the completions URL.
    A query string (some gateways take their token there) stays at the end."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(base_url)
    path = parts.path.rstrip("/")
    if not path.endswith("/chat/completions"):
        path += "/chat/completions" if path.endswith("/v1") else "/v1/chat/completions"
    return urlunsplit((parts.scheme, parts.netloc, path, parts.query, parts.fragment))


def _sibling_url(url: str, endpoint: str) -> str:
    """The chat URL with /chat/completions replaced by `endpoint` (e.g. /models), query kept."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=parts.path.rsplit("/chat/completions", 1)[0] + endpoint))


#: hosts that get OPENAI_API_KEY when no api_key_env is given (over https only)
OPENAI_HOSTS = frozenset({"api.openai.com"})


def is_loopback(host: str | None) -> bool:
    import ipaddress

    if not host:
        return False
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def key_env_for(url: str, api_key_env: str | None) -> str | None:
    """The env var whose key goes to `url`: the one named (""/"none" = no key), else OPENAI_API_KEY for
    https://api.openai.com only, else none."""
    from urllib.parse import urlsplit

    if api_key_env is not None:
        return None if str(api_key_env).strip().lower() in ("", "none") else str(api_key_env)
    parts = urlsplit(url)
    return "OPENAI_API_KEY" if parts.scheme == "https" and (parts.hostname or "") in OPENAI_HOSTS else None


def check_key_transport(url: str, key_env: str | None, allow_insecure_http: bool) -> None:
    """Refuse to send a key in clear (http) to a host that is not this machine, unless explicitly allowed."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if key_env and parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure_http:
        raise HalbenchError(f"refusing to send the API key in ${key_env} over plain http to {parts.hostname}: use "
                            "https, or pass --allow-insecure-http if this network is trusted")


class ChatClient:
    """Bounded-concurrency, retrying client for POST {base_url}/chat/completions."""

    def __init__(self, base_url: str, model: str, api_key_env: str | None = None, timeout: float = 60,
                 max_retries: int = 3, concurrency: int = 8, backoff: float = 1.0, max_backoff: float = 30.0,
                 allow_insecure_http: bool = False):
        if not base_url.startswith(("http://", "https://")):
            raise HalbenchError(f"chat endpoint URL must start with http:// or https://, got {redact_url(base_url)!r}")
        check_no_userinfo(base_url)
        api_key_env = key_env_for(base_url, api_key_env)
        check_key_transport(base_url, api_key_env, allow_insecure_http)
        self.base_url, self.model, self.api_key_env = base_url.rstrip("/"), model, api_key_env
        self.url = chat_url(base_url)
        self.safe_url = redact_url(self.url)  # what logs and error messages show
        self.timeout, self.max_retries = timeout, max(0, int(max_retries))
        self.concurrency, self.backoff, self.max_backoff = max(1, int(concurrency)), backoff, max_backoff
        self._local = threading.local()

    def __repr__(self) -> str:  # names the env var, never its value
        return f"ChatClient(url={self.safe_url!r}, model={self.model!r}, api_key_env={self.api_key_env!r})"

    # -- public ---------------------------------------------------------------------------------------
    def complete(self, list_of_messages: list[list[dict[str, Any]]], **params: Any) -> list[ChatResult]:
        """One ChatResult per conversation, same order; `params` (temperature, max_tokens, ...) go in the body."""
        if not list_of_messages:
            return []
        workers = min(self.concurrency, len(list_of_messages))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="halbench-chat") as pool:
            return list(pool.map(lambda m: self.complete_one(m, **params), list_of_messages))

    def complete_one(self, messages: list[dict[str, Any]], **params: Any) -> ChatResult:
        """One conversation with retries; returns a ChatResult with `error` set instead of raising."""
        body = {"model": self.model, "messages": messages, **params}
        start, error = time.monotonic(), "no attempt made"
        for attempt in range(self.max_retries + 1):
            try:
                result = self._post(body)
                result.latency = time.monotonic() - start
                return result
            except _Retryable as e:
                error = str(e)
                if attempt == self.max_retries:
                    break
                delay = min(self.max_backoff, self.backoff * 2 ** attempt) * (1 + 0.1 * random.random())
                delay = max(delay, min(e.retry_after or 0.0, self.max_backoff))
                log.warning("chat call to %s failed (%s); retry %d/%d in %.1fs", self.safe_url, e, attempt + 1,
                            self.max_retries, delay)
                time.sleep(delay)
            except _Fatal as e:
                return ChatResult(text="", error=str(e), latency=time.monotonic() - start)
        return ChatResult(text="", error=f"{error} (after {self.max_retries + 1} attempts)",
                          latency=time.monotonic() - start)

    # -- one HTTP call --------------------------------------------------------------------------------
    def _session(self):
        import requests

        if not hasattr(self._local, "session"):  # requests.Session is not thread-safe: one per thread
            self._local.session = requests.Session()
        return self._local.session

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _post(self, body: dict[str, Any]) -> ChatResult:
        import json

        import requests

        start = time.monotonic()
        try:
            r = self._session().post(self.url, json=body, headers=self._headers(), timeout=self.timeout, stream=True)
            raw = self._read_body(r, start)
        except requests.Timeout as e:
            raise _Retryable(f"timeout after {self.timeout}s") from e
        except requests.ConnectionError as e:
            raise _Retryable(f"connection error ({type(e).__name__})") from e
        except requests.RequestException as e:  # body cut off mid-stream, undecodable content, TLS, ...
            raise _Retryable(f"transport error ({type(e).__name__})") from e
        except (OSError, ValueError) as e:  # http.client / urllib3 errors that requests did not wrap
            raise _Retryable(f"transport error ({type(e).__name__})") from e
        text_body = raw.decode(r.encoding or "utf-8", errors="replace")
        snippet = text_body[:200].replace("\n", " ")
        if r.status_code == 429 or r.status_code >= 500:
            raise _Retryable(f"HTTP {r.status_code}: {snippet}", _retry_after(r.headers.get("Retry-After")))
        if r.status_code >= 400:
            raise _Fatal(f"HTTP {r.status_code} from {self.safe_url}: {snippet}")
        try:
            data = json.loads(text_body)
            text = data["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise _Retryable(f"malformed response ({type(e).__name__}): {snippet}") from e
        if not isinstance(text, str):
            raise _Retryable(f"malformed response (content is {type(text).__name__}): {snippet}")
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
        return ChatResult(text=text, model_id=data.get("model"), usage=usage)

    def _read_body(self, r: Any, start: float) -> bytes:
        """The whole body within `timeout` seconds of the request (requests' own timeout is per socket read,
        so a server trickling bytes could hold a call forever) and at most MAX_BODY_BYTES."""
        from urllib3.exceptions import HTTPError as Urllib3Error, ReadTimeoutError

        chunks, size = [], 0
        read = getattr(r.raw, "read1", None) or r.raw.read  # read1: what arrived, not a full 64 kB block
        try:
            while True:
                try:
                    chunk = read(1 << 16, decode_content=True)
                except ReadTimeoutError as e:
                    raise _Retryable(f"timeout after {self.timeout}s") from e
                except Urllib3Error as e:  # cut off mid-body, undecodable gzip, TLS: what requests would wrap
                    raise _Retryable(f"transport error ({type(e).__name__})") from e
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > MAX_BODY_BYTES:
                    raise _Fatal(f"reply from {self.safe_url} is over {MAX_BODY_BYTES // 2**20} MB; not read")
                if time.monotonic() - start > self.timeout:
                    raise _Retryable(f"timeout after {self.timeout}s (the reply was still arriving)")
        finally:
            r.close()
        return b"".join(chunks)


#: the most a chat reply may hold (a reply is text: 64 MB is ~16M tokens)
MAX_BODY_BYTES = 64 << 20


class _Fatal(Exception):
    """A failure that retrying cannot fix (HTTP 4xx other than 429)."""


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


# -- the Model ------------------------------------------------------------------------------------------------
def image_data_url(path: str | Path) -> str:
    """A base64 data URL of the image file (original bytes for png/jpeg/webp/gif, else re-encoded as PNG).

    The file is decoded first so a missing or corrupt image raises DataError naming it before any request.
    """
    import io

    img = load_image(path)
    mime = _MIME.get(Path(path).suffix.lower())
    if mime:
        data = Path(path).read_bytes()
    else:
        buf = io.BytesIO()
        img.save(buf, format="PNG")
        data, mime = buf.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def build_messages(request: Request) -> list[dict[str, Any]]:
    """OpenAI vision chat format for one Request."""
    content: list[dict[str, Any]] = []
    if request.image:
        content.append({"type": "image_url", "image_url": {"url": image_data_url(request.image)}})
    content.append({"type": "text", "text": request.prompt})
    messages = [{"role": "user", "content": content}]
    if request.system:
        messages.insert(0, {"role": "system", "content": request.system})
    return messages


def split_spec(spec: str) -> tuple[str, str]:
    """'MODEL@URL' (optionally prefixed 'openai:') -> (MODEL, URL)."""
    spec = spec.removeprefix("openai:")
    at = spec.find("@http")
    model, url = (spec[:at], spec[at + 1:]) if at >= 0 else spec.rpartition("@")[::2]
    if not model or not url:
        raise HalbenchError(f"OpenAI model spec must look like openai:MODEL@http://host:port/v1, got {spec!r}")
    return model, url


class OpenAIModel(Model):
    """A model served behind an OpenAI-compatible /v1/chat/completions endpoint."""

    backend = "openai"

    def __init__(self, model: str, base_url: str | None = None, api_key_env: str | None = None,
                 timeout: float = 60, max_retries: int = 3, concurrency: int = 8, backoff: float = 1.0,
                 seed: int | None = None, allow_insecure_http: bool = False, **_: Any):
        if base_url is None:
            model, base_url = split_spec(model) if "@" in model else (
                model, os.environ.get("OPENAI_BASE_URL", "https://api.openai.com/v1"))
        self.client = ChatClient(base_url, model, api_key_env=api_key_env, timeout=timeout,
                                 max_retries=max_retries, concurrency=concurrency, backoff=backoff,
                                 allow_insecure_http=allow_insecure_http)
        self.model_id = model
        self.seed = seed
        self.served_model_id: str | None = None
        self.capabilities = frozenset({"generate", "image"})

    def __repr__(self) -> str:
        return f"OpenAIModel({self.client!r})"

    def fingerprint(self) -> str:
        """sha256(base_url, served model id)[:16]; the id comes from a completion, else GET /models."""
        served = self.served_model_id or self._lookup_served_id() or self.model_id
        return hashlib.sha256(f"{self.client.base_url}\0{served}".encode()).hexdigest()[:16]

    def _lookup_served_id(self) -> str | None:
        url = _sibling_url(self.client.url, "/models")
        try:
            r = self.client._session().get(url, headers=self.client._headers(), timeout=self.client.timeout)
            ids = [m.get("id") for m in r.json().get("data", [])]
        except Exception:  # noqa: BLE001 - any failure just means "unknown": fall back to the requested name
            return None
        return self.model_id if self.model_id in ids else None

    def describe(self) -> dict:
        return {**super().describe(), "base_url": redact_url(self.client.base_url),
                "served_model_id": self.served_model_id}

    def _params(self, g: GenerationSettings) -> dict[str, Any]:
        p: dict[str, Any] = {"max_tokens": g.max_new_tokens, "temperature": g.temperature if g.do_sample else 0.0}
        if g.do_sample:
            p["top_p"] = g.top_p
            if self.seed is not None:
                p["seed"] = self.seed
        return p

    def generate(self, requests: list[Request]) -> list[Response]:
        out: list[Response | None] = [None] * len(requests)
        groups: dict[GenerationSettings, list[tuple[int, list]]] = {}
        for i, req in enumerate(requests):
            if req.generation.num_beams > 1:
                out[i] = Response(text="", error="beam search (num_beams > 1) is not supported by the openai backend")
                continue
            try:
                groups.setdefault(req.generation, []).append((i, build_messages(req)))
            except HalbenchError as e:  # missing/corrupt image: this request fails, the others run
                out[i] = Response(text="", error=str(e), model_id=self.model_id)
        for g, items in groups.items():
            results = self.client.complete([m for _, m in items], **self._params(g))
            for (i, _), res in zip(items, results):
                out[i] = self._to_response(res)
        return out  # type: ignore[return-value]

    def _to_response(self, res: ChatResult) -> Response:
        if res.ok and res.model_id:
            self.served_model_id = res.model_id
        usage = res.usage or {}
        return Response(text=res.text.strip() if res.ok else "", error=res.error,
                        model_id=res.model_id or self.model_id,
                        n_generated_tokens=usage.get("completion_tokens"),
                        usage={k: v for k, v in usage.items() if isinstance(v, int)} or None)
