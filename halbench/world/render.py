"""Procedural renderer of the embedded world: one glyph per COCO category, several per image.

Each category is drawn as a distinct glyph (GLYPHS): a shape, a main colour and a texture (solid, stripes,
dots, checker) in a second colour, with a dark 1-px rim, so a model can tell every class apart from pixels
alone. Images are small (48x48 RGB by default) on a smooth, randomly coloured background with faint clutter
blobs. What makes the world hard enough to hallucinate in: objects vary in size (small ones cover one or two 8x8 patches),
overlap (a later glyph may hide up to MAX_HIDDEN of an earlier one), and colours jitter per instance.

`render_scene(categories, rng, size)` -> (uint8 HxWx3 array, [bbox per object]); everything is a pure
function of the numpy Generator passed in, so a seed reproduces the image set byte for byte.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

SS = 4  # supersampling factor for anti-aliased glyph masks
MAX_HIDDEN = 0.45  # at most this fraction of an object may be covered by later glyphs
OUTLINE_SHADE = 0.3  # glyph rims are drawn in 30% of the glyph's colour

COLOURS = {
    "red": (215, 40, 40), "green": (40, 165, 60), "blue": (45, 85, 215), "yellow": (240, 205, 35),
    "orange": (245, 140, 35), "purple": (125, 55, 175), "cyan": (40, 195, 205), "magenta": (215, 60, 195),
    "white": (245, 245, 240), "black": (25, 25, 30), "brown": (130, 75, 35), "gray": (150, 150, 155),
    "pink": (250, 150, 185), "lime": (175, 230, 40), "darkbrown": (80, 45, 20),
}

# category -> (shape, main colour, texture, texture colour, relative size). Sizes loosely follow the real
# objects (a dining table is drawn larger than a fork) so salience differs between classes as in photos.
GLYPHS = {
    "person": ("vcapsule", "orange", "solid", None, 1.0),
    "car": ("hbar", "red", "solid", None, 1.0),
    "truck": ("trapezoid", "blue", "solid", None, 1.1),
    "bus": ("hbar", "yellow", "vstripes", "black", 1.15),
    "traffic light": ("vbar", "black", "dots", "lime", 0.8),
    "bicycle": ("double_ring", "green", "solid", None, 0.95),
    "dining table": ("square", "brown", "hstripes", "darkbrown", 1.25),
    "chair": ("lshape", "purple", "solid", None, 0.9),
    "cup": ("tri_down", "white", "solid", None, 0.75),
    "bottle": ("vbar", "green", "solid", None, 0.8),
    "bowl": ("semicircle", "cyan", "solid", None, 0.8),
    "knife": ("slash", "gray", "solid", None, 0.75),
    "fork": ("plus", "gray", "solid", None, 0.75),
    "spoon": ("tri_right", "gray", "solid", None, 0.7),
    "pizza": ("tri_up", "yellow", "dots", "red", 0.95),
    "cake": ("square", "pink", "hstripes", "white", 0.85),
    "sink": ("frame", "white", "solid", None, 1.0),
    "couch": ("ushape", "purple", "hstripes", "pink", 1.2),
    "tv": ("square", "black", "solid", None, 1.0),
    "laptop": ("tshape", "cyan", "solid", None, 0.9),
    "book": ("diamond", "blue", "hstripes", "white", 0.8),
    "clock": ("ring", "black", "solid", None, 0.8),
    "potted plant": ("star", "green", "solid", None, 0.9),
    "bed": ("hbar", "white", "checker", "blue", 1.25),
    "dog": ("hexagon", "brown", "solid", None, 0.95),
    "cat": ("pentagon", "orange", "hstripes", "brown", 0.85),
    "horse": ("arrow", "darkbrown", "solid", None, 1.05),
    "giraffe": ("diamond", "yellow", "dots", "brown", 1.05),
    "zebra": ("circle", "white", "vstripes", "black", 1.0),
    "elephant": ("circle", "gray", "solid", None, 1.15),
    "sports ball": ("circle", "lime", "solid", None, 0.6),
    "tennis racket": ("lollipop", "magenta", "solid", None, 0.85),
}


def _poly(draw, pts, n):
    draw.polygon([((x + 1) / 2 * n, (y + 1) / 2 * n) for x, y in pts], fill=255)


def _ngon(k, r=1.0, phase=-math.pi / 2):
    return [(r * math.cos(phase + 2 * math.pi * i / k), r * math.sin(phase + 2 * math.pi * i / k)) for i in range(k)]


def _draw_shape(draw, shape: str, n: int) -> None:
    """Draw `shape` in white on an n x n canvas whose unit square is [-1, 1]^2."""
    box = lambda x0, y0, x1, y1: [((x0 + 1) / 2 * n, (y0 + 1) / 2 * n), ((x1 + 1) / 2 * n, (y1 + 1) / 2 * n)]
    e = lambda x0, y0, x1, y1, fill=255: draw.ellipse(box(x0, y0, x1, y1), fill=fill)
    r = lambda x0, y0, x1, y1, fill=255: draw.rectangle(box(x0, y0, x1, y1), fill=fill)
    polys = {
        "tri_up": [(0, -0.95), (0.95, 0.85), (-0.95, 0.85)], "tri_down": [(-0.95, -0.85), (0.95, -0.85), (0, 0.95)],
        "tri_right": [(-0.85, -0.95), (0.95, 0), (-0.85, 0.95)], "diamond": [(0, -1), (1, 0), (0, 1), (-1, 0)],
        "trapezoid": [(-0.55, -0.6), (0.55, -0.6), (1, 0.6), (-1, 0.6)], "hexagon": _ngon(6, 0.98, 0),
        "pentagon": _ngon(5, 0.98),
        "star": [p for i in range(5) for p in (_ngon(5, 1.0)[i], _ngon(5, 0.42, -math.pi / 2 + math.pi / 5)[i])],
        "arrow": [(-1, -0.3), (0.2, -0.3), (0.2, -0.8), (1, 0), (0.2, 0.8), (0.2, 0.3), (-1, 0.3)],
        "slash": [(-1, 0.75), (0.75, -1), (1, -0.75), (-0.75, 1)],
    }
    if shape in polys:
        _poly(draw, polys[shape], n)
    elif shape == "circle":
        e(-0.95, -0.95, 0.95, 0.95)
    elif shape == "semicircle":  # a bowl: the lower half of a disc
        draw.pieslice(box(-1, -1.1, 1, 0.9), 0, 180, fill=255)
    elif shape in ("ring", "lollipop"):
        e(-0.95, -0.95, 0.95, 0.95) if shape == "ring" else e(-0.7, -1, 0.7, 0.4)
        e(-0.5, -0.5, 0.5, 0.5, 0) if shape == "ring" else e(-0.35, -0.65, 0.35, 0.05, 0)
        if shape == "lollipop":
            r(-0.15, 0.35, 0.15, 1)
    elif shape == "double_ring":
        for cx in (-0.5, 0.5):
            e(cx - 0.5, -0.5, cx + 0.5, 0.5)
            e(cx - 0.22, -0.22, cx + 0.22, 0.22, 0)
    elif shape in ("square", "frame"):
        r(-0.9, -0.9, 0.9, 0.9)
        if shape == "frame":
            r(-0.45, -0.45, 0.45, 0.45, 0)
    else:
        rects = {
            "hbar": [(-1, -0.45, 1, 0.45)], "vbar": [(-0.4, -1, 0.4, 1)],
            "plus": [(-1, -0.3, 1, 0.3), (-0.3, -1, 0.3, 1)],
            "lshape": [(-0.9, -1, -0.3, 1), (-0.9, 0.4, 0.9, 1)], "tshape": [(-1, -1, 1, -0.4), (-0.3, -1, 0.3, 1)],
            "ushape": [(-1, -0.8, -0.45, 0.8), (0.45, -0.8, 1, 0.8), (-1, 0.2, 1, 0.8)],
            "vcapsule": [(-0.45, -0.6, 0.45, 1)],
        }[shape]
        for rc in rects:
            r(*rc)
        if shape == "vcapsule":  # a head on a body
            e(-0.4, -1, 0.4, -0.35)


@lru_cache(maxsize=4096)
def glyph_mask(shape: str, size: int) -> np.ndarray:
    """Anti-aliased float mask in [0, 1] of shape (size, size)."""
    from PIL import Image, ImageDraw

    n = size * SS
    im = Image.new("L", (n, n), 0)
    _draw_shape(ImageDraw.Draw(im), shape, n)
    return np.asarray(im.resize((size, size), Image.BOX), dtype=np.float32) / 255.0


def _texture(kind: str, size: int, phase: int) -> np.ndarray:
    """1 where the texture colour shows, 0 where the main colour does."""
    yy, xx = np.mgrid[0:size, 0:size]
    period = max(3, size // 4)
    if kind == "hstripes":
        return ((yy + phase) % period < period / 2).astype(np.float32)
    if kind == "vstripes":
        return ((xx + phase) % period < period / 2).astype(np.float32)
    if kind == "checker":
        return (((xx // (period // 2 + 1)) + (yy // (period // 2 + 1))) % 2).astype(np.float32)
    if kind == "dots":
        return (((xx + phase) % period == 1) & ((yy + phase) % period == 1)).astype(np.float32)
    return np.zeros((size, size), np.float32)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Smooth two-colour gradient plus a few faint blobs: muted, so glyphs stand out but not trivially."""
    c0, c1 = rng.uniform(70, 190, 3), rng.uniform(70, 190, 3)
    t = np.linspace(0, 1, size)[:, None, None] if rng.random() < 0.5 else np.linspace(0, 1, size)[None, :, None]
    img = c0 * (1 - t) + c1 * t + np.zeros((size, size, 3))
    yy, xx = np.mgrid[0:size, 0:size]
    for _ in range(rng.integers(2, 6)):
        cx, cy, rad = rng.uniform(0, size, 2).tolist() + [rng.uniform(size / 8, size / 3)]
        blob = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * rad ** 2))[..., None]
        img += blob * rng.uniform(-35, 35, 3)
    return img


