"""The model files of an export bundle, each checked on the golden images against the app's probabilities.

.pt2 and ONNX are written from one torch.export of the model and always ship: the bundle's predict.py runs
the ONNX file. TFLite and Core ML need the converters of the `export` extra (about 1 GB); without them they
are skipped, with the reason and the command that adds them. A file whose answers disagree with the app's is
not shipped: a required one stops the export, an optional one is left out with the difference it showed.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

TOLERANCE = 1e-4  # the largest difference in any probability between an exported model and the app
EXTRA = "pip install -e .[export]"
MAX_BATCH = 1024  # the largest batch the .pt2, ONNX and Core ML files promise to take


class Source:
    """The trained model at its input size, with its torch.export program made once for every format."""

    def __init__(self, model, img_size: int):
        self.model, self.img_size = model, img_size

    def example(self, batch: int):
        import torch

        return torch.zeros(batch, 3, self.img_size, self.img_size)

    @functools.cached_property
    def program(self):
        """The model as a torch.export program with a free batch dimension."""
        import torch

        batch = torch.export.Dim("batch", min=1, max=MAX_BATCH)
        # an example batch of two: one of one would fix the batch size at 1 (torch.export specialises 0 and 1)
        return torch.export.export(self.model, (self.example(2),), dynamic_shapes=({0: batch},))


@contextlib.contextmanager
def _env(**values: str):
    """The environment with `values` set for the block, as it was afterwards (the converters read switches
    for their progress output from it)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _write_pt2(src: Source, path: Path) -> None:
    import torch

    torch.export.save(src.program, str(path))


def _run_pt2(path: Path, batch: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return torch.export.load(str(path)).module()(torch.from_numpy(batch)).numpy()


def _write_onnx(src: Source, path: Path) -> None:
    import torch

    # from the program .pt2 holds: the exporter would otherwise export the model once more; one file, not
    # weights beside it (a small model is far below ONNX's 2 GB limit); verbose=False keeps its progress
    # lines (prints, not warnings) out of the job's log
    torch.onnx.export(src.program, (src.example(2),), str(path), dynamo=True, input_names=["image"],
                      output_names=["logits"], external_data=False, verbose=False)


def run_onnx(path: Path, batch: np.ndarray) -> np.ndarray:
    """Logits of the ONNX file for a normalised N×3×H×W float32 batch, by ONNX Runtime."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": batch.astype(np.float32)})[0]


def _write_tflite(src: Source, path: Path) -> None:
    import litert_torch

    with _env(LITERT_TORCH_SHOW_PROGRESS="n"):  # its progress lines, printed through rich, not warnings
        litert_torch.convert(src.model, (src.example(1),)).export(str(path))


def run_tflite(path: Path, batch: np.ndarray) -> np.ndarray:
    """Logits of the TFLite file, one image at a time (its batch size is 1), by the LiteRT interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    interpreter.allocate_tensors()
    image, logits = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    rows = []
    for one in batch.astype(np.float32):
        interpreter.set_tensor(image, one[None])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(logits)[0].copy())
    return np.stack(rows)


def _write_coreml(src: Source, path: Path) -> str:
    import coremltools as ct

    # float32 as in the app: Core ML's default float16 would move the answers away from the goldens. Its
    # progress bars (tqdm, on stderr) stay: tqdm reads its switch only when first imported
    model = ct.convert(src.program.run_decompositions({}), convert_to="mlprogram",
                       compute_precision=ct.precision.FLOAT32)
    model.save(str(path))
    spec = model.get_spec().description
    return (f"input {spec.input[0].name!r} (a batch of 1 to {MAX_BATCH}), output {spec.output[0].name!r} (logits); "
            f"converted by coremltools {ct.__version__}")


@dataclass(frozen=True)
class Format:
    """One kind of model file: what writes it, what runs it, and whether the bundle needs it."""

    key: str  # its name on the command line
    name: str
    file: str
    runtime: str  # what runs the file, in words, for the model card
    write: Callable[[Source, Path], str | None]  # writes the file; may return a note on it for the card
    run: Callable[[Path, np.ndarray], np.ndarray] | None  # logits of a normalised batch, where it runs here
    converter: tuple[str, ...] = ()  # modules writing it needs beyond torch
    checker: tuple[str, ...] = ()  # modules running it here needs
    required: bool = False
    unchecked: str = ""  # why its answers cannot be checked here, when they cannot


