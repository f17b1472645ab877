"""What the Learn lab's experiments share: a dataset's images, backbone features (cached), probes, noise.

Every feature set goes through `features.extract`, so a second run of any experiment, or a run of
another experiment on the same images, embeds nothing again: augmented copies and transformed
validation images are cached under keys of their own.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from imgcls.augment import pipeline as augment
from imgcls.store import workspace
from imgcls.vision.cachestore import RecordView, subset
from imgcls.vision.preprocess import Preprocess, weights_id

Progress = Callable[[float, str], None]

# Deterministic changes of a validation image, weakest first: name → (axis label, no-change value, strongest)
TRANSFORMS = {
    "rotation": ("rotation (degrees)", 0.0, 90.0),
    "scale": ("scale (× size)", 1.0, 0.4),
    "darkening": ("brightness (×)", 1.0, 0.2),
    "blur": ("blur (sigma, pixels)", 0.0, 4.0),
}


@dataclass
class LabData:
    """A dataset's training and validation images, decoded once, with class indices."""

    dataset: str
    backbone: str
    classes: list[str]
    pre: Preprocess  # the backbone's pretrained weights at the lab's size
    images: RecordView  # training images first, then validation, uint8 N×side×side×3, read on demand
    hashes: list[str]
    paths: list[str]
    y_tr: np.ndarray
    y_va: np.ndarray
    cache: dict = field(default_factory=dict)

    @property
    def n_train(self) -> int:
        return len(self.y_tr)

    @property
    def size(self) -> int:
        """The network's input size: the side of the centre crop."""
        return self.pre.img_size


def _cap(df, per_class: int | None, seed: int):
    """At most `per_class` rows of each class, drawn with a seed, in manifest order."""
    if not per_class:
        return df
    rng = np.random.default_rng(seed)
    keep = [rows.index[np.sort(rng.permutation(len(rows))[:per_class])] for _, rows in df.groupby("label")]
    return df.loc[np.sort(np.concatenate(keep))] if keep else df


def load(dataset: str, backbone: str, img_size: int | None = None, seed: int = 0, max_train: int | None = None,
         max_val: int | None = None, progress: Progress | None = None) -> LabData:
    """The training and validation images of a dataset (excluded ones left out), decoded and cached."""
    from imgcls.train.run import check_dataset

    df = workspace.read_manifest(dataset)
    df = df[~df["excluded"]].assign(label=lambda d: d["label"].astype(str))
    check_dataset(df)  # the same plain refusals as training: one class, no validation images…
    train = _cap(df[df["split"] == "train"], max_train, seed)
    val = _cap(df[df["split"] == "val"], max_val, seed)
    pre = Preprocess.for_backbone(backbone, img_size)
    paths, hashes = list(train["path"]) + list(val["path"]), list(train["hash"]) + list(val["hash"])
    images = pre.load_images(workspace.dataset_dir(dataset), paths, hashes, progress=progress)
    classes = sorted(df["label"].unique())
    index = {c: i for i, c in enumerate(classes)}
    return LabData(dataset, backbone, classes, pre, images, hashes, paths,
                   train["label"].map(index).to_numpy(), val["label"].map(index).to_numpy())


def _extract(lab: LabData, images: np.ndarray, hashes: list[str], extra: dict, pretrained: bool = True,
             seed: int = 0, progress: Progress | None = None) -> np.ndarray:
    from imgcls.vision.models import frozen_backbone

    # random weights are seeded, and cached under a name of their own
    pre = lab.pre if pretrained else dataclasses.replace(lab.pre, weights=weights_id(lab.backbone, False, seed))
    return pre.extract(frozen_backbone(lab.backbone, pretrained, seed), images, hashes, extra=extra,
                       progress=progress)


def clean_features(lab: LabData, pretrained: bool = True, seed: int = 0,
                   progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(training, validation) features of the untouched images, from pretrained or random weights."""
    name = ("clean", pretrained, seed)
    if name not in lab.cache:
        feats = _extract(lab, lab.images, lab.hashes, {}, pretrained, seed, progress)
        lab.cache[name] = feats[:lab.n_train], feats[lab.n_train:]
    return lab.cache[name]


def _image_seed(digest: str, copy: int, seed: int) -> int:
    """A seed of this image and copy alone: a copy looks the same whichever other images ran with it."""
    return int(hashlib.sha1(f"{digest}:{copy}:{seed}".encode()).hexdigest()[:8], 16)


def augmented_features(lab: LabData, spec: str | dict, copies: int, seed: int = 0,
                       progress: Progress | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features of `copies` augmented versions of each training image, and their labels."""
    from imgcls.vision.infer import fit_size

    name = ("augmented", repr(spec), copies, seed)
    if name in lab.cache:
        return lab.cache[name]
    pipeline = augment.build_pipeline(spec, lab.size, classes=lab.classes)
    tr_hashes = lab.hashes[:lab.n_train]
    batch, hashes = [], []
    for copy in range(copies):
        for img, digest in zip(subset(lab.images, slice(0, lab.n_train)), tr_hashes):  # read a chunk at a time
            augment.reseed(pipeline, _image_seed(digest, copy, seed))
            batch.append(fit_size(pipeline(image=img)["image"], lab.size))
            hashes.append(f"{digest}-aug{copy}")
    extra = {"augment": augment.pipeline_to_dict(pipeline), "augment_seed": seed}
    feats = _extract(lab, np.stack(batch) if batch else lab.images[:0], hashes, extra, progress=progress)
    lab.cache[name] = feats, np.tile(lab.y_tr, copies)
    return lab.cache[name]


def strengths(transform: str, count: int) -> list[float]:
    """`count` evenly spaced strengths of a transform, from no change to the strongest."""
    _, none, strongest = TRANSFORMS[transform]
    return [round(float(v), 3) for v in np.linspace(none, strongest, max(count, 2))]


def transform_image(img: np.ndarray, transform: str, strength: float, size: int) -> np.ndarray:
    """One validation image rotated, rescaled, darkened or blurred; the same every time."""
    import cv2

    side = img.shape[0]
    if transform == "darkening":
        return np.clip(img.astype(np.float32) * strength, 0, 255).round().astype(np.uint8)
    if transform == "blur":
        sigma = strength * side / size  # sigma is given in pixels of the network's input
        return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma) if sigma > 0 else img
    angle, scale = (strength, 1.0) if transform == "rotation" else (0.0, strength)
    matrix = cv2.getRotationMatrix2D((side / 2, side / 2), angle, scale)
    # rotation reflects the border, as a camera turned on a wide scene would; a smaller object gets
    # a plain surround in the image's mean colour, not mirrored copies of itself
    border = cv2.BORDER_REFLECT_101 if transform == "rotation" else cv2.BORDER_CONSTANT
    fill = tuple(float(v) for v in img.reshape(-1, 3).mean(0))
    return cv2.warpAffine(img, matrix, (side, side), flags=cv2.INTER_LINEAR, borderMode=border, borderValue=fill)


