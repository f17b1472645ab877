"""Exports that work outside the app: safetensors, TorchScript, ONNX, preprocessing, goldens, predict.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Callable

import numpy as np

from imgcls.evaluate.predict import Predictor
from imgcls.ingest.images import decode
from imgcls.store import runnames, runs, workspace
from imgcls.store.markdown import code, plain  # the one Markdown escape: the model card is Markdown too
from imgcls.vision.imgcache import to_tensor
from imgcls.vision.preprocess import Preprocess

TEMPLATE = Path(__file__).with_name("templates") / "predict_standalone.py"
GOLDENS = 4


def preprocessing(config: dict) -> dict:
    """The exact preprocessing as data, for code outside the app."""
    pre = Preprocess.for_run(config)
    return {"resize_shorter_side_to": pre.side, "centre_crop_square": True,
            "input_size": pre.img_size, "interpolation": pre.interpolation, "mean": pre.mean, "std": pre.std,
            "channels": "RGB", "layout": "N×3×H×W float32", "output": "logits; softmax gives probabilities"}


def _goldens(predictor: Predictor, config: dict, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """A few validation images with the probabilities the app gives them; returned as the model sees them,
    with those probabilities, to check the exported models against."""
    df = workspace.read_manifest(config["dataset"])
    df = df[~df["excluded"] & (df["split"] == "val")].groupby("label").head(max(1, GOLDENS // len(config["classes"])))
    folder = workspace.dataset_dir(config["dataset"])
    (out / "goldens").mkdir()
    files = [(Path(p).name, (folder / p).read_bytes()) for p in df["path"].head(GOLDENS)]
    rows = predictor.predict(files, familiar=False)
    for (name, data), row in zip(files, rows):
        (out / "goldens" / name).write_bytes(data)
    goldens = [{"file": n, "probabilities": [r["probabilities"][c] for c in config["classes"]]}
               for (n, _), r in zip(files, rows)]
    (out / "goldens" / "goldens.json").write_text(json.dumps(goldens, indent=2))
    batch = np.stack([predictor.pre.prepare(decode(data)) for _, data in files]) if files else None
    return batch, np.array([g["probabilities"] for g in goldens])


def _save_traced(predictor: Predictor, config: dict, goldens: tuple[np.ndarray | None, np.ndarray],
                 out: Path) -> None:
    """TorchScript and ONNX from one trace of the model, checked on the goldens against the app's answers."""
    import torch

    example = torch.zeros(1, 3, config["img_size"], config["img_size"])
    batch, expected = goldens
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # no check_trace: it traces the model twice more to compare (two thirds of the export's time); the
        # network has no data-dependent branches, and the goldens below check the traced answers instead
        traced = torch.jit.trace(predictor.model, example, check_trace=False)
        if batch is not None:
            got = traced(to_tensor(batch, predictor.pre.mean, predictor.pre.std)).softmax(1).numpy()
            if not np.allclose(got, expected, atol=1e-4):
                raise RuntimeError("The traced model does not give the app's answers on the test images.")
        traced.save(str(out / "model.torchscript.pt"))
        # from the traced module: the ONNX exporter would otherwise trace the model once more
        torch.onnx.export(traced, (example,), str(out / "model.onnx"), input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17, dynamo=False)


def _model_card(run_id: str, config: dict) -> str:
    status = runs.read_status(run_id)
    result = status.get("result", {})
    name, classes = plain(runnames.display_name(run_id, config)), ", ".join(plain(c) for c in config["classes"])
    acc, loss = (result.get(k) if isinstance(result.get(k), (int, float)) else float("nan")
                 for k in ("val_accuracy", "val_loss"))
    stopped = (f"- **Training**: {plain(runs.stopped_summary(config, status))}\n"
               if runs.stopped_early(status) else "")
    images = config["images"]
    return f"""# Model card: {name}

- **Run**: {code(run_id)} (its id in the app and on the command line)
{stopped}- **What it does**: sorts an image into one of {len(config['classes'])} classes: {classes}.
- **How it was made**: {plain(config['backbone'])} pretrained on ImageNet, strategy {code(config['strategy'])},
  on the dataset {plain(config['dataset'])} ({images.get('train', '?')} training and {images.get('val', '?')} validation
  images), {config['img_size']} px inputs.
- **How well it does**: validation accuracy {acc:.3f}, validation loss {loss:.3f} (measured on the dataset's own
  validation split).
- **Intended use**: images like the training images. It always answers one of the classes above; it has
  never seen anything else, so check its confidence and treat low confidence as "not sure".
- **Limits**: a small dataset makes a model that can fail on other cameras, lighting or backgrounds;
  measure it on your own images before relying on it.
"""


