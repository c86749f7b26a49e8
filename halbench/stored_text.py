"""Bounded records: a sample record never stores more than `max_stored_chars` characters of any text field.

A model that rambles (a 1 MB answer) or a judge that replies with 10 MB would otherwise blow up the run
directory, the memory of every reader and the report page. Scoring always sees the full text (it runs before
the record is built); only what is stored is cut. A cut record says so: `truncated: true` and
`original_length: {field: characters}`. A re-run that must score such a record again regenerates its
answer rather than judge the cut text (see halbench.evaluator.run_task), so the numbers do not depend on the cap.
"""

from __future__ import annotations

from typing import Any

#: default for --max-stored-chars (characters per text field of a record)
DEFAULT_MAX_STORED_CHARS = 20000
#: fields that identify a record: never cut
KEEP_WHOLE = frozenset({"id", "image", "error"})


def cap_record(record: dict[str, Any], limit: int | None) -> dict[str, Any]:
    """The record with every top-level string longer than `limit` cut to it (limit None or 0: no cap)."""
    if not limit:
        return record
    long = {k: len(v) for k, v in record.items() if isinstance(v, str) and len(v) > limit and k not in KEEP_WHOLE}
    if not long:
        return record
    out = {k: (v[:limit] if k in long else v) for k, v in record.items()}
    out["truncated"] = True
    out["original_length"] = {**(record.get("original_length") or {}), **long}
    return out


def response_was_cut(record: dict[str, Any]) -> bool:
    """True when the stored answer is not the whole answer (so it cannot be scored again as stored)."""
    return bool(record.get("truncated")) and "response" in (record.get("original_length") or {})
