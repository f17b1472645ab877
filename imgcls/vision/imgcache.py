"""Decode each image once: resized and centre-cropped to the working resolution, kept on disk.

Epochs, feature extraction and evaluation read these squares, through a lazy view over the decoded store
(vision.cachestore), instead of decoding JPEGs again; nothing holds a whole dataset in memory.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np
from PIL import Image

from imgcls.ingest.images import load_rgb
from imgcls.store import workspace
from imgcls.vision import cachestore

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


def _decode(folder: Path, rel: str, side: int, interpolation: str) -> np.ndarray:
    return fit_square(load_rgb(folder / rel), side, interpolation)


APPEND_BATCH = 64  # decoded squares written to the store at a time: a kill loses at most these


def decoded_store(side: int, interpolation: str) -> cachestore.RecordStore:
    """The store of decoded squares of one side and interpolation, in the current workspace."""
    return cachestore.open_store("decoded", f"{side}-{interpolation}")


def load_images(folder: Path, paths: list[str], hashes: list[str], side: int, interpolation: str = "bicubic",
                progress: Callable[[float, str], None] | None = None) -> cachestore.RecordView:
    """A dataset's images as a lazy N×side×side×3 uint8 view over the decoded store, decoding (and
    appending) only those not stored yet; a file that cannot be decoded raises, after the others are kept."""
    store = decoded_store(side, interpolation)
    missing = cachestore.migrate(store, list(hashes))
    where = dict(zip(hashes, paths))
    todo = [(where[d], d) for d in missing]
    n, done = len(paths), len(paths) - len(todo)
    if progress and done:
        progress(done / max(n, 1), "Decoding images")
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        if pending:
            store.append([d for d, _ in pending], np.stack([a for _, a in pending]))
            pending.clear()

    try:
        # PIL releases the GIL while decoding and resizing, so threads use every core
        with ThreadPoolExecutor(max_workers=4) as pool:
            jobs = pool.map(workspace.bound(lambda a: _decode(folder, a[0], side, interpolation)), todo)
            for (_, digest), arr in zip(todo, jobs):
                pending.append((digest, arr))
                done += 1
                if len(pending) >= APPEND_BATCH:
                    flush()
                if progress and (done % 16 == 0 or done == n):
                    progress(done / max(n, 1), "Decoding images")
    finally:
        flush()  # what was decoded before a failure stays decoded
    return cachestore.RecordView(store.refresh(), store.lookup(hashes), (side, side, 3), np.uint8)


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
