"""Evaluating a trained run: a predictions table and the metrics an expert checks, saved with the run."""

from __future__ import annotations

import numpy as np
import pandas as pd

from imgcls.store import runs, versions, workspace
from imgcls.vision.preprocess import Preprocess

# torch, the model and scikit-learn load inside the functions that need them: the Evaluate page reads saved
# evaluations through this module, and importing them would cost seconds on every fresh server
RELIABILITY_BINS = 10


def _probabilities(model, images, config: dict, device: str, tta: bool) -> np.ndarray:
    """Probabilities of images (an array or a view over the decoded store), a chunk of them in memory at once."""
    from imgcls.vision.cachestore import read_chunk
    from imgcls.vision.infer import probabilities

    pre = Preprocess.for_run(config)
    out = []
    step = max(read_chunk(), 64)
    for start in range(0, len(images), step):
        chunk = np.asarray(images[start:start + step])
        probs = probabilities(model, chunk, pre, device, expected=len(images) * (2 if tta else 1))
        if tta:  # the mirror image too, averaged: a cheap, common test-time augmentation
            probs = (probs + probabilities(model, chunk[:, :, ::-1], pre, device, expected=2 * len(images))) / 2
        out.append(probs)
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)


def _cached_features(config: dict, hashes: list[str]) -> np.ndarray | None:
    """The frozen backbone's features of these images as training cached them (linear runs), or None when
    any is missing. The same preprocessing and weights, so the head on them is the model's own answer."""
    from imgcls.vision.features import cached

    if config.get("strategy") != "linear":  # the one strategy that never trains the network (train.strategies)
        return None
    return cached(Preprocess.for_run(config).feature_key(), hashes)


def split_probabilities(model, config: dict, df: pd.DataFrame, tta: bool, device: str) -> np.ndarray:
    """Class probabilities of the rows' images: a linear run's head on its cached features (no backbone
    pass), else the whole model on the decoded images (and on their mirror images with TTA)."""
    import torch

    feats = None if tta else _cached_features(config, df["hash"].tolist())
    with torch.inference_mode():
        if feats is not None:
            head = model.get_classifier()
            return head(torch.from_numpy(feats).to(device)).float().softmax(1).cpu().numpy()
        images = Preprocess.for_run(config).load_images(workspace.dataset_dir(config["dataset"]),
                                                         df["path"].tolist(), df["hash"].tolist())
        return _probabilities(model, images, config, device, tta)


def predict_split(run_id: str, split: str = "val", tta: bool = False, device: str = "cpu") -> pd.DataFrame:
    """One row per image of a split: label, prediction, class probabilities, loss and correctness."""
    from imgcls.vision.checkpoint import load_run_model

    model, config = load_run_model(run_id, device)
    classes = config["classes"]
    df = versions.run_rows(run_id)  # the version it trained on: edits since are marked, not scored
    df = df[(df["split"] == split) & df["label"].isin(classes)].reset_index(drop=True)
    if df.empty:
        raise ValueError(f"The '{split}' split of '{config['dataset']}' has no images of the run's classes.")
    probs = split_probabilities(model, config, df, tta, device)
    index = {c: i for i, c in enumerate(classes)}
    y = df["label"].map(index).to_numpy()
    out = df[["path", "hash", "source", "label"]].copy()  # source: the file name the user knows
    out["prediction"] = [classes[i] for i in probs.argmax(1)]
    out["confidence"] = probs.max(1)
    out["loss"] = -np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, 1.0))
    out["correct"] = out["prediction"] == out["label"]
    for i, name in enumerate(classes):
        out[f"p:{name}"] = probs[:, i]
    return out


def reliability(confidence: np.ndarray, correct: np.ndarray, bins: int = RELIABILITY_BINS) -> dict:
    """Accuracy against confidence in equal-width bins, and the expected calibration error (ECE)."""
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    rows, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            acc, conf = float(correct[mask].mean()), float(confidence[mask].mean())
            ece += mask.mean() * abs(acc - conf)
            rows.append({"low": float(edges[b]), "high": float(edges[b + 1]), "count": int(mask.sum()),
                         "accuracy": acc, "confidence": conf})
    return {"bins": rows, "ece": float(ece)}


