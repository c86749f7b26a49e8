"""render(ReportData) -> one self-contained HTML file; write_report() builds, renders and writes atomically.

Safety: model outputs, captions and judge text are untrusted. Templates run with autoescape on and
StrictUndefined; per-sample rows travel as JSON inside <script type="application/json"> with <, >, & and
the JS line separators escaped as \\uXXXX (so no "</script>" or "<!--" can end the block), and report.js
draws them with text nodes only. A Content-Security-Policy allows only our own inline script and style (by
sha256 hash) and data: images, so even markup that slipped through could neither run nor fetch anything.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import jinja2
from markupsafe import Markup

from halbench.runs import atomic_write_text

from halbench.reports.build import build
from halbench.reports.model import ReportData

HERE = Path(__file__).parent
_JSON_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028",
                               "\u2029": "\\u2029"})


def script_json(obj: Any) -> Markup:
    """JSON safe to place verbatim inside a <script> element (never HTML-escaped: scripts are raw text)."""
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    return Markup(text.translate(_JSON_ESCAPES))


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


@lru_cache(maxsize=1)
def _static() -> dict[str, str]:
    css = (HERE / "static" / "report.css").read_text(encoding="utf-8")
    js = (HERE / "static" / "report.js").read_text(encoding="utf-8")
    if "</style" in css.lower() or "</script" in js.lower() or "<!--" in js:
        raise RuntimeError("static assets must not contain </style>, </script> or <!--")  # would end the element
    return {"css": css, "js": js, "csp": f"default-src 'none'; img-src data:; style-src '{_csp_hash(css)}'; "
                                         f"script-src '{_csp_hash(js)}'; base-uri 'none'; form-action 'none'"}


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True, undefined=jinja2.StrictUndefined,
        trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["script_json"] = script_json
    return env


def render(data: ReportData) -> str:
    """The report as one HTML string (inline CSS, JS, images; no external references)."""
    static = _static()
    html = environment().get_template("report.html.j2").render(
        r=data, css=Markup(static["css"]), js=Markup(static["js"]), csp=Markup(static["csp"]))  # all ours
    # records may carry lone surrogates (JSON "\ud800"), which UTF-8 cannot encode: replace them
    return html.encode("utf-8", "replace").decode("utf-8")


def write_report(run_dirs: Iterable[str | Path] | str | Path, out_path: str | Path,
                 training_dir: str | Path | None = None, *, comparison_json: str | Path | None = None,
                 tables: Iterable[str | Path] = (), **build_options: Any) -> Path:
    """build + render + atomic write (readers never see half a report). Returns the path written.
    comparison_json: also write the comparison's numbers there (only when there is a comparison);
    tables: also write the summary table to each path (.md Markdown, .csv CSV)."""
    from halbench.reports.export import write_comparison, write_table

    out = Path(out_path)
    data = build(run_dirs, training_dir, **build_options)
    atomic_write_text(out, render(data))
    if comparison_json is not None and data.mode == "comparison":
        write_comparison(data, comparison_json)
    for path in tables:
        write_table(data, path)
    umask = os.umask(0)  # the temp file behind the atomic write is 0600; a report is meant to be shared
    os.umask(umask)
    os.chmod(out, 0o666 & ~umask)
    return out
