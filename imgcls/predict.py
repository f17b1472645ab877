"""Predicting new images with a trained run: top-k classes, 'not sure' below a threshold, bad files reported."""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from .checkpoint import load_run_model
from .gradcam import explain
from .images import ImageProblem, decode, is_image_name
from .imgcache import cache_size, center_crop, fit_square, to_tensor
from .sources import ImportLimits, SourceError, list_folder, list_zip, open_zip


def prepare(img, config: dict) -> np.ndarray:
    """An RGB PIL image as the model sees it: the same resize and centre crop as training's cache."""
    dcfg, size = config["data_config"], config["img_size"]
    return center_crop(fit_square(img, cache_size(size, dcfg["crop_pct"]), dcfg["interpolation"]), size)


class Predictor:
    """A run's model loaded once, for many predictions."""

    def __init__(self, run_id: str, device: str = "cpu"):
        self.model, self.config = load_run_model(run_id, device)
        self.device, self.classes = device, self.config["classes"]

    @torch.inference_mode()
    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for prepared uint8 images (N×size×size×3)."""
        dcfg = self.config["data_config"]
        return self.model(to_tensor(batch, dcfg["mean"], dcfg["std"], self.device)).float().softmax(1).cpu().numpy()

    def predict(self, files: Iterable[tuple[str, bytes]], top_k: int = 3, min_confidence: float = 0.0,
                batch_size: int = 32) -> list[dict]:
        """One row per file, in input order: the top-k classes, or the reason the file could not be read."""
        rows: list[dict] = []
        ready: list[tuple[int, np.ndarray]] = []
        for name, data in files:
            rows.append({"file": name})
            try:
                ready.append((len(rows) - 1, prepare(decode(data), self.config)))
            except ImageProblem as problem:
                rows[-1]["error"] = f"{problem.reason}: {problem}"
        for start in range(0, len(ready), batch_size):
            chunk = ready[start:start + batch_size]
            probs = self.probabilities(np.stack([arr for _, arr in chunk]))
            for (i, _), p in zip(chunk, probs):
                rows[i].update(self._scores(p, top_k, min_confidence))
        return rows

    def explain(self, data: bytes, class_index: int | None = None) -> dict:
        """Grad-CAM of one image file: where the evidence for the class lies (heat, overlay, class)."""
        return explain(self.model, prepare(decode(data), self.config), self.config, class_index)

    def _scores(self, p: np.ndarray, top_k: int, min_confidence: float) -> dict:
        top = np.argsort(-p)[:max(1, min(top_k, len(p)))]
        best = float(p[top[0]])
        return {"prediction": self.classes[top[0]] if best >= min_confidence else "not sure",
                "confidence": best, "top": [(self.classes[i], float(p[i])) for i in top],
                "probabilities": {c: float(v) for c, v in zip(self.classes, p)}}


def read_inputs(paths: list[str], limits: ImportLimits = ImportLimits()) -> tuple[list, list[dict]]:
    """Image files, folders and ZIPs named on the command line: (name, bytes) pairs, and rows for what
    could not be read (a missing file, a broken ZIP), so the rest of a batch goes on."""
    files, errors = [], []
    for raw in paths:
        path = Path(raw).expanduser()
        try:
            if path.is_dir():
                files += [(f"{path.name}/{e.name}", e.read()) for e in list_folder(path, limits).entries]
            elif path.suffix.lower() == ".zip":
                with open_zip(path, path.name) as zf:
                    files += [(f"{path.name}/{e.name}", e.read()) for e in list_zip(zf, limits, path.name).entries]
            else:
                files.append((str(raw), path.read_bytes()))
        except (SourceError, OSError) as exc:
            errors.append({"file": str(raw), "error": f"unreadable: {getattr(exc, 'strerror', None) or exc}"})
    return [(n, d) for n, d in files if is_image_name(n) or Path(n).suffix == ""], errors


def to_csv(rows: list[dict], classes: list[str]) -> str:
    """The predictions as CSV: file, prediction, confidence, one probability column per class, error."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "prediction", "confidence", *[f"p:{c}" for c in classes], "error"])
    for r in rows:
        probs = r.get("probabilities", {})
        writer.writerow([r["file"], r.get("prediction", ""), f"{r['confidence']:.6f}" if "confidence" in r else "",
                         *[f"{probs[c]:.6f}" if c in probs else "" for c in classes], r.get("error", "")])
    return buf.getvalue()
