"""Exports: every model file gives the app's probabilities on the goldens, the export warns of no deprecation,
a file that disagrees or lacks its converter is left out with the reason, predict.py checks itself."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from test_train import SMALL, make_dataset

from imgcls.evaluate import formats
from imgcls.evaluate.export import export_run, onnx_probabilities, skipped
from imgcls.evaluate.predict import Predictor
from imgcls.ingest.images import decode
from imgcls.train.run import TrainConfig, prepare_run, run
from imgcls.vision.imgcache import to_tensor

OPTIONAL = ("TFLite", "Core ML")  # the formats of the `export` extra's converters
HAVE_EXTRA = all(importlib.util.find_spec(m) for m in ("litert_torch", "ai_edge_litert", "coremltools"))
needs_extra = pytest.mark.skipif(not HAVE_EXTRA, reason="the export extra is not installed (pip install -e .[export])")


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """One trained run and its full bundle for the whole module (an export takes tens of seconds), with the
    warnings the export raised."""
    root = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLS_HOME", str(root / "home"))
        make_dataset(per_class=10)
        run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=10, **SMALL))
        run(run_id, echo=lambda _: None)
        predictor = Predictor(run_id, check_familiar=False)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            out = export_run(run_id, root / "bundle", predictor)
        yield run_id, out, predictor, caught


def _goldens(out: Path, predictor: Predictor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The golden images as the app prepares them (uint8 and normalised) and the app's probabilities."""
    goldens = json.loads((out / "goldens" / "goldens.json").read_text())
    batch = np.stack([predictor.pre.prepare(decode((out / "goldens" / g["file"]).read_bytes())) for g in goldens])
    app = predictor.probabilities(batch)
    assert np.abs(app - np.array([g["probabilities"] for g in goldens])).max() < 1e-6
    return batch, to_tensor(batch, predictor.pre.mean, predictor.pre.std).numpy(), app


def test_bundle_holds_every_part(exported):
    _, out, _, _ = exported
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "model.pt2", "model.onnx", "classes.json", "preprocessing.json", "formats.json",
            "predict.py", "MODEL_CARD.md", "goldens"} <= names
    assert "model.torchscript.pt" not in names  # torch.jit.trace is deprecated: .pt2 replaces it
    assert json.loads((out / "classes.json").read_text()) == ["blue", "red"]
    assert len(json.loads((out / "goldens" / "goldens.json").read_text())) >= 2
    if HAVE_EXTRA:
        assert {"model.tflite", "model.mlpackage"} <= names and (out / "model.mlpackage").is_dir()


def test_pt2_and_onnx_match_the_app_at_any_batch_size(exported):
    _, out, predictor, _ = exported
    _, x, app = _goldens(out, predictor)
    program = torch.export.load(str(out / "model.pt2")).module()
    for n in (1, len(x)):  # the batch dimension is free
        with torch.no_grad():
            assert np.abs(program(torch.from_numpy(x[:n])).softmax(1).numpy() - app[:n]).max() < 1e-4
        assert np.abs(onnx_probabilities(out, x[:n]) - app[:n]).max() < 1e-4


@needs_extra
def test_tflite_matches_the_app_by_the_litert_interpreter(exported):
    from ai_edge_litert.interpreter import Interpreter

    _, out, predictor, _ = exported
    _, x, app = _goldens(out, predictor)
    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    interpreter.allocate_tensors()
    got = []
    for one in x:
        interpreter.set_tensor(interpreter.get_input_details()[0]["index"], one[None])
        interpreter.invoke()
        got.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].copy())
    assert np.abs(torch.from_numpy(np.stack(got)).double().softmax(1).numpy() - app).max() < 1e-4


def test_the_recorded_parity_is_the_measured_one(exported):
    _, out, predictor, _ = exported
    _, x, app = _goldens(out, predictor)
    shipped = {o["file"]: o for o in json.loads((out / "formats.json").read_text()) if o["shipped"]}
    onnx = shipped["model.onnx"]["parity"]
    assert onnx <= formats.TOLERANCE and onnx == pytest.approx(np.abs(onnx_probabilities(out, x) - app).max(),
                                                               abs=1e-12)
    if HAVE_EXTRA:
        assert shipped["model.tflite"]["parity"] <= formats.TOLERANCE
        assert shipped["model.mlpackage"]["parity"] is None and "macOS" in shipped["model.mlpackage"]["note"]
    if HAVE_EXTRA:
        assert skipped(out) == []
    else:
        assert [line.split(":")[0] for line in skipped(out)] == list(OPTIONAL)
        assert all(formats.EXTRA in line for line in skipped(out))


def test_the_export_raises_no_deprecation_or_future_warning(exported):
    caught = exported[3]
    stale = [w for w in caught if issubclass(w.category, (DeprecationWarning, FutureWarning))
             # coremltools calls its own deprecated registry lookup while converting: its warnings, not ours
             and "coremltools" not in Path(w.filename).parts]
    assert stale == [], [f"{w.filename}:{w.lineno}: {w.message}" for w in stale]
    # and TorchScript was dropped for a reason that still holds: tracing warns on this torch
    with pytest.warns(FutureWarning, match="deprecated"):
        torch.jit.trace(torch.nn.Linear(2, 2), torch.zeros(1, 2))


def _write_fake(src, path: Path) -> None:
    path.write_text("a model")


