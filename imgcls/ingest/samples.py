"""Built-in sample datasets, generated on the fly as in-memory PNG files."""

from __future__ import annotations

import io
import math
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageDraw

SAMPLES: dict[str, str] = {
    "shapes": "5 kinds of coloured shapes drawn on varied backgrounds, 100 each",
    "digits": "scikit-learn's 1,797 handwritten digits 0–9, 8×8 pixels enlarged",
}

_SHAPES = ("circle", "square", "triangle", "star", "hexagon")
_PER_SHAPE = 100
_N_DIGITS = 1797  # size of sklearn's bundled set; hard-coded so counting needs no load
_DIGIT_PX = 32
_SS = 4  # supersampling factor so shape edges are anti-aliased


def iter_sample(name: str, seed: int = 0) -> Iterator[tuple[str, bytes]]:
    """Yield ("<class>/<file>.png", png_bytes) entries of the named sample."""
    _check(name)
    return _iter_shapes(seed) if name == "shapes" else _iter_digits()


def count_sample(name: str) -> int:
    """Return how many entries iter_sample(name) yields, without generating them."""
    _check(name)
    return len(_SHAPES) * _PER_SHAPE if name == "shapes" else _N_DIGITS


def _check(name: str) -> None:
    """Raise ValueError if name is not a known sample."""
    if name not in SAMPLES:
        raise ValueError(f"unknown sample {name!r}; known: {', '.join(SAMPLES)}")


def _png(img: Image.Image) -> bytes:
    """Encode an image as PNG bytes."""
    buf = io.BytesIO()
    # No pnginfo/exif is passed, so Pillow writes no timestamps: output is byte-stable.
    img.save(buf, format="PNG")
    return buf.getvalue()


# --- shapes ---------------------------------------------------------------


def _iter_shapes(seed: int) -> Iterator[tuple[str, bytes]]:
    """Yield the shapes sample, deterministically from seed."""
    rng = np.random.default_rng(seed)
    for cls in _SHAPES:
        for i in range(_PER_SHAPE):
            yield f"{cls}/{i:04d}.png", _png(_shape_image(cls, rng))


def _shape_image(cls: str, rng: np.random.Generator) -> Image.Image:
    """Draw one shape of class cls on a random background with pixel noise."""
    w, h = (int(v) for v in rng.integers(64, 129, size=2))
    bg = _background(w, h, rng)
    fill = _contrasting_colour(bg.reshape(-1, 3).mean(axis=0), rng)
    mask = _shape_mask(cls, w, h, rng)
    img = bg * (1 - mask[..., None]) + fill * mask[..., None]
    img += rng.normal(0, rng.uniform(0, 12), size=img.shape)
    return Image.fromarray(np.clip(img, 0, 255).round().astype(np.uint8), "RGB")


def _background(w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Return an h×w×3 float background: solid, two-colour gradient or noise texture."""
    kind = rng.integers(3)
    c1, c2 = rng.uniform(0, 255, size=(2, 3))
    if kind == 0:
        return np.broadcast_to(c1, (h, w, 3)).astype(float)
    if kind == 1:
        # Project pixel coords on a random direction to get an arbitrary-angle ramp.
        a = rng.uniform(0, 2 * math.pi)
        ys, xs = np.mgrid[0:h, 0:w]
        t = xs * math.cos(a) + ys * math.sin(a)
        t = (t - t.min()) / max(np.ptp(t), 1e-9)
        return c1 + (c2 - c1) * t[..., None]
    # Coarse random blobs upscaled smoothly read as texture, not as pixel noise.
    cells = int(rng.integers(3, 9))
    coarse = rng.uniform(0, 1, size=(cells, cells)).astype(np.float32)
    t = np.asarray(Image.fromarray(coarse, "F").resize((w, h), Image.BICUBIC))
    return c1 + (c2 - c1) * np.clip(t, 0, 1)[..., None]


def _contrasting_colour(ref: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Pick a random RGB colour far enough from ref that the shape stays visible."""
    best = rng.uniform(0, 255, size=3)
    for _ in range(50):
        if np.linalg.norm(best - ref) > 140:
            break
        cand = rng.uniform(0, 255, size=3)
        if np.linalg.norm(cand - ref) > np.linalg.norm(best - ref):
            best = cand
    return best


def _shape_mask(cls: str, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """Return an h×w coverage mask in [0, 1] with the shape fully inside the frame."""
    r = rng.uniform(0.25, 0.42) * min(w, h)
    margin = r + 2  # circumradius bound keeps every rotation inside the image
    cx, cy = rng.uniform(margin, w - margin), rng.uniform(margin, h - margin)
    rot = rng.uniform(0, 2 * math.pi)
    big = Image.new("L", (w * _SS, h * _SS), 0)
    draw = ImageDraw.Draw(big)
    if cls == "circle":
        box = [(cx - r) * _SS, (cy - r) * _SS, (cx + r) * _SS, (cy + r) * _SS]
        draw.ellipse(box, fill=255)
    else:
        pts = [((cx + x) * _SS, (cy + y) * _SS) for x, y in _polygon(cls, r, rot)]
        draw.polygon(pts, fill=255)
    small = big.resize((w, h), Image.BOX)
    return np.asarray(small, dtype=float) / 255


def _polygon(cls: str, r: float, rot: float) -> list[tuple[float, float]]:
    """Return vertices of a regular polygon or star with circumradius r, centred at 0."""
    sides = {"square": 4, "triangle": 3, "hexagon": 6, "star": 10}[cls]
    pts = []
    for k in range(sides):
        # A star alternates outer and inner vertices around 10 points.
        rad = r * (0.45 if cls == "star" and k % 2 else 1.0)
        a = rot + 2 * math.pi * k / sides
        pts.append((rad * math.cos(a), rad * math.sin(a)))
    return pts


# --- digits ---------------------------------------------------------------


def _iter_digits() -> Iterator[tuple[str, bytes]]:
    """Yield scikit-learn's digits as dark-on-light grayscale PNGs."""
    from sklearn.datasets import load_digits  # lazy: sklearn import is slow

    data = load_digits()
    for idx, (pix, target) in enumerate(zip(data.images, data.target)):
        # Data is ink intensity 0–16; invert so digits look like pen on paper.
        gray = (255 - pix * (255 / 16)).round().astype(np.uint8)
        img = Image.fromarray(gray, "L").resize((_DIGIT_PX, _DIGIT_PX), Image.NEAREST)
        yield f"{int(target)}/{idx:04d}.png", _png(img)