def val_subset(y_va: np.ndarray, per_class: int | None, seed: int = 0) -> np.ndarray:
    """Positions of at most `per_class` validation images of each class (all when per_class is None)."""
    if not per_class:
        return np.arange(len(y_va))
    rng = np.random.default_rng(seed)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(y_va == c))[:per_class] for c in np.unique(y_va)]))


def transformed_features(lab: LabData, transform: str, strength: float, index: np.ndarray | None = None,
                         progress: Progress | None = None) -> np.ndarray:
    """Features of the validation images (those at `index`, else all) after one transform at one strength."""
    index = np.arange(len(lab.y_va)) if index is None else np.asarray(index)
    if strength == TRANSFORMS[transform][1]:
        return clean_features(lab)[1][index]
    val = lab.images[lab.n_train + index]  # only the images asked for
    batch = np.stack([transform_image(img, transform, strength, lab.size) for img in val]) if len(val) else val
    hashes = [lab.hashes[lab.n_train + i] for i in index]
    return _extract(lab, batch, hashes, {"transform": transform, "strength": strength}, progress=progress)


# --- probes -----------------------------------------------------------------------------------------


def make_probe():
    """A linear probe, not yet trained: standardised features, logistic regression (deterministic)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))


def fit_probe(x: np.ndarray, y: np.ndarray):
    """A linear probe trained on features x with class indices y."""
    from threadpoolctl import threadpool_limits

    # one BLAS thread: on problems this small, threads fighting over two cores made fits 25× slower
    with threadpool_limits(limits=1):
        return make_probe().fit(x, y)


def accuracy(probe, x: np.ndarray, y: np.ndarray) -> float:
    """Share of images the probe gets right."""
    return float(np.mean(probe.predict(x) == y)) if len(y) else float("nan")


def per_class(probe, x: np.ndarray, y: np.ndarray, n_classes: int) -> list[float]:
    """Accuracy on each class's images (recall); NaN for a class with no images."""
    pred = probe.predict(x)
    return [float(np.mean(pred[y == c] == c)) if np.any(y == c) else float("nan") for c in range(n_classes)]


def head_curve(x_tr: np.ndarray, y_tr: np.ndarray, x_va: np.ndarray, y_va: np.ndarray, n_classes: int,
               epochs: int, seed: int = 0) -> dict:
    """Train a linear layer on features epoch by epoch (as the Train page does); accuracy per epoch."""
    import torch

    from imgcls.train.heads import HEAD_BATCH, HEAD_LR, head_epoch
    from imgcls.train.loops import warmup_cosine

    mean, std = x_tr.mean(0), x_tr.std(0) + 1e-6  # random-weight features can be far from unit scale
    xt, xv = (torch.from_numpy((x - mean) / std).float() for x in (x_tr, x_va))
    yt = torch.from_numpy(np.array(y_tr)).long()
    torch.manual_seed(seed)
    head = torch.nn.Linear(xt.shape[1], n_classes)
    opt = torch.optim.AdamW(head.parameters(), lr=HEAD_LR, weight_decay=0.05)
    steps = max(1, -(-len(yt) // HEAD_BATCH))
    sched = warmup_cosine(opt, steps * epochs, steps)
    gen = torch.Generator().manual_seed(seed)
    train_acc, val_acc = [], []
    for _ in range(epochs):
        head_epoch(head, xt, yt, opt, sched, torch.nn.functional.cross_entropy, gen)  # as the Train page does
        with torch.no_grad():
            train_acc.append(float((head(xt).argmax(1) == yt).float().mean()))
            val_acc.append(float((head(xv).argmax(1).numpy() == y_va).mean()) if len(y_va) else float("nan"))
    return {"train": train_acc, "val": val_acc}


def noise_points(p1: float, p2: float, n: int) -> float:
    """Two standard errors of the difference of two accuracies on n images, in points (at least one image)."""
    if n <= 0:
        return float("nan")
    se = np.sqrt((p1 * (1 - p1) + p2 * (1 - p2)) / n)
    return float(max(200 * se, 100 / n))


def pct(value: float) -> str:
    """An accuracy as the conclusions write it: 0.9467 → '94.7%'."""
    return f"{100 * value:.1f}%"


def count(n: int, noun: str) -> str:
    """'1 epoch', '30 epochs'."""
    return f"{n} {noun}{'s' * (n != 1)}"


def points(value: float) -> str:
    """A difference of accuracies in percentage points: 0.0533 → '5.3'."""
    return f"{abs(100 * value):.1f}"
