"""Is a new image like the training images? Its distance to them in the model's own feature space.

A classifier always answers one of its classes, even for a photo of something it has never seen. The
check here follows Sun et al. (2022), "Out-of-distribution detection with deep nearest neighbors": the
penultimate features (timm's pre-logits) are L2-normalised, and an image's score is the cosine distance
to its k-th nearest training image. Far from every training image means "unfamiliar".

The reference (the training images' features and the threshold) is computed on first use, not during
training, and saved with the run as `ood.safetensors` (no pickle); a newer model makes it stale.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import torch
from safetensors import safe_open
from safetensors.numpy import save as save_numpy

from imgcls.ingest.images import ImageProblem
from imgcls.store import runs, workspace
from imgcls.vision.preprocess import Preprocess

FILE = "ood.safetensors"
K = 5  # the k-th neighbour, not the first: one odd or duplicated training image cannot hide a stranger
# The threshold comes from the validation images: the model never trained on them, yet they are the kind
# of image it is meant for, so their distances show how far a normal new image lies. Their 99th percentile
# ignores a stray odd one in a large split (it then flags about 1% of normal images at most), and the 10%
# margin absorbs the noise of a small split, where the percentile is close to the single largest distance.
QUANTILE = 0.99
MARGIN = 1.1
MIN_VALIDATION = 5  # fewer validation images than this: leave-one-out distances of the training images instead
MAX_REFERENCE = 5000  # training images kept (a seeded sample beyond it): 5000×1280 float16 is 12 MB, 1 ms a query
MAX_VALIDATION = 5000  # validation images whose distances set the threshold: plenty for a 99th percentile
EMBED_CHUNK = 256  # images decoded and embedded at a time: memory stays flat however big the dataset
CHUNK = 1024  # queries per matrix product, to bound memory on big splits


@dataclass(frozen=True)
class Reference:
    """The training images' normalised features, and the distance beyond which an image is unfamiliar."""

    train: np.ndarray  # N×D float32, rows of unit length
    threshold: float
    k: int

    def distances(self, embeddings: np.ndarray) -> np.ndarray:
        """Cosine distance from each embedding to its k-th nearest training image."""
        return knn_distance(normalise(embeddings), self.train, self.k)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (float32)."""
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def knn_distance(queries: np.ndarray, reference: np.ndarray, k: int) -> np.ndarray:
    """1 − cosine similarity to the k-th most similar reference row (both sides already normalised)."""
    k = max(1, min(k, len(reference)))
    out = np.empty(len(queries), dtype=np.float32)
    for start in range(0, len(queries), CHUNK):
        # torch's matmul, not numpy's: it shares the model's thread pool, where numpy's BLAS threads would
        # keep spinning after the call and slow the next forward pass (2× per image, measured)
        sims = (torch.from_numpy(np.ascontiguousarray(queries[start:start + CHUNK]))
                @ torch.from_numpy(reference).T).numpy()
        out[start:start + CHUNK] = 1.0 - np.partition(sims, -k, axis=1)[:, -k]
    return np.clip(out, 0.0, 2.0)


def threshold_from(distances: np.ndarray) -> float:
    """The distance beyond which an image counts as unfamiliar, from in-distribution distances."""
    return float(np.quantile(distances, QUANTILE) * MARGIN)


def _preprocess(run_id: str, config: dict) -> Preprocess:
    """The run's preprocessing, its features cached with the training's when the backbone never changed
    (linear), under the trained model's own name else."""
    pre = Preprocess.for_run(config)
    if config.get("strategy") == "linear":  # the one strategy that never trains the network (train.strategies)
        return pre
    stamp = (runs.run_dir(run_id) / "model.safetensors").stat().st_mtime_ns
    return dataclasses.replace(pre, weights=f"run:{run_id}:{stamp}")


