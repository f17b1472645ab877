"""Decode each image once: resized and centre-cropped to the working resolution, kept on disk.

Epochs, feature extraction and evaluation read these arrays instead of decoding JPEGs again.
"""

from __future__ import annotations

import io
import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

from imgcls.ingest.images import load_rgb
from imgcls.store import workspace

if TYPE_CHECKING:
    import torch

_RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}


def cache_size(img_size: int, crop_pct: float) -> int:
    """Side of the cached square: the resize before the centre crop (256 for 224 at crop 0.875)."""
    return int(math.floor(img_size / crop_pct))


def fit_square(img: Image.Image, side: int, interpolation: str = "bicubic") -> np.ndarray:
    """Resize the shorter side to `side` and centre-crop a square, as uint8 H×W×3."""
    w, h = img.size
    scale = side / min(w, h)
    new = (max(side, round(w * scale)), max(side, round(h * scale)))
    img = img.resize(new, _RESAMPLE.get(interpolation, Image.Resampling.BICUBIC))
    left, top = (new[0] - side) // 2, (new[1] - side) // 2
    return np.asarray(img.crop((left, top, left + side, top + side)), dtype=np.uint8)


def center_crop(arr: np.ndarray, size: int) -> np.ndarray:
    """Centre crop of an H×W×C (or N×H×W×C) array to size×size."""
    h, w = arr.shape[-3], arr.shape[-2]
    top, left = (h - size) // 2, (w - size) // 2
    return arr[..., top:top + size, left:left + size, :]


def _cached_one(folder: Path, rel: str, digest: str, side: int, interpolation: str, root: Path) -> np.ndarray:
    path = root / f"{digest}.npy"
    if path.exists():
        try:
            return np.load(path, allow_pickle=False)
        except (OSError, ValueError):
            pass  # a damaged cache entry is rebuilt below
    arr = fit_square(load_rgb(folder / rel), side, interpolation)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    workspace.atomic_write_bytes(path, buf.getvalue())
    return arr


def load_images(folder: Path, paths: list[str], hashes: list[str], side: int, interpolation: str = "bicubic",
                progress: Callable[[float, str], None] | None = None) -> np.ndarray:
    """All images of a dataset as one uint8 N×side×side×3 array, decoding only what is not cached yet."""
    root = workspace.cache_dir("decoded") / f"{side}-{interpolation}"
    root.mkdir(parents=True, exist_ok=True)
    out = np.empty((len(paths), side, side, 3), dtype=np.uint8)
    # PIL releases the GIL while decoding and resizing, so threads use every core
    with ThreadPoolExecutor(max_workers=4) as pool:
        jobs = pool.map(workspace.bound(lambda a: _cached_one(folder, a[0], a[1], side, interpolation, root)),
                        zip(paths, hashes))
        for i, arr in enumerate(jobs):
            out[i] = arr
            if progress and (i % 16 == 0 or i + 1 == len(paths)):
                progress((i + 1) / max(len(paths), 1), "Decoding images")
    return out


def to_tensor(batch: np.ndarray, mean, std, device: torch.device | str = "cpu",
              channels_last: bool = False) -> torch.Tensor:
    """uint8 N×H×W×3 → normalised float N×3×H×W on the device (normalising there is cheapest)."""
    import torch  # here, not above: the app's pages read the cache without a model, and torch takes seconds

    x = torch.from_numpy(np.ascontiguousarray(batch)).to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).float().div_(255.0)
    m = torch.tensor(mean, device=x.device).view(1, 3, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, 3, 1, 1)
    x = (x - m) / s
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x
