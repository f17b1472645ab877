"""Per-image checks that need no model: size, shape, brightness, contrast, colour and sharpness."""

from __future__ import annotations

import numpy as np

DARK = 0.15  # mean brightness (0…1) under which a photo reads as nearly black
BRIGHT = 0.90  # mean brightness over which it reads as washed out or blank white
LOW_CONTRAST = 0.04  # spread (std, 0…1) of the most varied colour channel: under ~10 levels, one flat tone
GREY_COLOUR = 0.02  # mean channel spread: JPEG colour noise in a grey photo stays under 5 of 255 levels
BLUR_Z = 3.0  # sharpness this many robust standard deviations under the dataset's typical image
BLUR_SPREAD_FLOOR = 0.15  # log10 units: in a very uniform dataset, slightly soft images are not "blurry"
MIN_RELATIVE = 10  # a "typical image" needs at least this many images to be measured
TINY_PX = 32  # shorter side under 32 px: upscaled 7× to the model's 224 px, detail is gone
TINY_SHARE = 0.25  # … or under a quarter of the dataset's typical shorter side
HUGE_PIXELS = 24_000_000  # over a 24 MP camera photo: slow to decode, no detail a 224 px model can use
ODD_ASPECT = 3.0  # longer side over 3× the shorter: the square centre crop keeps under a third of it
STYLE_SHARE = 0.5  # a property most images share is the dataset's style (X-rays, scans), not a fault
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def measure(images: np.ndarray, batch: int = 32) -> dict[str, np.ndarray]:
    """Brightness, contrast, colourfulness (0…1) and sharpness of uint8 N×S×S×3 images."""
    # in batches: a float copy of 256 images of 256 px would take 200 MB
    parts = [_measure(images[s:s + batch]) for s in range(0, len(images), batch)]
    keys = ("brightness", "contrast", "colour", "sharpness")
    return {k: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0) for k in keys}


def _measure(images: np.ndarray) -> dict[str, np.ndarray]:
    n = len(images)
    # every 4th pixel is plenty for averages, and 16× cheaper; sharpness needs every pixel
    few = images[:, ::4, ::4].reshape(n, -1, 3).astype(np.float32) / 255.0
    grey = images.reshape(n, -1, 3).astype(np.float32) @ (_LUMA / 255.0)
    grey = grey.reshape(images.shape[:3])
    lap = (4 * grey[:, 1:-1, 1:-1] - grey[:, :-2, 1:-1] - grey[:, 2:, 1:-1]
           - grey[:, 1:-1, :-2] - grey[:, 1:-1, 2:])
    # contrast is that of the most varied channel: red on an equally bright green is not flat
    return {"brightness": (few @ _LUMA).mean(axis=1), "contrast": few.std(axis=1).max(axis=-1),
            "colour": (few.max(axis=-1) - few.min(axis=-1)).mean(axis=1),
            "sharpness": lap.reshape(n, -1).var(axis=1)}


def _robust_z(values: np.ndarray, floor: float) -> np.ndarray:
    """(value − median) / (1.4826 × MAD): a z-score that a few extreme images cannot drag along."""
    med = np.median(values)
    spread = max(1.4826 * float(np.median(np.abs(values - med))), floor)
    return (values - med) / spread


def _flag(mask: np.ndarray, scores: np.ndarray, style: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Indices and scores of flagged images, most suspicious first (none when most share the property)."""
    if not mask.any() or (style and mask.mean() > STYLE_SHARE):
        return np.zeros(0, dtype=int), np.zeros(0)
    idx = np.flatnonzero(mask)
    order = np.argsort(-scores[idx], kind="stable")
    return idx[order], scores[idx][order]


def size_flags(width: np.ndarray, height: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """tiny_image, huge_image and odd_shape from the stored sizes (no decoding needed)."""
    w, h = np.asarray(width, dtype=float), np.asarray(height, dtype=float)
    short, long_ = np.minimum(w, h), np.maximum(w, h)
    typical = float(np.median(short)) if len(short) >= MIN_RELATIVE else 0.0
    tiny_at = max(TINY_PX, TINY_SHARE * typical)
    aspect = long_ / np.maximum(short, 1)
    return {"tiny_image": _flag(short < tiny_at, 1 - short / tiny_at),
            "huge_image": _flag(w * h > HUGE_PIXELS, w * h / HUGE_PIXELS, style=False),
            "odd_shape": _flag(aspect > ODD_ASPECT, aspect)}


def look_flags(stats: dict[str, np.ndarray], tiny: np.ndarray | None = None) -> dict[str, tuple]:
    """grayscale, dark, bright, low_contrast and blurry from measured stats; each (indices, scores)."""
    b, c, col = stats["brightness"], stats["contrast"], stats["colour"]
    n = len(b)
    flat = c < LOW_CONTRAST
    out = {"grayscale": _flag(col < GREY_COLOUR, 1 - col),
           "dark": _flag(b < DARK, 1 - b), "bright": _flag(b > BRIGHT, b),
           "low_contrast": _flag(flat, 1 - c)}
    # flat and tiny images have no edges to be sharp: they are reported as such, not as blurry
    usable = ~flat & (np.ones(n, dtype=bool) if tiny is None else ~tiny)
    blurry = (np.zeros(0, dtype=int), np.zeros(0))
    if usable.sum() >= MIN_RELATIVE:
        logs = np.log10(np.maximum(stats["sharpness"], 1e-12))
        z = np.zeros(n)
        z[usable] = _robust_z(logs[usable], BLUR_SPREAD_FLOOR)
        blurry = _flag(usable & (z < -BLUR_Z), -z)
    out["blurry"] = blurry
    return out
