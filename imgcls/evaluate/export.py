"""Exports that work outside the app: safetensors, .pt2, ONNX, TFLite, Core ML, preprocessing, goldens, predict.py."""

from __future__ import annotations

import hashlib
import json
import shutil
import zipfile
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import numpy as np

from imgcls.evaluate import formats
from imgcls.evaluate.predict import Predictor
from imgcls.ingest.images import decode
from imgcls.store import runnames, runs, workspace
from imgcls.store.markdown import code, plain  # the one Markdown escape: the model card is Markdown too
from imgcls.vision.imgcache import to_tensor
from imgcls.vision.preprocess import Preprocess

TEMPLATE = Path(__file__).with_name("templates") / "predict_standalone.py"
GOLDENS = 4
FORMATS_FILE = "formats.json"  # what became of each model format: shipped or why not, and its parity
WEIGHTS = (".safetensors", ".pt2", ".onnx", ".tflite")  # stored in the ZIP as they are


def preprocessing(config: dict) -> dict:
    """The exact preprocessing as data, for code outside the app."""
    pre = Preprocess.for_run(config)
    return {"resize_shorter_side_to": pre.side, "centre_crop_square": True,
            "input_size": pre.img_size, "interpolation": pre.interpolation, "mean": pre.mean, "std": pre.std,
            "channels": "RGB", "layout": "N×3×H×W float32", "output": "logits; softmax gives probabilities"}


def _goldens(predictor: Predictor, config: dict, out: Path) -> tuple[np.ndarray, np.ndarray]:
    """A few validation images with the probabilities the app gives them; returned as the model sees them
    (normalised, N×3×H×W float32), with those probabilities, to check the exported models against."""
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
    if not files:
        return None, np.zeros((0, len(config["classes"])))
    batch = np.stack([predictor.pre.prepare(decode(data)) for _, data in files])
    normalised = to_tensor(batch, predictor.pre.mean, predictor.pre.std).numpy()
    return normalised, np.array([g["probabilities"] for g in goldens])


def _files_section(config: dict, outcomes: list[formats.Outcome], goldens: int) -> str:
    """Which files the bundle holds, what runs each, and how closely each agrees with the app."""
    rows = [f"| `model.safetensors` | PyTorch with timm: `timm.create_model({config['backbone']!r}, "
            f"num_classes={len(config['classes'])})`, then `load_state_dict` | the trained weights themselves |"]
    for o in outcomes:
        if o.shipped:
            measured = f"largest difference {o.parity:.1e}" if o.parity is not None else ""
            rows.append(f"| `{o.file}` | {o.runtime} | {'; '.join(t for t in (measured, plain(o.note)) if t)} |")
    rows.append("| `predict.py` | Python with onnxruntime, pillow and numpy; decodes and prepares images as "
                "the app does | checks the model on the golden images each time it starts |")
    left = [f"- {o.format} (`{o.file}`): {plain(o.note)}" for o in outcomes if not o.shipped]
    left.append("- TorchScript: no longer written, since `torch.jit.trace` is deprecated (torch 2.14 warns on "
                "every call); `model.pt2` from `torch.export` takes its place.")
    return (f"""## Files, and what runs each

Each model file was run on the {goldens} golden images (`goldens/`) when the bundle was made, and its class
probabilities compared with the app's (`goldens/goldens.json`); a file more than {formats.TOLERANCE:.0e}
away is not shipped. `preprocessing.json` says how an image becomes the model's input.

| file | what runs it | its answers against the app's |
|---|---|---|
""" + "\n".join(rows) + "\n\nNot in this bundle:\n\n" + "\n".join(left) + "\n")


def _model_card(run_id: str, config: dict, outcomes: list[formats.Outcome], goldens: int) -> str:
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

{_files_section(config, outcomes, goldens)}"""


def export_run(run_id: str, out_dir: str | Path, predictor: Predictor | None = None,
               only: set[str] | None = None) -> Path:
    """Write the export bundle of a run into out_dir (created; must not exist yet) and return it; pass the
    run's Predictor when one is loaded already (it is only read). `only` holds the keys of the optional formats
    to try (formats.optional(); default: all of them); .pt2 and ONNX are always written."""
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
        goldens = _goldens(predictor, config, staging)
        outcomes = formats.write_formats(predictor.model, config["img_size"], goldens, staging, only)
        (staging / FORMATS_FILE).write_text(json.dumps([asdict(o) for o in outcomes], indent=2))
        shutil.copy2(TEMPLATE, staging / "predict.py")
        (staging / "MODEL_CARD.md").write_text(_model_card(run_id, config, outcomes, len(goldens[1])),
                                               encoding="utf-8")
        staging.rename(out)  # whole or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def skipped(bundle: Path) -> list[str]:
    """The formats a bundle (a folder or its ZIP) left out, each with its reason, in words."""
    if bundle.is_dir():
        text = (bundle / FORMATS_FILE).read_text()
    else:
        with zipfile.ZipFile(bundle) as zf:
            text = zf.read(FORMATS_FILE).decode("utf-8")
    return [f"{o['format']}: {o['note']}" for o in json.loads(text) if not o["shipped"]]


def _bundle_key(run_id: str) -> str:
    """What the bundle is made of: the model file, the run's config (its name) and outcome (the card), the
    predict.py template, the converters installed. Any change gives a new key, so a stale bundle is never
    handed out (installing the `export` extra brings TFLite and Core ML on the next request)."""
    folder = runs.run_dir(run_id)
    model = (folder / "model.safetensors").stat()
    status = runs.read_status(run_id)
    parts = [model.st_mtime_ns, model.st_size, (folder / "config.json").read_bytes().decode("utf-8"),
             json.dumps({k: status.get(k) for k in ("state", "result", "message")}, sort_keys=True, default=str),
             TEMPLATE.read_bytes().decode("utf-8"), formats.available()]
    return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()[:16]


def _zip(folder: Path, path: Path) -> None:
    """The bundle folder as a ZIP written atomically; the weights are stored as they are (they hardly
    compress, and deflating 60 MB of them costs seconds), the text files compressed. A Core ML model is a
    folder (.mlpackage): its files go in under it, its weights stored too."""
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w") as zf:
        for file in sorted(p for p in folder.rglob("*") if p.is_file()):
            name = file.relative_to(folder)
            binary = file.suffix in WEIGHTS or any(part.endswith(".mlpackage") for part in name.parts[:-1])
            zf.write(file, name, zipfile.ZIP_STORED if binary else zipfile.ZIP_DEFLATED)
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
    return formats.probabilities(formats.run_onnx(bundle / "model.onnx", batch))