def compute_metrics(labels: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, balanced accuracy, macro F1, per-class scores, confusion, top-k, ROC-AUC and ECE."""
    from sklearn import metrics as skm

    n = len(classes)
    pred = probs.argmax(1)
    idx = list(range(n))
    precision, recall, f1, support = skm.precision_recall_fscore_support(labels, pred, labels=idx, zero_division=0)
    confusion = skm.confusion_matrix(labels, pred, labels=idx)
    rows = confusion.sum(1, keepdims=True)
    out = {
        "images": int(len(labels)),
        "accuracy": float(skm.accuracy_score(labels, pred)),
        "balanced_accuracy": float(skm.balanced_accuracy_score(labels, pred)),
        "macro_f1": float(skm.f1_score(labels, pred, labels=idx, average="macro", zero_division=0)),
        "per_class": {c: {"precision": float(precision[i]), "recall": float(recall[i]), "f1": float(f1[i]),
                          "support": int(support[i])} for i, c in enumerate(classes)},
        "classes": list(classes),
        "confusion": confusion.tolist(),
        "confusion_normalised": np.divide(confusion, np.maximum(rows, 1)).tolist(),
    }
    if n > 2:
        k = min(3, n - 1)
        out[f"top{k}_accuracy"] = float(skm.top_k_accuracy_score(labels, probs, k=k, labels=idx))
    out["roc_auc"] = _roc_auc(labels, probs, n)
    calib = reliability(probs.max(1), pred == labels)
    out["ece"], out["reliability"] = calib["ece"], calib["bins"]
    return out


def _roc_auc(labels: np.ndarray, probs: np.ndarray, n: int) -> float | None:
    """One-vs-rest macro ROC-AUC; None when a class is missing from the split (it is undefined then)."""
    from sklearn import metrics as skm

    if len(np.unique(labels)) < n:
        return None
    if n == 2:
        return float(skm.roc_auc_score(labels, probs[:, 1]))
    return float(skm.roc_auc_score(labels, probs, multi_class="ovr", average="macro", labels=list(range(n))))


def _suffix(split: str, tta: bool) -> str:
    # with and without TTA are kept apart, so neither result silently replaces the other
    return f"{split}{'-tta' if tta else ''}"


def evaluate(run_id: str, split: str = "val", tta: bool = False, device: str = "cpu") -> dict:
    """Predict a split, compute the metrics, and save both with the run (predictions-<split>[-tta].csv)."""
    table = predict_split(run_id, split, tta, device)
    classes = runs.read_config(run_id)["classes"]
    labels = table["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    probs = table[[f"p:{c}" for c in classes]].to_numpy()
    result = compute_metrics(labels, probs, classes)
    folder = runs.run_dir(run_id)
    suffix = _suffix(split, tta)
    workspace.atomic_write_text(folder / f"predictions-{suffix}.csv", table.to_csv(index=False))
    result.update(run=run_id, split=split, tta=tta, predictions=str(folder / f"predictions-{suffix}.csv"),
                  dataset_version=versions.run_version(run_id))
    workspace.atomic_write_json(folder / f"evaluation-{suffix}.json", result)
    return result


def saved_evaluation(run_id: str, split: str = "val", tta: bool = False) -> dict | None:
    """The evaluation saved with the run for this split and TTA setting, unless the model is newer."""
    folder = runs.run_dir(run_id)
    path = folder / f"evaluation-{_suffix(split, tta)}.json"
    model = folder / "model.safetensors"
    if not path.exists() or (model.exists() and path.stat().st_mtime < model.stat().st_mtime):
        return None
    result = workspace.read_json(path)
    return result if result and bool(result.get("tta", False)) == bool(tta) else None


def changes_since(table: pd.DataFrame, manifest: pd.DataFrame) -> pd.Series:
    """For each prediction row, what was edited in the dataset since it was computed ('' if nothing):
    the saved predictions keep the labels they were scored against until the run is evaluated again."""
    now = manifest.set_index("path")
    notes = []
    for path, label in zip(table["path"], table["label"]):
        if path not in now.index:
            notes.append("no longer in the dataset")
        elif bool(now.at[path, "excluded"]):
            notes.append("excluded since")
        elif str(now.at[path, "label"]) != str(label):
            notes.append(f"relabelled to {now.at[path, 'label']} since")
        else:
            notes.append("")
    return pd.Series(notes, index=table.index, dtype=object)


def evaluate_quietly(run_id: str, device: str = "cpu", echo=print) -> dict | None:
    """The validation evaluation written by the training job once its model is saved, so the Evaluate page
    opens on saved results instead of predicting the split while the user waits; a failure here never fails
    the run (the page then evaluates on opening, and says why if it cannot)."""
    try:
        result = evaluate(run_id, "val", device=device)
    except Exception as exc:  # noqa: BLE001 - the trained model is already safe on disk
        echo(f"validation not evaluated yet: {exc}")
        return None
    try:  # the unfamiliar-image check too, so the page's first prediction does not wait for it
        from imgcls.evaluate.predict import Predictor

        Predictor(run_id, device).reference  # noqa: B018 - built from the training images, saved with the run
    except Exception as exc:  # noqa: BLE001 - built on the first prediction instead
        echo(f"unfamiliar-image check not prepared yet: {exc}")
    return result