def _place(rng, size, s, taken, coverage) -> tuple[int, int] | None:
    """Top-left corner for an s x s glyph that hides at most MAX_HIDDEN of any object already placed."""
    for _ in range(30):
        x, y = int(rng.integers(0, size - s + 1)), int(rng.integers(0, size - s + 1))
        ok = True
        for (bx, by, bs), area in zip(taken, coverage):
            ix = max(0, min(x + s, bx + bs) - max(x, bx))
            iy = max(0, min(y + s, by + bs) - max(y, by))
            if ix * iy > MAX_HIDDEN * area:
                ok = False
                break
        if ok:
            return x, y
    return None


def _outline(img: np.ndarray, mask: np.ndarray, x: int, y: int, colour: np.ndarray) -> None:
    """Darken a 1-px ring around the glyph (its mask dilated by 3x3 minus itself), in place.

    A dark rim in the glyph's own hue keeps low-contrast glyphs (gray cutlery on a gray background) visible
    without changing their colour or shape.
    """
    s, size = mask.shape[0], img.shape[0]
    pad = np.pad(mask, 2)
    dil = np.max([np.roll(np.roll(pad, dy, 0), dx, 1) for dy in (-1, 0, 1) for dx in (-1, 0, 1)], axis=0)
    ring = np.clip(dil - pad, 0, 1)[1:-1, 1:-1]  # (s + 2, s + 2), anchored at (x - 1, y - 1)
    x0, y0, x1, y1 = max(x - 1, 0), max(y - 1, 0), min(x + s + 1, size), min(y + s + 1, size)
    r = ring[y0 - (y - 1):y1 - (y - 1), x0 - (x - 1):x1 - (x - 1), None]
    img[y0:y1, x0:x1] = img[y0:y1, x0:x1] * (1 - r) + OUTLINE_SHADE * colour * r