FORMATS = (
    Format("pt2", "torch.export", "model.pt2", "PyTorch: `torch.export.load(\"model.pt2\").module()`", _write_pt2,
           _run_pt2, required=True),
    Format("onnx", "ONNX", "model.onnx", "ONNX Runtime: `python predict.py IMAGE`", _write_onnx, run_onnx,
           checker=("onnxruntime",), required=True),
    Format("tflite", "TFLite", "model.tflite", "LiteRT (`pip install ai-edge-litert`): `python predict.py --runtime "
           "tflite IMAGE`; one image at a time", _write_tflite, run_tflite,
           converter=("litert_torch",), checker=("ai_edge_litert",)),
    Format("coreml", "Core ML", "model.mlpackage", "Core ML on macOS or iOS (a folder)", _write_coreml,
           None, converter=("coremltools",),
           unchecked="Core ML predicts only on macOS and iOS, so the export (on another system) could not "
                     "run it; on a Mac, compare its answers on goldens/ with goldens.json"),
)


@dataclass
class Outcome:
    """What became of one format in a bundle: shipped or not, why, and how closely it agrees with the app."""

    format: str
    file: str
    runtime: str
    shipped: bool = False
    parity: float | None = None  # the largest probability difference on the goldens; None: not measured
    note: str = ""
    seconds: float = 0.0


def _missing(modules: tuple[str, ...]) -> list[str]:
    return [m for m in modules if importlib.util.find_spec(m) is None]


def available() -> list[str]:
    """The keys of the formats whose converters are installed here."""
    return [f.key for f in FORMATS if not _missing(f.converter)]


def optional() -> list[str]:
    """The keys of the formats a bundle may go without."""
    return [f.key for f in FORMATS if not f.required]


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Softmax of N×C logits, in float64."""
    z = logits.astype(np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _remove(path: Path) -> None:
    shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def _check(fmt: Format, path: Path, goldens: tuple[np.ndarray | None, np.ndarray], outcome: Outcome) -> bool:
    """Whether the file may ship: its answers on the goldens are the app's, or cannot be measured here."""
    batch, expected = goldens
    if batch is None:
        outcome.note = "answers not checked: the dataset has no validation image to check them on"
    elif fmt.run is None or _missing(fmt.checker):
        outcome.note = "answers not checked: " + (fmt.unchecked or f"{', '.join(_missing(fmt.checker))} is not "
                                                  "installed")
    else:
        outcome.parity = float(np.abs(probabilities(fmt.run(path, batch)) - expected).max())
        if outcome.parity > TOLERANCE:
            _remove(path)
            if fmt.required:
                raise RuntimeError(f"The {fmt.name} model's answers on the test images are up to "
                                   f"{outcome.parity:.1e} away from the app's, so the export stopped.")
            outcome.note = (f"not shipped: its answers on the golden images are up to {outcome.parity:.1e} away "
                            f"from the app's (at most {TOLERANCE:.0e} allowed)")
            return False
    return True


def ship(fmt: Format, src: Source, goldens: tuple[np.ndarray | None, np.ndarray], out: Path) -> Outcome:
    """Write one format into `out` and check it; what became of it, in words where it did not ship."""
    outcome = Outcome(fmt.name, fmt.file, fmt.runtime)
    if missing := _missing(fmt.converter):
        outcome.note = f"skipped: its converter ({', '.join(missing)}) is not installed; {EXTRA} adds it"
        return outcome
    path, start = out / fmt.file, time.perf_counter()
    try:
        about = fmt.write(src, path)
    except Exception as exc:  # a third party's converter may fail in any way on a model or torch it never met
        _remove(path)
        if fmt.required:
            raise
        first = (str(exc).strip().splitlines() or [""])[0]
        outcome.note = f"not shipped: the conversion failed ({type(exc).__name__}: {first})"
        return outcome
    outcome.shipped = _check(fmt, path, goldens, outcome)
    if outcome.shipped and about:
        outcome.note = "; ".join(n for n in (about, outcome.note) if n)
    outcome.seconds = round(time.perf_counter() - start, 2)
    return outcome


def write_formats(model, img_size: int, goldens: tuple[np.ndarray | None, np.ndarray], out: Path,
                  only: set[str] | None = None) -> list[Outcome]:
    """Every format into `out` (the required ones, and the optional ones whose keys `only` holds; None: all),
    each checked on the goldens (a normalised batch and the app's probabilities for it)."""
    src = Source(model, img_size)
    return [ship(f, src, goldens, out) for f in FORMATS if f.required or only is None or f.key in only]
