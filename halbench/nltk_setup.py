"""The NLTK data the OPERA-style CHAIR pipeline needs (WordNet 3.0 + the English averaged-perceptron tagger).

Three sources, in NLTK's own search order:
1. any NLTK data folder of the user's (NLTK_DATA, ~/nltk_data, ...): always wins;
2. a copy made by `halbench setup-nltk` (downloaded when online, or `--from DIR` for air-gapped clusters);
3. the copy bundled in the package (halbench/data/nltk_data, licences in its README): appended LAST to
   `nltk.data.path`, so a fresh offline install scores CHAIR with no download at all.

Why bundle rather than download at install time: the first command of the README must work on a machine that
reaches only the package registries, and NLTK's data host is not one of them. The bundle is the same WordNet
3.0 that `nltk.download("wordnet")` installs (zipped, as NLTK ships it) and the same tagger weights, so CHAIR's
exact parity does not depend on where the data came from (tests/test_nltk_bundle.py checks both).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

RESOURCES = {  # NLTK resource path -> downloader package id
    "corpora/wordnet": "wordnet",
    "taggers/averaged_perceptron_tagger_eng": "averaged_perceptron_tagger_eng",
}
BUNDLED_DIR = Path(__file__).resolve().parent / "data" / "nltk_data"
BUNDLED_SHA256 = {
    "corpora/wordnet.zip": "78abcb90ef15a82719e04f9477d36862af2d0f192690598d21f32c9bb6ddf952",
    "taggers/averaged_perceptron_tagger_eng.zip": "1d67a069f33931c3b140e2c94e9adb6a01f58ce6b6397ad784ace75def95a55b",
}


def register_bundled_data() -> None:
    """Append the bundled folder to NLTK's search path (lowest priority; idempotent)."""
    import nltk

    if BUNDLED_DIR.is_dir() and str(BUNDLED_DIR) not in nltk.data.path:
        nltk.data.path.append(str(BUNDLED_DIR))


def bundled_checksums_ok() -> dict[str, bool]:
    """{relative zip path: sha256 matches the pinned value} for the bundled copy."""
    return {rel: (BUNDLED_DIR / rel).is_file()
            and hashlib.sha256((BUNDLED_DIR / rel).read_bytes()).hexdigest() == digest
            for rel, digest in BUNDLED_SHA256.items()}


def missing_resources(include_bundled: bool = True) -> list[str]:
    import nltk

    if include_bundled:
        register_bundled_data()
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
        if p == BUNDLED_DIR:
            continue
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
    """Install into the user's NLTK data folder what it lacks, from `source` or NLTK's downloader.

    Returns what is still missing from the user's folders (the bundled copy does not count here: this is the
    command for users who want their own copy). With `source`, never touches the network.
    """
    missing = missing_resources(include_bundled=False)
    if not missing:
        return []
    target = _target_dir()
    for path in missing:
        src = Path(source) / path if source else None
        if source is not None:
            if src is not None and src.is_dir():
                shutil.copytree(src, target / path, dirs_exist_ok=True)
                echo(f"copied {path} from {source} to {target}")
            elif (Path(source) / (path + ".zip")).is_file():
                (target / path).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(source) / (path + ".zip"), target / (path + ".zip"))
                echo(f"copied {path}.zip from {source} to {target}")
            else:
                echo(f"{source} has no {path}")
            continue
        import nltk

        ok = nltk.download(RESOURCES[path], download_dir=str(target), quiet=True, raise_on_error=False)
        echo(f"{'downloaded' if ok else 'could not download'} {RESOURCES[path]} into {target}")
    return missing_resources(include_bundled=False)
