"""Predict with an exported imgcls model. Needs only onnxruntime, pillow and numpy (with `--runtime tflite`,
LiteRT's ai-edge-litert in place of onnxruntime).

Usage: python predict.py [--runtime onnx|tflite] IMAGE [IMAGE ...]
On start it checks the model against the golden images shipped beside it and prints the largest difference.
Images are decoded and prepared exactly as the app does it: EXIF orientation, transparency onto white,
16-bit images scaled to 8 bits, then the resize and centre crop of preprocessing.json.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

HERE = Path(__file__).resolve().parent
PRE = json.loads((HERE / "preprocessing.json").read_text())
CLASSES = json.loads((HERE / "classes.json").read_text())
RESAMPLE = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
            "nearest": Image.Resampling.NEAREST, "lanczos": Image.Resampling.LANCZOS}
TOLERANCE = 1e-4  # the largest difference in a probability from the app's that still counts as the same answer


def to_rgb(img):
    """Upright 8-bit RGB: orientation from EXIF, alpha onto white, 16-bit and 32-bit grey scaled to 8 bits."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # unreadable EXIF: the pixels are fine, keep them as stored
        pass
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        # 16-bit data fills 0..65535; a 16-bit file holding 8-bit values (max ≤ 255) is kept as it is
        top = 65535.0 if img.mode != "F" and arr.max() > 255 else 255.0
        if img.mode == "F":
            top = 1.0 if arr.max() <= 1.0 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode in ("P", "PA"):
        img = img.convert("RGBA")  # a palette's transparent entry becomes alpha
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert("RGB")


def load(path):
    """The image file's first frame as upright RGB."""
    img = Image.open(path)
    img.seek(0)  # the first frame of a GIF or multi-page TIFF
    img.load()
    return to_rgb(img)


def square(img):
    """Resize the shorter side, centre-crop a square, then crop to the input size: uint8 H×W×3."""
    side, size = PRE["resize_shorter_side_to"], PRE["input_size"]
    w, h = img.size
    scale = side / min(w, h)
    new = (max(side, round(w * scale)), max(side, round(h * scale)))
    img = img.resize(new, RESAMPLE.get(PRE["interpolation"], Image.Resampling.BICUBIC))
    left, top = (new[0] - side) // 2, (new[1] - side) // 2
    arr = np.asarray(img.crop((left, top, left + side, top + side)), dtype=np.uint8)
    off = (side - size) // 2
    return arr[off:off + size, off:off + size]


def normalise(arr):
    """uint8 H×W×3 to the model's float32 1×3×H×W input."""
    x = arr.astype(np.float32) / np.float32(255.0)
    x = (x - np.array(PRE["mean"], np.float32)) / np.array(PRE["std"], np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None])


def prepare(path):
    """An image file as the model's input, 1×3×H×W."""
    return normalise(square(load(path)))


def onnx_model():
    """The ONNX model, as a function from an input batch to logits."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(HERE / "model.onnx"), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"image": x})[0]


def tflite_model():
    """The TFLite model (one image at a time), as a function from an input batch of one to logits."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(HERE / "model.tflite"))
    interpreter.allocate_tensors()
    image, logits = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]

    def run(x):
        interpreter.set_tensor(image, x)
        interpreter.invoke()
        return interpreter.get_tensor(logits).copy()
    return run


RUNTIMES = {"onnx": ("model.onnx", "onnxruntime", onnx_model), "tflite": ("model.tflite", "ai-edge-litert",
                                                                          tflite_model)}


def probabilities(path, model):
    """Class probabilities of one image file."""
    logits = model(prepare(path))[0].astype(np.float64)
    e = np.exp(logits - logits.max())
    return e / e.sum()


def check_goldens(model):
    """Whether the model gives the app's answers on the golden images; prints the largest difference."""
    goldens = json.loads((HERE / "goldens" / "goldens.json").read_text())
    worst = max((float(np.abs(probabilities(HERE / "goldens" / g["file"], model) - np.array(g["probabilities"])).max())
                 for g in goldens), default=0.0)
    status = "OK" if worst <= TOLERANCE else "FAILED"
    print(f"parity {status}, max difference {worst:.2e} over {len(goldens)} golden images")
    return status == "OK"


def open_model(runtime):
    """The chosen runtime's model, or None with the reason printed."""
    file, package, make = RUNTIMES[runtime]
    if not (HERE / file).exists():
        print(f"{file} is not in this bundle: MODEL_CARD.md says why.", file=sys.stderr)
        return None
    try:
        return make()
    except ImportError:
        print(f"--runtime {runtime} needs the package {package}: pip install {package}", file=sys.stderr)
        return None


def main(argv):
    parser = argparse.ArgumentParser(description="Predict classes of images with the exported model.")
    parser.add_argument("images", nargs="*", help="image files")
    parser.add_argument("--runtime", choices=sorted(RUNTIMES), default="onnx", help="which model file runs")
    args = parser.parse_args(argv)
    model = open_model(args.runtime)
    if model is None:
        return 2
    ok = check_goldens(model)
    for name in args.images:
        try:
            p = probabilities(name, model)
        except (OSError, ValueError, SyntaxError) as exc:  # not an image, truncated, or missing
            print(f"{name}: cannot be read ({exc})")
            ok = False
            continue
        best = int(p.argmax())
        print(f"{name}: {CLASSES[best]} ({p[best]:.1%})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
