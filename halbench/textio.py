"""Reading user text files with errors that name the file and line.

Every reader of user data (POPE/CHAIR predictions, question files, image lists, ground truth, preference
JSONL) goes through `read_text`, so a stray non-UTF-8 byte is one DataError naming the file, the line and the
byte offset instead of a UnicodeDecodeError traceback; `jsonl_objects` also refuses a line that is valid JSON
but not an object (a bare number, a list) with the line number.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from halbench.errors import DataError


def read_text(path: str | Path, what: str = "file") -> str:
    """The file's text as UTF-8 (a BOM is dropped); DataError for a missing file or a non-UTF-8 byte."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except FileNotFoundError as e:
        raise DataError(f"{what} not found", path=p) from e
    except OSError as e:
        raise DataError(f"cannot read {what} ({e.strerror})", path=p) from e
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise DataError(f"not UTF-8: byte 0x{raw[e.start]:02x} at offset {e.start} ({what} must be UTF-8 text)",
                        path=p, line=line) from e


def read_json(path: str | Path, what: str = "JSON file") -> Any:
    """A whole-file JSON document; DataError naming file and line when it is not valid UTF-8 JSON."""
    text = read_text(path, what)
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"malformed JSON ({e.msg})", path=path, line=e.lineno) from e


def jsonl_objects(path: str | Path, what: str = "JSONL file") -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; DataError naming the line of anything else."""
    rows = []
    for n, line in enumerate(read_text(path, what).splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"malformed JSON line ({e.msg})", path=path, line=n) from e
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {type(obj).__name__} {line.strip()[:40]!r}",
                            path=path, line=n)
        rows.append((n, obj))
    return rows
