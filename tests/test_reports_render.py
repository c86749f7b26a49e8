"""halbench.reports rendering: golden HTML, untrusted text, self-containment, scale.

Goldens live in tests/golden/; regenerate them after an intended template change with
    HALBENCH_UPDATE_GOLDEN=1 pytest tests/test_reports_render.py
Scrubbed before comparing: the generation timestamp and version, the temp-dir prefix, base64 image data,
CSP hashes, and the inlined static CSS/JS (covered by the browser test, so a style tweak does not churn goldens);
inline JSON is re-printed one value per line so diffs stay readable.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from halbench.reports import build, render, synthetic, write_report
from halbench.reports.render import script_json

GOLDEN = Path(__file__).parent / "golden"
EVIL = synthetic.HOSTILE


def scrub(html: str, tmp: Path) -> str:
    html = html.replace(str(tmp), "TMP")
    html = re.sub(r'<time datetime="[^"]*">[^<]*</time>', '<time datetime="T">T</time>', html)
    html = re.sub(r"halbench \d+\.\d+\.\d+\S*?(?=[\"<. ])", "halbench VERSION", html)
    html = re.sub(r"data:image/([a-z+]+);base64,[A-Za-z0-9+/=]+", r"data:image/\1;base64,DATA", html)
    html = re.sub(r"'sha256-[A-Za-z0-9+/=]+'", "'sha256-HASH'", html)
    html = re.sub(r"<style>.*?</style>", "<style>/* static/report.css */</style>", html, flags=re.S)
    html = re.sub(r"<script>.*?</script>", "<script>/* static/report.js */</script>", html, flags=re.S)
    # one JSON value per line, so a golden diff shows which row changed
    return re.sub(r'(<script type="application/json" id="[^"]+">)(.*?)(</script>)',
                  lambda m: m[1] + "\n" + json.dumps(json.loads(m[2]), indent=0, ensure_ascii=False) + "\n" + m[3],
                  html, flags=re.S)


def check_golden(name: str, html: str, may_update: bool = True) -> None:
    path = GOLDEN / name
    if may_update and os.environ.get("HALBENCH_UPDATE_GOLDEN") == "1":
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(html, encoding="utf-8")
    assert path.exists(), f"no golden {path}; create it with HALBENCH_UPDATE_GOLDEN=1"
    expected = path.read_text(encoding="utf-8")
    if html != expected:
        diff = difflib.unified_diff(expected.splitlines(True), html.splitlines(True), "golden", "now")
        diff = "".join(list(diff)[:80])
        pytest.fail(f"{name} differs from its golden (HALBENCH_UPDATE_GOLDEN=1 to accept):\n{diff}")


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo")
    base, trained = synthetic.paired_runs(root, n=16, n_images=4, extra_tasks=True)
    synthetic.write_training(root / "train_ok", steps=12)
    synthetic.write_training(root / "train_failed", steps=6, failed=True)
    return root, base, trained


def test_golden_comparison_with_training(demo):
    root, base, trained = demo
    html = render(build([base, trained], root / "train_ok", n_boot=200))
    check_golden("report_comparison.html", scrub(html, root))


def test_golden_single_run_after_failed_training(demo):
    root, base, _ = demo
    html = render(build([base], root / "train_failed", n_boot=200))
    assert "Training failed" in html and "loss is NaN at step 41" in html and 'id="summary"' in html
    check_golden("report_single_failed_training.html", scrub(html, root))


def test_goldens_would_catch_a_changed_number(demo):
    root, base, trained = demo
    data = build([base, trained], root / "train_ok", n_boot=200)
    data.tasks[0].metrics[0].cells[1].delta = "+99.99"
    with pytest.raises(pytest.fail.Exception, match="differs from its golden"):
        check_golden("report_comparison.html", scrub(render(data), root), may_update=False)


# -- untrusted text -----------------------------------------------------------------------------------------
class Tags(HTMLParser):
    """Every start tag with its attributes, and the text of each <script>."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._in_script: dict | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = dict(attrs)
            self.scripts.append((self._in_script, ""))

    def handle_data(self, data):
        if self._in_script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._in_script = None


def test_untrusted_text_never_becomes_markup(tmp_path):
    base, trained, train = synthetic.hostile_runs(tmp_path)
    html = render(build([base, trained], train, n_boot=50))
    assert "<script>window" not in html and "<img src=x" not in html and "<img src=\"x\"" not in html
    parsed = Tags()
    parsed.feed(html)
    for tag, attrs in parsed.tags:
        assert not [a for a in attrs if a.startswith("on")], (tag, attrs)
        for a in ("href", "src", "action", "formaction", "xlink:href"):
            value = (attrs.get(a) or "").strip().lower()
            assert not value or value.startswith(("#", "data:image/")), (tag, a, value)
    code = [s for attrs, s in parsed.scripts if "type" not in attrs]
    data = [(attrs, s) for attrs, s in parsed.scripts if attrs.get("type") == "application/json"]
    assert len(code) == 1 and len(code) + len(data) == len(parsed.scripts)  # our one script, the rest data
    texts = []
    for _, text in data:
        assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
        texts.append(json.dumps(json.loads(text), ensure_ascii=False))
    assert sum(EVIL.replace('"', '\\"') in t for t in texts) >= 3  # the text survives, as data
    assert "&lt;script&gt;window.__pwned=1" in html  # and as escaped text in server-rendered places


def test_script_json_cannot_close_its_element():
    out = str(script_json({"a": "</script><script>alert(1)</script><!--", "b": "\u2028x&y"}))
    assert "</" not in out and "<!--" not in out and "\u2028" not in out and "&" not in out
    assert json.loads(out) == {"a": "</script><script>alert(1)</script><!--", "b": "\u2028x&y"}


def test_report_is_self_contained(demo):
    root, base, trained = demo
    html = render(build([base, trained], root / "train_ok", n_boot=50))
    assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:|//|file:)", html, re.I)
    assert "<link" not in html and "@import" not in html and "url(" not in html
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert "default-src 'none'" in csp and "img-src data:" in csp and "unsafe-inline" not in csp
    assert html.count("data:image/png;base64,") == 2  # the two reward-analysis artifacts
    assert "data:image/jpeg;base64," in html  # thumbnails


def test_two_runs_of_ten_thousand_samples_render_in_seconds(tmp_path):
    base, trained = synthetic.paired_runs(tmp_path, n=10_000, n_images=50, tasks=("pope", "chair"), filler=6)
    start = time.process_time()  # CPU time: the test machine is shared, wall time is noisy
    out = write_report([base, trained], tmp_path / "report.html")
    cpu = time.process_time() - start
    size = out.stat().st_size
    assert cpu < 20, f"{cpu:.1f} s CPU"
    assert size < 20 * 2**20, f"{size / 2**20:.1f} MB"
    html = out.read_text()
    views = [json.loads(m) for m in re.findall(r'<script type="application/json" id="view-\d+-data">(.*?)</script>',
                                               html, re.S)]
    assert sum(len(v["rows"]) for v in views) > 10_000 and all(v["page"] == 25 for v in views)
    assert html.count("<tr") < 200  # rows are drawn by the browser a page at a time, not in the HTML
