"""The report in a real browser: headless Chromium loads it from disk (file://).

Checked: the key elements exist and the per-sample views render, page, filter and search; nothing logs an
error (exceptions, console.error, CSP violations); no request leaves file:/data:; hostile captions do not
execute; screenshots are taken. Chromium is driven over the DevTools protocol on a pipe
(--remote-debugging-pipe: commands on fd 3, replies on fd 4, NUL-separated JSON), so no extra Python
package is needed; one test also uses the plain --dump-dom / --screenshot command line.

Skipped when no Chromium is installed (CI installs the Debian package `chromium`). Set HALBENCH_CHROMIUM to
pick a binary, and HALBENCH_ARTIFACTS_DIR to keep the screenshots.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from halbench.reports import build, render, synthetic, write_report

CHROMIUM = os.environ.get("HALBENCH_CHROMIUM") or next(
    (p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not found (apt-get install chromium)")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


class Browser:
    """A minimal DevTools-protocol client over --remote-debugging-pipe."""

    def __init__(self, profile: str):
        cmd_r, self._cmd_w = os.pipe()
        self._res_r, res_w = os.pipe()

        def to_fds_3_and_4():  # runs in the child before exec
            a, b = os.dup(cmd_r), os.dup(res_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, "--remote-debugging-pipe", f"--user-data-dir={profile}",
                                      "--window-size=1280,2000", "about:blank"], pass_fds=(3, 4),
                                     preexec_fn=to_fds_3_and_4, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(cmd_r)
        os.close(res_w)
        self._buf, self._id, self.events, self.session = b"", 0, [], None
        targets = self.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        self.session = self.call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
        for domain in ("Runtime", "Page", "Network", "Log"):
            self.call(f"{domain}.enable")
        self.call("Emulation.setDeviceMetricsOverride", {"width": 1280, "height": 2000, "deviceScaleFactor": 1,
                                                          "mobile": False})

    def _next(self, deadline: float) -> dict:
        while b"\0" not in self._buf:
            ready, _, _ = select.select([self._res_r], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                raise TimeoutError("no reply from Chromium")
            chunk = os.read(self._res_r, 1 << 20)
            if not chunk:
                raise RuntimeError("Chromium closed the DevTools pipe")
            self._buf += chunk
        msg, self._buf = self._buf.split(b"\0", 1)
        return json.loads(msg)

    def call(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if self.session:
            msg["sessionId"] = self.session
        os.write(self._cmd_w, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self.events.append(reply)

    def open(self, path: Path, timeout: float = 30) -> None:
        self.call("Page.navigate", {"url": path.resolve().as_uri()})
        deadline = time.monotonic() + timeout
        ready = "document.readyState === 'complete' && document.documentElement.getAttribute('data-ready')"
        while self.eval(ready) != "1":
            if time.monotonic() > deadline:
                raise TimeoutError(f"report script never finished; errors: {self.errors()}")
            time.sleep(0.1)

    def eval(self, expression: str):
        res = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def errors(self) -> list[str]:
        out = []
        for e in self.events:
            m, p = e.get("method"), e.get("params", {})
            if m == "Runtime.exceptionThrown":
                d = p["exceptionDetails"]
                out.append(f"exception: {d.get('text')} {d.get('exception', {}).get('description', '')}")
            elif m == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
                out.append("console.error: " + " ".join(str(a.get("value", a.get("description"))) for a in p["args"]))
            elif m == "Log.entryAdded" and p["entry"].get("level") == "error":
                out.append(f"log: {p['entry'].get('text')}")
        return out

    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def screenshot(self, path: Path) -> Path:
        path.write_bytes(__import__("base64").b64decode(self.call("Page.captureScreenshot", {"format": "png"})["data"]))
        return path

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._cmd_w)
        os.close(self._res_r)


@pytest.fixture
def browser(tmp_path):
    b = Browser(str(tmp_path / "profile"))
    yield b
    b.close()


def keep(path: Path) -> None:
    dest = os.environ.get("HALBENCH_ARTIFACTS_DIR")
    if dest:
        Path(dest).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(dest) / path.name)


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    base, trained = synthetic.paired_runs(root, n=80, n_images=6, extra_tasks=True)
    synthetic.write_training(root / "train", steps=25)
    data = build([base, trained], root / "train", n_boot=100)
    out = root / "report.html"
    out.write_text(render(data), encoding="utf-8")
    return out, data


def _png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    return int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")


def test_report_renders_and_works_in_chromium(browser, report, tmp_path):
    path, data = report
    browser.open(path)
    assert browser.eval("document.querySelectorAll('#summary tbody tr:not(.task-head)').length") == \
        sum(len(t.metrics) for t in data.tasks)
    charts = data.training.charts + [c for t in data.tasks for c in t.charts]
    assert browser.eval("document.querySelectorAll('.chart svg').length") == sum(bool(c.lines or c.rects) for c in charts)
    views = [v for t in data.tasks for v in t.views]
    for v in views:  # every view drew its first page
        assert browser.eval(f"document.querySelectorAll('#{v.id} table.rows tbody tr').length") == min(25, v.n_rows)
    assert browser.eval("document.querySelectorAll('mark.m-hal').length") > 0
    assert browser.call("Runtime.evaluate", {"expression": "Promise.all(Array.from(document.images, i => i.decode()))",
                                             "awaitPromise": True}).get("exceptionDetails") is None  # all decode
    assert browser.eval("Array.from(document.querySelectorAll('img.thumb')).every(i => i.naturalWidth > 0)")
    assert browser.eval("document.querySelectorAll('img.thumb').length") > 0
    assert browser.eval("document.querySelectorAll('figure.artifact img').length") == 2

    chair = next(v for t in data.tasks if t.key == "chair" for v in t.views)
    appeared = sum(r["f"]["g"] == "appeared" for r in chair.payload["rows"])
    info = browser.eval(f"""(() => {{ const s = document.querySelector('#{chair.id} select[data-filter=g]');
        s.value = 'appeared'; s.dispatchEvent(new Event('change'));
        return document.querySelector('#{chair.id} .info').textContent; }})()""")
    assert info.startswith(f"1–{min(25, appeared)} of {appeared} ")
    mmhal = next(v for t in data.tasks if t.key == "mmhal" for v in t.views)
    info = browser.eval(f"""(() => {{ document.querySelector('#{mmhal.id} button.next').click();
        return document.querySelector('#{mmhal.id} .info').textContent; }})()""")
    assert info == f"26–{min(50, mmhal.n_rows)} of {mmhal.n_rows} (page 2/{-(-mmhal.n_rows // 25)})"
    info = browser.eval(f"""(() => {{ const q = document.querySelector('#{mmhal.id} input[type=search]');
        q.value = 'object 17?'; q.dispatchEvent(new Event('input'));
        return document.querySelector('#{mmhal.id} .info').textContent; }})()""")
    assert info == "1–1 of 1 (page 1/1)"

    shot = browser.screenshot(tmp_path / "report_comparison.png")
    keep(shot)
    assert _png_size(shot) == (1280, 2000) and shot.stat().st_size > 20_000
    assert browser.errors() == []
    assert all(u.startswith(("file:", "data:")) for u in browser.requests()), browser.requests()


def test_hostile_text_does_not_execute_in_chromium(browser, tmp_path):
    base, trained, train = synthetic.hostile_runs(tmp_path)
    path = write_report([base, trained], tmp_path / "evil.html", train, n_boot=50)
    browser.open(path)
    assert browser.eval("window.__pwned === undefined && !document.title.includes('PWNED')")
    assert browser.eval("document.querySelectorAll('img[src=x], a[href^=javascript], [onerror]').length") == 0
    assert browser.eval("document.querySelectorAll('script').length") == 2 + browser.eval(
        "document.querySelectorAll('.sample-view').length")  # ours only: code + thumbs + one per view
    text = browser.eval("document.body.innerText")
    assert "<script>window.__pwned=1" in text and "javascript:window.__pwned=3" in text  # shown, as text
    keep(browser.screenshot(tmp_path / "report_hostile.png"))
    assert browser.errors() == []


def test_error_detection_is_live(browser, report, tmp_path):
    """The checks above could not pass vacuously: a broken view and an injected script are both caught."""
    html = report[0].read_text(encoding="utf-8")
    broken = html.replace('id="view-1-data">{', 'id="view-1-data">{oops', 1)
    broken = broken.replace("</body>", "<script>window.__pwned = 1</script></body>")
    path = tmp_path / "broken.html"
    path.write_text(broken, encoding="utf-8")
    browser.open(path)
    errors = " | ".join(browser.errors())
    assert "view view-1" in errors and "Content Security Policy" in errors
    assert browser.eval("window.__pwned === undefined")  # the CSP refused the injected script


def test_dump_dom_and_screenshot_from_the_command_line(report, tmp_path):
    path, data = report
    shot = tmp_path / "cli.png"
    common = [CHROMIUM, *FLAGS, "--enable-logging=stderr", "--v=0", "--window-size=1280,1600",
              "--virtual-time-budget=5000"]
    dom = subprocess.run([*common, f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", "--dump-dom",
                          path.resolve().as_uri()], capture_output=True, text=True, timeout=120)
    assert 'data-ready="1"' in dom.stdout and 'id="summary"' in dom.stdout
    assert dom.stdout.count('<table class="rows">') == sum(len(t.views) for t in data.tasks)
    assert 'class="m-hal"' in dom.stdout
    console = [ln for ln in dom.stderr.splitlines() if "CONSOLE" in ln or "Uncaught" in ln]
    assert console == []
    subprocess.run([*common, f"--user-data-dir={tempfile.mkdtemp(dir=tmp_path)}", f"--screenshot={shot}",
                    path.resolve().as_uri()], capture_output=True, timeout=120, check=True)
    assert _png_size(shot) == (1280, 1600)


# -- issue 15: glitches seen in Chromium, and the length-matched control on the page ---------------------------
@pytest.fixture(scope="module")
def issue15_report(tmp_path_factory):
    """A comparison with POPE ids like the real ones ("adversarial/1234"), CHAIR records scored by the real
    2018 pipeline (a "dining table" in every caption), so the length-matched control is computed."""
    from halbench.tasks.chair import ChairScorer

    root = tmp_path_factory.mktemp("issue15")
    images = synthetic.make_images(root / "images", 4)
    sc = ChairScorer("coco2018", "2018")
    runs = []
    for name, shift in (("base", 0), ("trained", 1)):
        pope = synthetic.pope_records(40, 0.7 + 0.1 * shift, 0, images, shift)
        for i, r in enumerate(pope):
            r["id"], r["split"] = f"adversarial/{1200 + i}", "adversarial"
        chair = []
        for i in range(30):
            cap = "A dining table with a cup and a dog." if not shift or i % 2 else "A dining table with a cup."
            chair.append({"id": str(i), "prompt": "p", "image": images[i % 4], "response": cap, "error": None,
                          "image_id": i, **sc.score_caption(cap, ["dining table", "cup"])})
        task = {"name": "chair", "variant": "2018", "version": "1", "options": {}, "synonyms": "coco2018"}
        runs.append(synthetic.write_run(root / name, {"pope": ("pope", pope), "chair": ("chair", chair)},
                                        model_id=name, fingerprint=name, extra={"chair": {"task": task}}))
    out = write_report(runs, root / "report.html", n_boot=100)
    single = write_report(runs[:1], root / "single.html", n_boot=100)
    return out, single


def test_issue15_ids_headings_highlights_and_length_control(browser, issue15_report, tmp_path):
    path, _ = issue15_report
    browser.open(path)
    # sample ids stay on one line and are not cut (they wrapped as "adversarial/12" / "34")
    ids = browser.eval("""Array.from(document.querySelectorAll('table.rows td:first-child .badge')).map(b =>
        [b.textContent, b.getClientRects().length, b.getBoundingClientRect().height, b.scrollWidth <= b.clientWidth])""")
    pope_ids = [i for i in ids if i[0].startswith("adversarial/")]
    assert pope_ids and all(n == 1 and h < 20 and fits for _, n, h, fits in pope_ids), pope_ids
    heads = browser.eval("Array.from(document.querySelectorAll('section.task h2')).map(h => h.textContent)")
    assert heads == ["pope", "chair"]
    marks = browser.eval("Array.from(document.querySelectorAll('mark')).map(m => m.textContent)")
    assert "dining table" in marks and "table" not in marks
    text = browser.eval("document.body.innerText")
    assert "Length-matched control" in text and "most of the gain is shorter captions" in text
    f1 = browser.eval("""Array.from(document.querySelectorAll('#summary tr')).filter(r =>
        r.querySelector('th') && r.querySelector('th').textContent.startsWith('f1'))
        .map(r => r.querySelectorAll('td.cell')[1].innerText)""")
    assert f1 and "p=" in f1[0] and "[" in f1[0].split("Δ")[1]  # the F1 delta has its CI and p like the rest
    keep(browser.screenshot(tmp_path / "report_issue15.png"))
    assert browser.errors() == []


def test_issue15_single_run_legend(browser, issue15_report):
    _, single = issue15_report
    browser.open(single)
    legend = browser.eval("document.querySelector('#summary p.note').textContent")
    assert "base" not in legend and "higher is better" in legend
