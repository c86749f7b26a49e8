"""Image loading with errors that name the file."""

from __future__ import annotations

from pathlib import Path

from halbench.errors import DataError


def load_image(path: str | Path):
    """Open an image as RGB PIL.Image; a missing or corrupt file raises DataError naming it."""
    from PIL import Image, UnidentifiedImageError

    p = Path(path)
    if not p.is_file():
        raise DataError("image file not found", path=p)
    try:
        with Image.open(p) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"cannot read image ({e})", path=p) from e