def export_run(run_id: str, out_dir: str | Path, predictor: Predictor | None = None) -> Path:
    """Write the export bundle of a run into out_dir (created; must not exist yet) and return it; pass the
    run's Predictor when one is loaded already (it is only read)."""
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists: choose a new folder for the export.")
    config = runs.read_config(run_id)
    status = runs.read_status(run_id)
    if not runs.usable(run_id, config, status):
        raise workspace.WorkspaceError(f"Run '{run_id}' has no model to export yet ({status.get('state')}): "
                                       "export a finished run, or one stopped after saving a model.")
    # the goldens need probabilities only, not the out-of-distribution reference
    predictor = predictor or Predictor(run_id, check_familiar=False)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        shutil.copy2(runs.run_dir(run_id) / "model.safetensors", staging / "model.safetensors")
        (staging / "classes.json").write_text(json.dumps(config["classes"], ensure_ascii=False, indent=2))
        (staging / "preprocessing.json").write_text(json.dumps(preprocessing(config), indent=2))
        _save_traced(predictor, config, _goldens(predictor, config, staging), staging)
        shutil.copy2(TEMPLATE, staging / "predict.py")
        (staging / "MODEL_CARD.md").write_text(_model_card(run_id, config), encoding="utf-8")
        staging.rename(out)  # whole or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def _bundle_key(run_id: str) -> str:
    """What the bundle is made of: the model file, the run's config (its name) and outcome (the card), the
    predict.py template. Any change gives a new key, so a stale bundle is never handed out."""
    folder = runs.run_dir(run_id)
    model = (folder / "model.safetensors").stat()
    status = runs.read_status(run_id)
    parts = [model.st_mtime_ns, model.st_size, (folder / "config.json").read_bytes().decode("utf-8"),
             json.dumps({k: status.get(k) for k in ("state", "result", "message")}, sort_keys=True, default=str),
             TEMPLATE.read_bytes().decode("utf-8")]
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:16]


def _zip(folder: Path, path: Path) -> None:
    """The bundle folder as a ZIP written atomically; the weights are stored as they are (they hardly
    compress, and deflating 60 MB of them costs seconds), the text files compressed."""
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            binary = file.suffix in (".safetensors", ".pt", ".onnx")
            zf.write(file, file.relative_to(folder), zipfile.ZIP_STORED if binary else zipfile.ZIP_DEFLATED)
    tmp.replace(path)


def bundle_path(run_id: str) -> Path:
    """Where the run's export bundle for its current model, name and outcome is (or will be) kept; a
    WorkspaceError, in words, for a run that does not exist or has saved no model."""
    runs.read_config(run_id)  # "There is no run '…'."
    if not (runs.run_dir(run_id) / "model.safetensors").exists():
        raise workspace.WorkspaceError(f"Run '{run_id}' has saved no model yet, so there is nothing to export.")
    return runs.run_dir(run_id) / f"export-{_bundle_key(run_id)}.zip"


def export_zip(run_id: str, load: Callable[[], Predictor] | None = None) -> Path:
    """The run's export bundle as a ZIP in its run folder, built on the first request and reused until the
    model, the run's name or its outcome changes (then built anew, and the old one removed). `load` gives
    the run's Predictor when the caller holds one already; it is called only when the bundle is built."""
    folder, path = runs.run_dir(run_id), bundle_path(run_id)
    if path.exists():
        return path
    staging = folder / f".export-{path.stem}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        _zip(export_run(run_id, staging / run_id, load() if load else None), path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    for old in folder.glob("export-*.zip"):
        if old != path:
            old.unlink(missing_ok=True)
    return path


def onnx_probabilities(bundle: Path, batch: np.ndarray) -> np.ndarray:
    """Probabilities from the bundle's ONNX model for a normalised N×3×H×W batch."""
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": batch.astype(np.float32)})[0]
    return torch.from_numpy(logits).double().softmax(1).numpy()