def render_scene(categories: list[str], rng: np.random.Generator, size: int = 48,
                 scale: tuple[float, float] = (0.24, 0.42)) -> tuple[np.ndarray, list[tuple[str, list[int]]]]:
    """Draw one glyph per category; returns (image uint8 HxWx3, [(category, [x, y, w, h])]) for placed ones.

    A glyph's side is size * U(scale) * its relative size. Objects that cannot be placed without hiding more
    than MAX_HIDDEN of another are dropped (rare; the caller keeps only what is returned).
    """
    img = _background(rng, size)
    taken, coverage, placed = [], [], []
    for cat in categories:
        shape, main, tex, tex_col, rel = GLYPHS[cat]
        s = int(np.clip(round(size * rng.uniform(*scale) * rel), 7, size // 2))
        pos = _place(rng, size, s, taken, coverage)
        if pos is None:
            continue
        x, y = pos
        mask = glyph_mask(shape, s)[..., None]
        jitter = rng.normal(0, 12, 3)
        colour = np.clip(np.array(COLOURS[main]) + jitter, 0, 255)
        layer = np.broadcast_to(colour, (s, s, 3)).copy()
        if tex != "solid":
            t = _texture(tex, s, int(rng.integers(0, 4)))[..., None]
            layer = layer * (1 - t) + np.array(COLOURS[tex_col]) * t
        _outline(img, mask[..., 0], x, y, colour)
        region = img[y:y + s, x:x + s]
        img[y:y + s, x:x + s] = region * (1 - mask) + layer * mask
        taken.append((x, y, s))
        coverage.append(float(s * s))
        ys, xs = np.nonzero(mask[..., 0] > 0.3)
        placed.append((cat, [x + int(xs.min()), y + int(ys.min()), int(np.ptp(xs)) + 1, int(np.ptp(ys)) + 1]))
    img += rng.normal(0, 2, img.shape)  # sensor noise: small, keeps PNGs compressible
    return np.clip(img, 0, 255).astype(np.uint8), placed
