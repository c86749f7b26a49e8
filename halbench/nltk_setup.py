"""Make the NLTK data the OPERA-style CHAIR pipeline needs available (WordNet + the POS tagger).

Users online get it from NLTK's downloader. Machines without access to NLTK's data host (CI, air-gapped
clusters) can copy it from an offline NLTK data folder with `--from DIR`. Data goes to the first folder on
NLTK's search path that we can write (normally ~/nltk_data), where every NLTK user finds it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

RESOURCES = {  # NLTK resource path -> downloader package id
    "corpora/wordnet": "wordnet",
    "taggers/averaged_perceptron_tagger_eng": "averaged_perceptron_tagger_eng",
}


def missing_resources() -> list[str]:
    import nltk

    missing = []
    for path in RESOURCES:
        try:
            nltk.data.find(path)
        except LookupError:
            try:
                nltk.data.find(path + ".zip")
            except LookupError:
                missing.append(path)
    return missing


def _target_dir() -> Path:
    import nltk

    for p in map(Path, nltk.data.path):
        try:
            p.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if p.is_dir() and _writable(p):
            return p
    raise OSError("no writable folder on NLTK's data path")


def _writable(p: Path) -> bool:
    probe = p / ".halbench-write-test"
    try:
        probe.touch()
        probe.unlink()
        return True
    except OSError:
        return False


def ensure_nltk_data(source: str | Path | None = None, echo=print) -> list[str]:
    """Copy from `source` (an NLTK data folder) or download what is missing; returns what is still missing."""
    missing = missing_resources()
    if not missing:
        return []
    target = _target_dir()
    for path in missing:
        src = Path(source) / path if source else None
        if src is not None and src.is_dir():
            shutil.copytree(src, target / path, dirs_exist_ok=True)
            echo(f"copied {path} from {source} to {target}")
            continue
        import nltk

        ok = nltk.download(RESOURCES[path], download_dir=str(target), quiet=True, raise_on_error=False)
        echo(f"{'downloaded' if ok else 'could not download'} {RESOURCES[path]} into {target}")
    return missing_resources()