def _fake(tmp_path: Path, shift: float, required: bool, converter=()) -> formats.Outcome:
    """A format whose 'runtime' returns logits `shift` away from the expected ones."""
    logits = np.array([[2.0, -1.0], [0.5, 0.25]])
    fmt = formats.Format("fake", "Fake", "model.fake", "a test", _write_fake,
                         lambda path, batch: logits + np.array([[shift, 0.0], [0.0, 0.0]]), converter=converter,
                         required=required)
    return formats.ship(fmt, formats.Source(None, 8), (np.zeros((2, 3, 8, 8), np.float32),
                                                       formats.probabilities(logits)), tmp_path)


def test_a_format_that_disagrees_with_the_app_is_not_shipped(tmp_path):
    agreeing = _fake(tmp_path, 1e-6, required=False)
    assert agreeing.shipped and agreeing.parity < 1e-6 and (tmp_path / "model.fake").exists()
    off = _fake(tmp_path, 0.01, required=False)
    assert not off.shipped and not (tmp_path / "model.fake").exists()
    assert off.parity > formats.TOLERANCE and "not shipped" in off.note and f"{off.parity:.1e}" in off.note
    with pytest.raises(RuntimeError, match="away from the app's"):
        _fake(tmp_path, 0.01, required=True)
    missing = _fake(tmp_path, 0.0, required=False, converter=("no_such_converter_anywhere",))
    assert not missing.shipped and formats.EXTRA in missing.note and "no_such_converter_anywhere" in missing.note


def test_standalone_predict_script_checks_parity_and_predicts(exported, tmp_path):
    _, out, _, _ = exported
    golden = sorted((out / "goldens").glob("*.png"))[0]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    runtimes = ["onnx", "tflite"] if HAVE_EXTRA else ["onnx"]
    for runtime in runtimes:
        result = subprocess.run([sys.executable, "predict.py", "--runtime", runtime, str(golden)], cwd=out,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stderr
        assert "parity OK" in result.stdout and golden.name in result.stdout
    result = subprocess.run([sys.executable, "predict.py", str(broken)], cwd=out, capture_output=True, text=True)
    assert result.returncode == 1 and f"{broken}: cannot be read" in result.stdout


def test_the_zip_holds_every_file_and_stores_the_weights_as_they_are(exported, tmp_path):
    import zipfile

    from imgcls.evaluate.export import _zip

    _, out, _, _ = exported
    _zip(out, tmp_path / "bundle.zip")
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file())
    with zipfile.ZipFile(tmp_path / "bundle.zip") as zf:
        assert sorted(zf.namelist()) == files  # an .mlpackage folder goes in with everything under it
        stored = {n for n in files if zf.getinfo(n).compress_type == zipfile.ZIP_STORED}
    weights = {"model.safetensors", "model.pt2", "model.onnx"}
    if HAVE_EXTRA:
        weights |= {"model.tflite", "model.mlpackage/Data/com.apple.CoreML/weights/weight.bin"}
    assert weights <= stored and "MODEL_CARD.md" not in stored and "formats.json" not in stored


def test_export_refuses_an_existing_folder(exported):
    run_id, out, _, _ = exported
    with pytest.raises(FileExistsError):
        export_run(run_id, out)


def test_standalone_script_needs_only_onnxruntime_pillow_and_numpy():
    import ast

    from imgcls.evaluate.export import TEMPLATE

    tree = ast.parse(TEMPLATE.read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    # ai_edge_litert only for --runtime tflite, imported when asked for
    assert roots <= {"argparse", "json", "sys", "pathlib", "numpy", "onnxruntime", "PIL", "ai_edge_litert"}


def test_the_model_card_names_the_run_its_files_and_what_was_left_out(exported, tmp_path, monkeypatch):
    from imgcls.store import runnames, workspace
    from imgcls.ui.common.text import plain

    run_id, out, predictor, _ = exported
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card: toy linear 1\n") and f"`{run_id}`" in card
    assert "Stopped early" not in card  # a finished run
    assert "| `model.onnx` | ONNX Runtime" in card and "TorchScript: no longer written" in card
    if HAVE_EXTRA:
        assert "| `model.tflite` |" in card and "| `model.mlpackage` | Core ML" in card and "macOS" in card
    runnames.rename_run(run_id, "<img src=x> *mine*")
    lacking = formats.Format("fake", "Fake", "model.fake", "nothing", _write_fake, None,
                             converter=("no_such_converter_anywhere",))
    monkeypatch.setattr(formats, "FORMATS", (*formats.FORMATS, lacking))
    again = export_run(run_id, tmp_path / "again", predictor, only={"fake"})  # .pt2 and ONNX, and the fake
    card = (again / "MODEL_CARD.md").read_text()
    assert card.startswith(f"# Model card: {plain('<img src=x> *mine*')}\n")
    assert f"- Fake (`model.fake`): {plain('skipped: its converter (no_such_converter_anywhere)')}" in card
    assert skipped(again) == [f"Fake: skipped: its converter (no_such_converter_anywhere) is not installed; "
                              f"{formats.EXTRA} adds it"]
    assert not (again / "model.tflite").exists() and (again / "model.onnx").exists()
    queued = prepare_run(TrainConfig(dataset="toy", strategy="linear", **SMALL))
    with pytest.raises(workspace.WorkspaceError, match="no model to export"):
        export_run(queued, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
    runnames.rename_run(run_id, "toy linear 1")
