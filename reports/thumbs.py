"""Image thumbnails and artifact images, embedded as base64 data URIs.

Why inline and not relative links: a report is mailed, attached to issues and copied off the cluster, and
record image paths are paths on the machine that ran the eval (often absolute, often unreadable elsewhere);
relative links would break the moment the file moves. Inline thumbnails are small (longest side 96 px,
JPEG q70: 2-4 KB each), deduplicated by image path (POPE asks several questions per image, and compared
runs share images), and capped (`max_images`, default 300, ~1 MB) so a 10,000-sample comparison stays a few
MB; rows past the cap show the image's file name instead. Thumbnails are handed out round-robin over the
views, each in display order (views.ViewContext.finish), so flips and changed captions, listed first, get
images first in every view.
"""

from __future__ import annotations

import base64
import io
from pathlib import Path

SIZE = 96
QUALITY = 70
MAX_ARTIFACT_BYTES = 8 << 20
IMAGE_MIME = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".gif": "image/gif",
              ".webp": "image/webp", ".svg": "image/svg+xml"}


class Thumbnailer:
    """Makes each distinct image's thumbnail once; `key(...)` returns an id into `data` or None."""

    def __init__(self, max_images: int = 300, size: int = SIZE):
        self.max_images, self.size = max_images, size
        self.data: dict[str, str] = {}
        self._by_path: dict[tuple[str, str], str | None] = {}  # (record image field, run dir) -> key
        self._by_file: dict[str, str] = {}  # resolved file -> key: runs sharing images share thumbnails
        self.missing = 0  # image fields set but no readable file
        self.capped = 0  # images not thumbnailed because the cap was reached

    def key(self, image: object, run_dir: Path) -> str | None:
        if not isinstance(image, str) or not image:
            return None
        ref = (image, str(run_dir))
        if ref not in self._by_path:
            self._by_path[ref] = self._make(image, run_dir)
        return self._by_path[ref]

    def _make(self, image: str, run_dir: Path) -> str | None:
        if len(self.data) >= self.max_images:
            self.capped += 1  # past the cap: not even resolved, so 10,000 rows cost no file system calls
            return None
        path = self._resolve(image, run_dir)
        if path is not None and str(path.resolve()) in self._by_file:
            return self._by_file[str(path.resolve())]
        uri = self._encode(path) if path is not None else None
        if uri is None:
            self.missing += 1
            return None
        key = f"t{len(self.data)}"
        self.data[key] = uri
        self._by_file[str(path.resolve())] = key
        return key

    @staticmethod
    def _resolve(image: str, run_dir: Path) -> Path | None:
        for cand in (Path(image), run_dir / image):  # absolute/cwd-relative first, then run-relative
            if cand.is_file():
                return cand
        return None

    def _encode(self, path: Path) -> str | None:
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as im:
                im.draft("RGB", (self.size * 2, self.size * 2))  # JPEG: decode at reduced scale, much faster
                im = im.convert("RGB")
                im.thumbnail((self.size, self.size))
                buf = io.BytesIO()
                im.save(buf, format="JPEG", quality=QUALITY, optimize=True)
        except (UnidentifiedImageError, OSError, ValueError):
            return None
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def embed_artifact(run_dir: Path, task_dir: Path, rel: object) -> tuple[str | None, str]:
    """(data URI or None, note) for an artifact listed in results.json.

    results.json lists artifacts relative to RUN/artifacts/<task>/ (Task.artifacts) or, failing that, to the
    run directory. Paths that leave the run directory, non-image files and files over 8 MiB are not embedded.
    """
    if not isinstance(rel, str) or not rel:
        return None, "artifact path is not a string"
    root = run_dir.resolve()
    for base in (task_dir, run_dir):
        cand = (base / rel).resolve()
        if not cand.is_relative_to(root):
            return None, f"{rel}: outside the run directory, not embedded"
        if cand.is_file():
            mime = IMAGE_MIME.get(cand.suffix.lower())
            if mime is None:
                return None, f"{rel}: not an image, not embedded"
            if cand.stat().st_size > MAX_ARTIFACT_BYTES:
                return None, f"{rel}: larger than 8 MiB, not embedded"
            return f"data:{mime};base64," + base64.b64encode(cand.read_bytes()).decode("ascii"), ""
    return None, f"{rel}: file not found in {task_dir}"
