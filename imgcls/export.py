"""Exports that work outside the app: safetensors, TorchScript, ONNX, preprocessing, goldens, predict.py."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from . import runs, workspace
from .imgcache import cache_size
from .predict import Predictor

TEMPLATE = Path(__file__).with_name("templates") / "predict_standalone.py"
GOLDENS = 4


def preprocessing(config: dict) -> dict:
    """The exact preprocessing as data, for code outside the app."""
    dcfg, size = config["data_config"], config["img_size"]
    return {"resize_shorter_side_to": cache_size(size, dcfg["crop_pct"]), "centre_crop_square": True,
            "input_size": size, "interpolation": dcfg["interpolation"], "mean": dcfg["mean"], "std": dcfg["std"],
            "channels": "RGB", "layout": "N×3×H×W float32", "output": "logits; softmax gives probabilities"}


def _goldens(predictor: Predictor, config: dict, out: Path) -> None:
    """A few validation images with the probabilities the app gives them."""
    df = workspace.read_manifest(config["dataset"])
    df = df[~df["excluded"] & (df["split"] == "val")].groupby("label").head(max(1, GOLDENS // len(config["classes"])))
    folder = workspace.dataset_dir(config["dataset"])
    (out / "goldens").mkdir()
    files = [(Path(p).name, (folder / p).read_bytes()) for p in df["path"].head(GOLDENS)]
    rows = predictor.predict(files)
    for (name, data), row in zip(files, rows):
        (out / "goldens" / name).write_bytes(data)
    goldens = [{"file": n, "probabilities": [r["probabilities"][c] for c in config["classes"]]}
               for (n, _), r in zip(files, rows)]
    (out / "goldens" / "goldens.json").write_text(json.dumps(goldens, indent=2))


def _model_card(run_id: str, config: dict) -> str:
    status = runs.read_status(run_id)
    result = status.get("result", {})
    return f"""# Model card: {run_id}

- **What it does**: sorts an image into one of {len(config['classes'])} classes: {', '.join(config['classes'])}.
- **How it was made**: {config['backbone']} pretrained on ImageNet, strategy `{config['strategy']}`, on the
  dataset `{config['dataset']}` ({config['images'].get('train', '?')} training and {config['images'].get('val', '?')}
  validation images), {config['img_size']} px inputs.
- **How well it does**: validation accuracy {result.get('val_accuracy', float('nan')):.3f}, validation loss
  {result.get('val_loss', float('nan')):.3f} (measured on the dataset's own validation split).
- **Intended use**: images like the training images. It always answers one of the classes above; it has
  never seen anything else, so check its confidence and treat low confidence as "not sure".
- **Limits**: a small dataset makes a model that can fail on other cameras, lighting or backgrounds;
  measure it on your own images before relying on it.
"""


def export_run(run_id: str, out_dir: str | Path) -> Path:
    """Write the export bundle of a run into out_dir (created; must not exist yet) and return it."""
    out = Path(out_dir)
    if out.exists():
        raise FileExistsError(f"{out} already exists: choose a new folder for the export.")
    config = runs.read_config(run_id)
    predictor = Predictor(run_id)
    staging = out.with_name(f".{out.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        shutil.copy2(runs.run_dir(run_id) / "model.safetensors", staging / "model.safetensors")
        example = torch.zeros(1, 3, config["img_size"], config["img_size"])
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.jit.trace(predictor.model, example).save(str(staging / "model.torchscript.pt"))
            torch.onnx.export(predictor.model, (example,), str(staging / "model.onnx"), input_names=["image"],
                              output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=17, dynamo=False)
        (staging / "classes.json").write_text(json.dumps(config["classes"], ensure_ascii=False, indent=2))
        (staging / "preprocessing.json").write_text(json.dumps(preprocessing(config), indent=2))
        _goldens(predictor, config, staging)
        shutil.copy2(TEMPLATE, staging / "predict.py")
        (staging / "MODEL_CARD.md").write_text(_model_card(run_id, config))
        staging.rename(out)  # whole or not at all
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out


def onnx_probabilities(bundle: Path, batch: np.ndarray) -> np.ndarray:
    """Probabilities from the bundle's ONNX model for a normalised N×3×H×W batch."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
    logits = session.run(None, {"image": batch.astype(np.float32)})[0]
    return torch.from_numpy(logits).double().softmax(1).numpy()
