"""The NLTK data bundled in the package: intact, found with no NLTK folder at all, and the same as NLTK's own.

A fresh offline install must score CHAIR (OPERA pipeline) with nothing downloaded; these tests run the
lemmatizer in a subprocess whose NLTK search path holds ONLY the bundled copy.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from halbench import nltk_setup

CAPTIONS = [
    "Two dogs are running on the grass next to a dining table.",
    "A man riding a horse while people sit on benches; the skis are leaning on cars.",
    "There's a bowl of oranges, knives and forks on the wooden tables.",
]

_PROBE = r"""
import json, sys, nltk
nltk.data.path[:] = []          # no NLTK folder of the user's at all
from halbench.tasks.chair import ChairScorer
scorer = ChairScorer(pipeline="opera")
out = [[(m.word, m.cls) for m in scorer.extract(c)] for c in json.loads(sys.argv[1])]
print(json.dumps({"mentions": out, "path": nltk.data.path}))
"""


def test_bundled_zips_match_their_pinned_checksums():
    assert nltk_setup.bundled_checksums_ok() == {k: True for k in nltk_setup.BUNDLED_SHA256}
    assert (nltk_setup.BUNDLED_DIR / "LICENSE.wordnet").is_file()
    assert (nltk_setup.BUNDLED_DIR / "README.md").is_file()


def _run_probe(env: dict[str, str]) -> dict:
    proc = subprocess.run([sys.executable, "-c", _PROBE, json.dumps(CAPTIONS)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_chair_runs_on_the_bundle_alone(tmp_path):
    env = {**os.environ, "HOME": str(tmp_path), "NLTK_DATA": str(tmp_path / "none")}
    got = _run_probe(env)
    assert got["path"] == [str(nltk_setup.BUNDLED_DIR)]
    classes = [[c for _, c in caption] for caption in got["mentions"]]
    assert classes[0] == ["dog", "dining table"]
    assert "horse" in classes[1] and "person" in classes[1] and "bench" in classes[1] and "skis" in classes[1]
    assert {"bowl", "orange", "knife", "fork", "dining table"} <= set(classes[2])


def test_bundle_gives_the_same_mentions_as_an_nltk_data_folder(tmp_path):
    """Parity: the bundle vs the offline NLTK folder CI has (skips where that folder is absent)."""
    shared = Path(__file__).resolve().parents[2] / "shared" / "nltk_data"
    if not shared.is_dir():
        pytest.skip(f"no reference NLTK data folder at {shared} (only CI has one)")
    bundled = _run_probe({**os.environ, "HOME": str(tmp_path), "NLTK_DATA": str(tmp_path / "none")})
    probe = _PROBE.replace("nltk.data.path[:] = []", f"nltk.data.path[:] = [{str(shared)!r}]")
    proc = subprocess.run([sys.executable, "-c", probe, json.dumps(CAPTIONS)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ref = json.loads(proc.stdout.strip().splitlines()[-1])
    assert ref["path"][0] == str(shared)  # the reference folder came first; bundle only appended after it
    assert bundled["mentions"] == ref["mentions"]


def test_setup_nltk_from_a_folder_copies_into_the_users_folder(tmp_path, monkeypatch):
    import nltk

    src = tmp_path / "src"
    (src / "corpora").mkdir(parents=True)
    (src / "taggers").mkdir()
    for rel in nltk_setup.BUNDLED_SHA256:
        (src / rel).write_bytes((nltk_setup.BUNDLED_DIR / rel).read_bytes())
    user = tmp_path / "user_nltk"
    monkeypatch.setattr(nltk.data, "path", [str(user)])
    assert nltk_setup.ensure_nltk_data(src, echo=lambda *_: None) == []
    assert (user / "corpora" / "wordnet.zip").is_file()
    assert (user / "taggers" / "averaged_perceptron_tagger_eng.zip").is_file()