def sample(df: pd.DataFrame, limit: int, seed: int = 0) -> pd.DataFrame:
    """At most `limit` rows, each class keeping its share (seeded), in their original order."""
    if len(df) <= limit:
        return df
    draw = pd.Series(np.random.default_rng(seed).random(len(df)), index=df.index)
    place = draw.groupby(df["label"]).rank(method="first")  # 1, 2, … within each class, in random order
    share = place / df.groupby("label")["label"].transform("size") * limit  # the class's fair turn for it
    # the earlier of the two: big classes fill their share, a rare class still keeps its first few images,
    # so its members are not all called unfamiliar for want of neighbours
    order = np.minimum(place, share).sort_values(kind="stable").index
    return df.loc[np.sort(order[:limit])]


def _embed(run_id: str, model: torch.nn.Module, config: dict, df: pd.DataFrame, device: str,
           progress: Callable[[float, str], None] | None) -> np.ndarray:
    """Normalised features of the rows, decoded and embedded a chunk at a time (cached ones are only read)."""
    pre, folder = _preprocess(run_id, config), workspace.dataset_dir(config["dataset"])
    out = []
    for start in range(0, len(df), EMBED_CHUNK):
        part = df.iloc[start:start + EMBED_CHUNK]
        hashes = part["hash"].tolist()
        out.append(pre.extract(model, pre.load_images(folder, part["path"].tolist(), hashes), hashes, device))
        if progress:
            progress(min(start + EMBED_CHUNK, len(df)) / len(df), "Computing backbone features")
    return normalise(np.concatenate(out))


def build(run_id: str, model: torch.nn.Module, config: dict, device: str = "cpu",
          progress: Callable[[float, str], None] | None = None) -> Reference:
    """Embed the run's training and validation images (a seeded sample of big splits) and derive the threshold."""
    df = workspace.read_manifest(config["dataset"])
    df = df[~df["excluded"] & df["split"].isin(["train", "val"]) & df["label"].isin(config["classes"])]
    df = df.reset_index(drop=True)
    # sampled before decoding: only the images kept are ever read, so a huge split costs no more memory
    train_rows = sample(df[df["split"] == "train"], MAX_REFERENCE)
    val_rows = sample(df[df["split"] == "val"], MAX_VALIDATION)
    if len(train_rows) < 2:
        raise ValueError("The run's dataset has too few training images left to compare new images with.")
    emb = _embed(run_id, model, config, pd.concat([train_rows, val_rows]), device, progress)
    train, val = emb[:len(train_rows)], emb[len(train_rows):]
    if len(val) >= MIN_VALIDATION:
        k = min(K, len(train))
        d = knn_distance(val, train, k)
    else:  # each training image against the others: its own row is the nearest, so ask for one more
        k = min(K, len(train) - 1)
        d = knn_distance(train, train, k + 1)
    return Reference(train, threshold_from(d), k)


def save(run_id: str, ref: Reference) -> None:
    """Write the reference next to the model (atomically; float16 halves it and keeps 3 digits)."""
    meta = {"threshold": repr(ref.threshold), "k": str(ref.k), "quantile": str(QUANTILE), "margin": str(MARGIN)}
    data = save_numpy({"train": ref.train.astype(np.float16)}, metadata=meta)
    workspace.atomic_write_bytes(runs.run_dir(run_id) / FILE, data)


def load(run_id: str) -> Reference | None:
    """The saved reference, unless missing or older than the model."""
    folder = runs.run_dir(run_id)
    path, model = folder / FILE, folder / "model.safetensors"
    if not path.exists() or (model.exists() and path.stat().st_mtime_ns < model.stat().st_mtime_ns):
        return None
    try:
        with safe_open(str(path), framework="np") as fh:
            meta = fh.metadata() or {}
            return Reference(fh.get_tensor("train").astype(np.float32), float(meta["threshold"]), int(meta["k"]))
    except Exception:  # noqa: BLE001 - a torn or foreign file (SafetensorError, KeyError …) is rebuilt
        return None


def reference(run_id: str, model: torch.nn.Module, config: dict, device: str = "cpu") -> Reference | None:
    """The run's reference: loaded, or built and saved on first use; None when the dataset is gone."""
    found = load(run_id)
    if found is not None:
        return found
    try:
        ref = build(run_id, model, config, device)
    except (ValueError, OSError, KeyError, workspace.WorkspaceError, ImageProblem):
        return None
    save(run_id, ref)
    return ref
