"""Credentials out of everything halbench records: config.yaml, results.json, samples, report.html, logs.

A URL can carry a secret in two places: userinfo (`https://user:pass@host/`) and the query string
(`?api_key=...`, `&sig=...`, as some gateways and signed URLs do). `redact_url` replaces each such value with
`REDACTED`; `redact` does it for every URL inside any string of a JSON-like object (dicts, lists, tuples), so
the run directory and the report built from it never show a key. Redaction is idempotent (a redacted config
compares equal to itself on a re-run).

Userinfo in an endpoint URL is refused outright (`check_no_userinfo`): the key belongs in an environment
variable (see halbench.models.openai, `--model-api-key-env` / `--judge-api-key-env`).
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from halbench.errors import HalbenchError

REDACTED = "REDACTED"
#: query parameter names that carry credentials (compared lower-case, '-' read as '_')
SECRET_PARAMS = frozenset({
    "api_key", "apikey", "key", "token", "access_token", "refresh_token", "id_token", "auth", "authorization",
    "sig", "signature", "secret", "client_secret", "password", "pass", "pwd", "x_api_key", "api_token",
    "session", "sessionid", "x_amz_signature", "x_amz_credential", "x_amz_security_token", "x_goog_signature",
    "x_goog_credential", "code",
})
_URL = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"<>`]+")


def _secret_name(name: str) -> bool:
    n = name.strip().lower().replace("-", "_")
    return n in SECRET_PARAMS or n.endswith(("_token", "_key", "_secret", "_signature", "_password"))


def redact_url(url: str) -> str:
    """The URL with userinfo and credential-like query values replaced by REDACTED (else unchanged)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rsplit('@', 1)[1]}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_name(k) for k, _ in pairs):
            query = urlencode([(k, REDACTED if _secret_name(k) else v) for k, v in pairs], safe="/:,")
    fragment = parts.fragment
    if fragment and "=" in fragment:  # OAuth implicit flow puts access_token in the fragment
        pairs = parse_qsl(fragment, keep_blank_values=True)
        if any(_secret_name(k) for k, _ in pairs):
            fragment = urlencode([(k, REDACTED if _secret_name(k) else v) for k, v in pairs], safe="/:,")
    if (netloc, query, fragment) == (parts.netloc, parts.query, parts.fragment):
        return url
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def redact_text(text: str) -> str:
    """Every URL inside free text redacted (error messages, log lines, model specs like openai:M@URL)."""
    if "://" not in text:
        return text
    return _URL.sub(lambda m: redact_url(m.group(0)), text)


def redact(obj: Any) -> Any:
    """A copy of a JSON-like object with every URL in every string (keys included) redacted."""
    if isinstance(obj, str):
        return redact_text(obj)
    if isinstance(obj, dict):
        return {redact(k) if isinstance(k, str) else k: redact(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(redact(v) for v in obj)
    return obj


def check_no_userinfo(url: str, what: str = "endpoint URL", env_hint: str = "--model-api-key-env NAME") -> None:
    """Refuse user:password@ in a URL: it would be recorded and sent in clear; keys go in env vars."""
    try:
        netloc = urlsplit(url).netloc
    except ValueError as e:
        raise HalbenchError(f"{what} {redact_text(url)!r} is not a valid URL ({e})") from e
    if "@" in netloc:
        raise HalbenchError(f"{what} {redact_url(url)!r} carries credentials (user:password@); remove them and "
                            f"put the key in an environment variable ({env_hint})")
