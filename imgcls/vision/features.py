"""Backbone features, computed once per image and cached on disk (a vision.cachestore store per key).

The key covers the backbone and its weights, the preprocessing and the image content, so a linear
head can be retrained in seconds and nothing is embedded twice.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Callable

import numpy as np
import torch

from imgcls.vision import cachestore
from imgcls.vision.engine import channels_last, compiled
from imgcls.vision.imgcache import center_crop, to_tensor


def feature_key(backbone: str, weights: str, config: dict, img_size: int) -> str:
    """A short hash naming one (backbone, weights, preprocessing) combination."""
    text = json.dumps({"backbone": backbone, "weights": weights, "config": config, "img_size": img_size},
                      sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


@torch.no_grad()
def embed(model: torch.nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """Pooled features just before the classifier (timm's pre-logits)."""
    return model.forward_head(model.forward_features(batch), pre_logits=True)


def feature_store(key: str) -> cachestore.RecordStore:
    """The store of backbone features under one feature key, in the current workspace."""
    return cachestore.open_store("features", key)


def cached(key: str, hashes: list[str]) -> np.ndarray | None:
    """Features of these images if every one is cached under `key` (N×D float32), else None."""
    store = feature_store(key)
    if cachestore.migrate(store, list(hashes)):
        return None
    return store.refresh().read(store.lookup(hashes)).astype(np.float32) if hashes else None


def extract(model: torch.nn.Module, images, hashes: list[str], key: str, config: dict,
            img_size: int, device: str = "cpu", batch_size: int = 64,
            progress: Callable[[float, str], None] | None = None) -> np.ndarray:
    """Features of every image (N×D float32), computing only those not cached under `key`; `images` is an
    array or a view over the decoded store, read one batch at a time."""
    store = feature_store(key)
    missing_hashes = set(cachestore.migrate(store, list(hashes)))
    missing, seen = [], set()
    for i, digest in enumerate(hashes):  # each missing image once, even when two rows share its content
        if digest in missing_hashes and digest not in seen:
            seen.add(digest)
            missing.append(i)
    model.eval()
    # nothing missing: the model may be a stand-in that is never called (health.scan)
    fast = compiled(model, "features", img_size, len(missing), device) if missing else None
    cl = bool(missing) and fast is None and channels_last(model)
    # batches of even size: on the CPU a batch of one or two can take other kernels and round the last digit
    # differently, so a lone leftover image would embed unlike the same image in a full batch
    batch_size = -(-len(missing) // max(-(-len(missing) // batch_size), 1)) if missing else batch_size
    for start in range(0, len(missing), batch_size):
        idx = missing[start:start + batch_size]
        x = to_tensor(center_crop(np.asarray(images[np.array(idx)]), img_size), config["mean"], config["std"], device,
                      cl)
        out = (fast or functools.partial(embed, model))(x).float().cpu().numpy().astype(np.float32)
        store.append([hashes[i] for i in idx], out)
        if progress:
            progress(min(start + batch_size, len(missing)) / len(missing), "Computing backbone features")
    if not hashes:
        return np.zeros((0, 0), dtype=np.float32)
    return store.refresh().read(store.lookup(hashes)).astype(np.float32)
