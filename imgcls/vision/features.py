"""Backbone features, computed once per image and cached on disk.

The key covers the backbone and its weights, the preprocessing and the image content, so a linear
head can be retrained in seconds and nothing is embedded twice.
"""

from __future__ import annotations

import hashlib
import io
import json
from typing import Callable

import numpy as np
import torch

from imgcls.store import workspace
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


def extract(model: torch.nn.Module, images: np.ndarray, hashes: list[str], key: str, config: dict,
            img_size: int, device: str = "cpu", batch_size: int = 64,
            progress: Callable[[float, str], None] | None = None) -> np.ndarray:
    """Features of every image (N×D float32), computing only those not cached under `key`."""
    root = workspace.cache_dir("features") / key
    root.mkdir(parents=True, exist_ok=True)
    feats: dict[int, np.ndarray] = {}
    missing = []
    for i, digest in enumerate(hashes):
        path = root / f"{digest}.npy"
        try:
            feats[i] = np.load(path, allow_pickle=False) if path.exists() else None
        except (OSError, ValueError):
            feats[i] = None
        if feats[i] is None:
            missing.append(i)
    model.eval()
    # batches of even size: on the CPU a batch of one or two can take other kernels and round the last digit
    # differently, so a lone leftover image would embed unlike the same image in a full batch
    batch_size = -(-len(missing) // max(-(-len(missing) // batch_size), 1)) if missing else batch_size
    for start in range(0, len(missing), batch_size):
        idx = missing[start:start + batch_size]
        x = to_tensor(center_crop(images[idx], img_size), config["mean"], config["std"], device)
        out = embed(model, x).float().cpu().numpy()
        for i, vec in zip(idx, out):
            feats[i] = vec
            buf = io.BytesIO()
            np.save(buf, vec.astype(np.float32), allow_pickle=False)
            workspace.atomic_write_bytes(root / f"{hashes[i]}.npy", buf.getvalue())
        if progress:
            progress(min(start + batch_size, len(missing)) / len(missing), "Computing backbone features")
    return np.stack([feats[i] for i in range(len(hashes))]).astype(np.float32) if hashes else np.zeros((0, 0))
