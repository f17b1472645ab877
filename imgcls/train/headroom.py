"""Will fine-tuning beat the last layer alone on this dataset? A quick measurement before a finetune run.

A pretrained network's top stages are its most specialised to the photos it learned from. A linear classifier
(the kind `linear` trains) is cross-validated on the training images' pooled features from the top and from
the two stages below it. Where the top's features separate the classes best, the pretrained top already suits
the task and letting it adjust (`finetune`) has little to add: `linear` is expected to do as well in a fraction
of the time. Where a lower stage separates them better, the top discards part of what tells the classes apart,
and adjusting it is expected to help.

Measured with EfficientNet-Lite0 at 288 px, 5 folds, up to 400 training images (benchmarks/probe_heads.py):
hymenoptera's top 0.955 against 0.939 and 0.894 below it (nearest first), where `finetune` ends no better than
`linear`; the digits sample's top 0.800 against 0.858 and 0.850, where `finetune` beats `linear`; the shapes
sample's top 0.989 against 0.989 and 0.889, a tie, where `linear` already scores about 0.99.
"""

from __future__ import annotations

import time
from typing import Callable

import numpy as np

SAMPLE = 400  # training images at most, a seeded sample with every class in it: seconds on a CPU
FOLDS = 5
BELOW = 2  # stages under the top compared with it
NO_ROOM = 0.99  # a top this accurate leaves fine-tuning nothing to win
C = 0.1  # the probe's regularisation; 0.1 and 1 agreed within a point on both sets above
BATCH = 32


class HeadroomError(ValueError):
    """The measurement cannot run on this dataset, in plain words."""


def sample_rows(df, limit: int = SAMPLE, seed: int = 0):
    """Up to `limit` training rows, each class in proportion and with at least `FOLDS` of its images where it
    has them, in the manifest's order."""
    train = df[(df["split"] == "train") & ~df["excluded"].astype(bool)]
    counts = train["label"].astype(str).value_counts()
    if len(counts) < 2:
        raise HeadroomError("The measurement needs training images of at least two classes.")
    if counts.min() < 2:
        raise HeadroomError(f"Class '{counts.idxmin()}' has a single training image: the measurement needs "
                            "two or more per class.")
    if len(train) <= limit:
        return train
    rng = np.random.default_rng(seed)
    keep = []
    for label, rows in train.groupby(train["label"].astype(str), sort=True):
        n = min(len(rows), max(FOLDS, round(limit * len(rows) / len(train))))
        keep.extend(rng.choice(rows.index.to_numpy(), n, replace=False))
    return train.loc[sorted(keep)]


def pooled_stages(model, x) -> list[np.ndarray]:
    """The top's pooled features (timm's pre-logits), then those of the `BELOW` stages under it, nearest first,
    averaged over space (over tokens for a transformer's)."""
    import torch

    with torch.no_grad():
        last, inter = model.forward_intermediates(x)
        top = model.forward_head(last, pre_logits=True)
    below = [f.float().mean((2, 3)) if f.ndim == 4 else f.float().mean(1) for f in inter[-BELOW:][::-1]]  # nearest the top first
    return [top.float().numpy()] + [b.numpy() for b in below]


