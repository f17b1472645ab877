"""Predicting new images with a trained run: top-k classes, 'not sure' below a threshold, bad files reported."""

from __future__ import annotations

import csv
import io
import threading
import zipfile
import zlib
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import pandas as pd
from PIL import Image

from imgcls.ingest.images import ImageProblem, decode, is_image_name
from imgcls.ingest.sources import ImportLimits, Listing, SourceError, list_folder, list_memory, list_zip, open_zip
from imgcls.store import runs, workspace
from imgcls.vision.imgcache import center_crop
from imgcls.vision.preprocess import Preprocess

# torch, the model factory and the out-of-distribution check load only when a Predictor is made: the app's
# pages import this module for its table helpers, and need no model for them

Data = bytes | Callable[[], bytes]  # file contents, or a way to read them when their turn comes (ZIP members)
OVERLAY_QUALITY = 88  # JPEG quality of the cached Grad-CAM overlays: for eyes, a tenth of a PNG's bytes
UNFAMILIAR = "This image looks unlike anything the model was trained on; its answer may be meaningless."


class Predictor:
    """A run's model loaded once, for many predictions (read-only afterwards: safe to share)."""

    def __init__(self, run_id: str, device: str = "cpu", check_familiar: bool = True):
        from imgcls.vision.checkpoint import load_run_model

        self.model, self.config = load_run_model(run_id, device)
        self.pre = Preprocess.for_run(self.config)  # the same resize and centre crop as training's cache
        self.run_id, self.device, self.classes = run_id, device, self.config["classes"]
        self.stamp = (runs.run_dir(run_id) / "model.safetensors").stat().st_mtime_ns  # the model file loaded
        self._check_familiar, self._reference, self._lock = check_familiar, None, threading.Lock()

    @property
    def reference_ready(self) -> bool:
        """Whether the out-of-distribution reference is already at hand (or not wanted)."""
        return not self._check_familiar or self._reference is not None

    @property
    def reference(self):
        """The out-of-distribution reference (imgcls.evaluate.ood), made on first need: loaded from the run folder, or
        built from the training images once per model (seconds to minutes); None when it cannot be."""
        if not self.reference_ready:
            from imgcls.evaluate import ood

            with self._lock:  # one Predictor is shared by every session: build it once
                if self._reference is None and self._check_familiar:
                    self._reference = ood.reference(self.run_id, self.model, self.config, self.device)
                    self._check_familiar = self._reference is not None
        return self._reference

    def _tensor(self, batch: np.ndarray):
        from imgcls.vision.imgcache import to_tensor

        return to_tensor(batch, self.pre.mean, self.pre.std, self.device)

    def probabilities(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities for prepared uint8 images (N×size×size×3), through the one inference path."""
        from imgcls.vision.infer import probabilities

        return probabilities(self.model, batch, self.pre, self.device)

    def forward(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Class probabilities and pre-logit features of prepared images, from one pass of the backbone."""
        import torch

        with torch.inference_mode():
            feats = self.model.forward_features(self._tensor(batch))
            logits = self.model.forward_head(feats)  # the head on the same features: no second backbone pass
            embedding = self.model.forward_head(feats, pre_logits=True)
        return logits.float().softmax(1).cpu().numpy(), embedding.float().cpu().numpy()

    def predict(self, files: Iterable[tuple[str, Data]], top_k: int = 3, min_confidence: float = 0.0,
                batch_size: int = 32, progress: Callable[[float], None] | None = None,
                familiar: bool = True) -> list[dict]:
        """One row per file, in input order: the top-k classes, or the reason the file could not be read.

        With the run's reference (and `familiar`), rows also say how far the image lies from the training
        images (`distance`) and whether that is beyond anything seen in validation (`unfamiliar`).
        """
        files = list(files)
        rows: list[dict] = []
        chunk: list[tuple[int, np.ndarray]] = []
        for n, (name, data) in enumerate(files):
            rows.append({"file": name})
            try:
                chunk.append((n, self.pre.prepare(decode(data() if callable(data) else data))))
            except ImageProblem as problem:
                rows[-1]["error"] = f"{problem.reason}: {problem}"
            except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:  # a damaged ZIP member
                rows[-1]["error"] = f"unreadable: {exc}"
            last = n == len(files) - 1
            if chunk and (len(chunk) == batch_size or last):
                self._fill(rows, chunk, top_k, min_confidence, familiar)
                chunk = []
                if progress and not last:
                    progress((n + 1) / len(files))
        if progress and files:
            progress(1.0)
        return rows

    def _fill(self, rows: list[dict], chunk: list[tuple[int, np.ndarray]], top_k: int, min_confidence: float,
              familiar: bool) -> None:
        probs, embedding = self.forward(np.stack([arr for _, arr in chunk]))
        reference = self.reference if familiar else None
        far = reference.distances(embedding) if reference is not None else None
        for j, ((i, _), p) in enumerate(zip(chunk, probs)):
            rows[i].update(self._scores(p, top_k, min_confidence))
            if far is not None:
                rows[i].update(distance=float(far[j]), unfamiliar=bool(far[j] > reference.threshold))

    def explain(self, data: bytes, class_index: int | None = None) -> dict:
        """Grad-CAM of one image file: where the evidence for the class lies (heat, overlay, class)."""
        return self.explain_prepared(self.pre.prepare(decode(data))[None],
                                     None if class_index is None else [class_index])[0]

    def explain_prepared(self, images: np.ndarray, class_indices: list[int] | None = None,
                         batch_size: int = 32) -> list[dict]:
        """Grad-CAM of prepared images (N×size×size×3 uint8), a batch at a time: one forward and one backward
        pass per batch instead of one per image."""
        from imgcls.vision.gradcam import explain_batch

        out: list[dict] = []
        for start in range(0, len(images), batch_size):
            chosen = None if class_indices is None else list(class_indices[start:start + batch_size])
            out += explain_batch(self.model, images[start:start + batch_size], self.config, chosen)
        return out

    def overlay_files(self, folder: Path, items: list[tuple[str, str, int]]) -> list[Path | None]:
        """Grad-CAM overlays of dataset images, given as (stored path, content hash, class index), as JPEG
        files in the workspace cache keyed by model file, content and class. Those not made yet are computed
        together, a batch at a time; None stands for an image that cannot be read."""
        root = workspace.cache_dir("gradcam") / f"{self.run_id}-{self.stamp}"
        out: list[Path | None] = [root / f"{digest}-{int(index)}.jpg" for _, digest, index in items]
        todo, images = [], []
        for n, (path, digest, _) in enumerate(items):
            if out[n].exists():
                continue
            try:  # the decoded cache holds what prepare() makes of the file, usually made by training already
                images.append(center_crop(self.pre.load_images(folder, [path], [digest])[0], self.pre.img_size))
                todo.append(n)
            except (ImageProblem, OSError):
                out[n] = None
        if todo:
            root.mkdir(parents=True, exist_ok=True)
            done = self.explain_prepared(np.stack(images), [int(items[n][2]) for n in todo])
            for n, result in zip(todo, done):
                buf = io.BytesIO()
                Image.fromarray(result["overlay"]).save(buf, format="JPEG", quality=OVERLAY_QUALITY)
                workspace.atomic_write_bytes(out[n], buf.getvalue())
        return out

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


def _listed(listing: Listing, prefix: str, limits: ImportLimits) -> tuple[list, list[dict]]:
    """(name, reader) pairs of a listing's images, and a plain error row for everything else."""
    files = []
    errors = [{"file": prefix + s["file"], "error": f"{s['reason']}: {s['detail']}"} for s in listing.skipped]
    for entry in listing.entries:
        name = prefix + entry.name
        if Path(entry.name).suffix and not is_image_name(entry.name):
            errors.append({"file": name, "error": f"not an image: '{Path(entry.name).suffix}' files are skipped"})
        elif entry.size > limits.max_file_bytes:
            errors.append({"file": name, "error": f"too large: {entry.size:,} bytes is over the per-file limit "
                                                  f"of {limits.max_file_bytes:,}"})
        else:
            files.append((name, entry.read))
    return files, errors


def read_uploads(uploads: list[tuple[str, bytes]], limits: ImportLimits = ImportLimits()) -> tuple[list, list[dict]]:
    """Uploaded images and ZIPs of images: (name, reader) pairs read one at a time when predicted, and a
    plain error row for each file that cannot be (non-images, files over the limits, a broken ZIP)."""
    loose = [(n, d) for n, d in uploads if Path(n).suffix.lower() != ".zip"]
    files, errors = _listed(list_memory(loose), "", limits)
    for name, data in uploads:
        if Path(name).suffix.lower() != ".zip":
            continue
        try:  # the same caps as an import: member count, unpacked size, ratio, per-file size, no nesting
            more, bad = _listed(list_zip(open_zip(data, name), limits, name), f"{name}/", limits)
        except SourceError as exc:
            more, bad = [], [{"file": name, "error": f"unreadable: {exc}"}]
        files += more
        errors += bad
    if len(files) > limits.max_files:
        raise SourceError(f"{len(files):,} images at once is over the limit of {limits.max_files:,}.")
    return files, errors


def not_sure(rows: list[dict], min_confidence: float) -> list[dict]:
    """Rows predicted with no threshold, answered 'not sure' below min_confidence (copies)."""
    out = []
    for row in rows:
        row = dict(row)
        if "confidence" in row and row["confidence"] < min_confidence:
            row["prediction"] = "not sure"
        out.append(row)
    return out


def to_csv(rows: list[dict], classes: list[str]) -> str:
    """The predictions as CSV: file, prediction, confidence, one probability column per class, whether the
    image is unlike the training images (and its distance to them), error."""
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["file", "prediction", "confidence", *[f"p:{c}" for c in classes], "unfamiliar", "distance",
                     "error"])
    for r in rows:
        probs = r.get("probabilities", {})
        writer.writerow([r["file"], r.get("prediction", ""), f"{r['confidence']:.6f}" if "confidence" in r else "",
                         *[f"{probs[c]:.6f}" if c in probs else "" for c in classes],
                         r["unfamiliar"] if "unfamiliar" in r else "",
                         f"{r['distance']:.4f}" if "distance" in r else "", r.get("error", "")])
    return buf.getvalue()


def predictions_frame(rows: list[dict]) -> pd.DataFrame:
    """The predictions as a table to show: file, answer, confidence, unlike the training images, error."""
    return pd.DataFrame([{"file": r["file"], "prediction": r.get("prediction"), "confidence": r.get("confidence"),
                          "unfamiliar": r.get("unfamiliar"), "error": r.get("error", "")} for r in rows],
                        columns=["file", "prediction", "confidence", "unfamiliar", "error"])
