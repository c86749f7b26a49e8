"""Image loading with errors that name the file; the cheap decode check the evaluator's preflight runs.

- `load_image(path)`: RGB PIL image; a missing, corrupt or oversized file raises DataError naming it.
  Oversized = more pixels than PIL's decompression-bomb limit (Image.MAX_IMAGE_PIXELS, 89.5M by default;
  PIL itself only refuses at twice that): a 20000x20000 PNG of a few hundred KB would need 1.2 GB to decode.
- `check_image(path) -> str | None`: why the file cannot be used (None when it decodes). It decodes once,
  at reduced scale where the format allows (JPEG draft mode), so a truncated, empty or non-image file is
  found before any generation; results are memoised by (path, size, mtime).
- `image_under(root, name)`: root/name, refusing names that leave root (`../../x.png`, absolute paths).
"""

from __future__ import annotations

import os
from pathlib import Path

from halbench.errors import DataError

_CHECKED: dict[tuple[str, int, int], str | None] = {}


def _max_pixels() -> int | None:
    from PIL import Image

    return Image.MAX_IMAGE_PIXELS


def _too_big(size: tuple[int, int]) -> str | None:
    limit = _max_pixels()
    if limit and size[0] * size[1] > limit:
        return (f"image is {size[0]}x{size[1]} = {size[0] * size[1]:,} pixels, over the decompression-bomb "
                f"limit of {limit:,} (PIL.Image.MAX_IMAGE_PIXELS)")
    return None


def load_image(path: str | Path):
    """Open an image as RGB PIL.Image; a missing, corrupt or oversized file raises DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DataError("image file not found", path=p)
    try:
        with Image.open(p) as im:
            big = _too_big(im.size)
            if big:
                raise DataError(big, path=p)
            return im.convert("RGB")
    except Image.DecompressionBombError as e:
        raise DataError(f"image too large ({e})", path=p) from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise DataError(f"cannot read image ({e})", path=p) from e


def check_image(path: str | Path) -> str | None:
    """None when the file decodes as an image within the pixel limit, else the reason it does not."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return "file not found"
    key = (str(p), st.st_size, st.st_mtime_ns)
    if key not in _CHECKED:
        _CHECKED[key] = _decode_reason(p, st.st_size)
    return _CHECKED[key]


def _decode_reason(p: Path, size: int) -> str | None:
    from PIL import Image, UnidentifiedImageError

    if not p.is_file():
        return "not a file"
    if size == 0:
        return "empty file (0 bytes)"
    try:
        with Image.open(p) as im:
            big = _too_big(im.size)
            if big:
                return big
            im.draft("RGB", (max(1, im.size[0] // 8), max(1, im.size[1] // 8)))  # JPEG: decode at 1/8 scale
            im.load()
    except Image.DecompressionBombError as e:
        return f"image too large ({e})"
    except UnidentifiedImageError:
        return "not an image PIL can identify"
    except (OSError, SyntaxError, ValueError) as e:
        return f"cannot decode ({e})"
    return None


def image_under(root: str | Path, name: str | Path, source: object | None = None) -> Path:
    """root/name, with a DataError (naming `source`, e.g. the data file) if name leaves root."""
    root_s = os.path.normpath(os.path.abspath(os.fspath(root)))
    full = os.path.normpath(os.path.join(root_s, os.fspath(name)))
    if os.path.isabs(os.fspath(name)) or os.path.commonpath([root_s, full]) != root_s:
        raise DataError(f"image name {str(name)!r} points outside the image root {root}", path=source)
    return Path(root) / name