def probe_accuracy(x: np.ndarray, y: np.ndarray, seed: int = 0) -> float:
    """Cross-validated accuracy of a linear classifier on features `x` with labels `y`."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    folds = int(min(FOLDS, np.bincount(np.unique(y, return_inverse=True)[1]).min()))
    with threadpool_limits(1):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=2000))
        return float(cross_val_score(probe, x, y, cv=StratifiedKFold(folds, shuffle=True, random_state=seed)).mean())


def verdict(top: float, below: list[float]) -> str:
    """'finetune' when adjusting the top is expected to help, 'linear' when the last layer should do as well."""
    return "finetune" if top < NO_ROOM and below and max(below) > top else "linear"


def measure(dataset: str, backbone: str, img_size: int | None, seed: int = 0,
            progress: Callable[[float, str], None] | None = None) -> dict:
    """The probe's accuracy on the top and the stages below it, and what it expects of fine-tuning
    (img_size None: the backbone's own)."""
    from imgcls.store import workspace
    from imgcls.vision.imgcache import center_crop, to_tensor
    from imgcls.vision.models import frozen_backbone
    from imgcls.vision.preprocess import Preprocess

    started, say = time.time(), progress or (lambda f, m: None)
    rows = sample_rows(workspace.read_manifest(dataset), seed=seed)
    pre = Preprocess.for_backbone(backbone, img_size)
    say(0.02, "Reading images")
    images = pre.load_images(workspace.dataset_dir(dataset), rows["path"].tolist(), rows["hash"].tolist(),
                             progress=lambda f, m: say(0.02 + 0.28 * f, m))
    model = frozen_backbone(backbone)
    if not hasattr(model, "forward_intermediates"):
        raise HeadroomError(f"The backbone {backbone} does not show its inner stages, so this measurement "
                            "cannot run on it.")
    parts: list[list[np.ndarray]] = []
    for start in range(0, len(rows), BATCH):
        batch = np.asarray(images[np.arange(start, min(start + BATCH, len(rows)))])
        x = to_tensor(center_crop(batch, pre.img_size), pre.mean, pre.std, "cpu", True)
        parts.append(pooled_stages(model, x))
        say(0.3 + 0.5 * min(start + BATCH, len(rows)) / len(rows), "Features of the network's top stages")
    stages = [np.concatenate([p[i] for p in parts]) for i in range(len(parts[0]))]
    labels = rows["label"].astype(str).to_numpy()
    say(0.85, "Cross-validating a linear classifier")
    top, *below = (probe_accuracy(x, labels, seed) for x in stages)
    say(1.0, "Done")
    return {"verdict": verdict(top, below), "top": top, "below": below, "images": len(rows),
            "classes": int(len(set(labels))), "backbone": backbone, "img_size": pre.img_size, "folds": FOLDS,
            "seconds": round(time.time() - started, 2)}


def start(dataset: str, choices: dict, key: str) -> None:
    """Queue the measurement for {"backbone", "img_size"} as a background job (imgcls.augment.measurejob)."""
    from imgcls.augment import measurejob

    measurejob.start(dataset, choices, key, verb="headroom")


def _measure_choices(dataset: str, choices: dict, progress) -> dict:
    return measure(dataset, choices["backbone"], choices.get("img_size"), progress=progress)


def run_job(dataset: str, key: str, echo: Callable[[float, str], None] | None = None) -> dict:
    """Run a queued measurement in this process (the CLI's `headroom NAME --key`), keeping its status."""
    from imgcls.augment import measurejob

    return measurejob.run_job(dataset, key, echo, measure=_measure_choices)


def explain(result: dict) -> str:
    """What a measurement found and expects, in plain words (Markdown)."""
    below = " and ".join(f"{b:.0%}" for b in result["below"])
    found = (f"a linear classifier on the network's top features scores {result['top']:.0%} "
             f"({result['folds']}-fold, on {result['images']:,} training images), against {below} on the "
             f"{len(result['below'])} stages below the top")
    if result["verdict"] == "finetune":
        return (f"**Fine-tuning is expected to help here**: {found}. The top layers, made for the photos the "
                "network learned from, lose part of what tells your classes apart; fine-tuning lets them adjust.")
    if result["top"] >= NO_ROOM:
        return (f"**The last layer alone (linear) is expected to do as well as fine-tuning here**: {found}, which "
                "leaves fine-tuning little to win. `linear` trains in a fraction of the time.")
    return (f"**The last layer alone (linear) is expected to do as well as fine-tuning here**: {found}, so the "
            "pretrained top already suits your images. `linear` trains in a fraction of the time.")
