"""Predict with an exported imgcls model. Needs only onnxruntime, pillow and numpy.

Usage: python predict.py IMAGE [IMAGE ...]
On start it checks itself against the golden images shipped beside it and prints the largest difference.
"""

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
PRE = json.loads((HERE / "preprocessing.json").read_text())
CLASSES = json.loads((HERE / "classes.json").read_text())
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
            "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
SESSION = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])


def to_rgb(img):
    """Upright RGB; transparent pixels become white, as in the app."""
    img = ImageOps.exif_transpose(img)
    if img.mode in ("P", "PA", "RGBA", "LA"):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert("RGB")


def prepare(path):
    """Resize the shorter side, centre-crop a square, crop to the input size, normalise: N×3×H×W."""
    img = to_rgb(Image.open(path))
    side, size = PRE["resize_shorter_side_to"], PRE["input_size"]
    w, h = img.size
    scale = side / min(w, h)
    new = (max(side, round(w * scale)), max(side, round(h * scale)))
    img = img.resize(new, RESAMPLE[PRE["interpolation"]])
    left, top = (new[0] - side) // 2, (new[1] - side) // 2
    arr = np.asarray(img.crop((left, top, left + side, top + side)), dtype=np.uint8)
    off = (side - size) // 2
    arr = arr[off:off + size, off:off + size].astype(np.float32) / 255.0
    arr = (arr - np.array(PRE["mean"], np.float32)) / np.array(PRE["std"], np.float32)
    return arr.transpose(2, 0, 1)[None]


def probabilities(path):
    logits = SESSION.run(None, {"image": prepare(path)})[0][0].astype(np.float64)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def check_goldens():
    goldens = json.loads((HERE / "goldens" / "goldens.json").read_text())
    worst = max(float(np.abs(probabilities(HERE / "goldens" / g["file"]) - np.array(g["probabilities"])).max())
                for g in goldens)
    status = "OK" if worst <= 1e-4 else "FAILED"
    print(f"parity {status}, max difference {worst:.2e} over {len(goldens)} golden images")
    return status == "OK"


if __name__ == "__main__":
    ok = check_goldens()
    for name in sys.argv[1:]:
        p = probabilities(name)
        best = int(p.argmax())
        print(f"{name}: {CLASSES[best]} ({p[best]:.1%})")
    sys.exit(0 if ok else 1)
