"""Exports: ONNX and TorchScript match the app's probabilities; predict.py checks itself on the goldens."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from imgcls.evaluate.export import export_run, onnx_probabilities
from imgcls.vision.imgcache import to_tensor
from imgcls.evaluate.predict import Predictor
from imgcls.ingest.images import decode
from imgcls.train.run import TrainConfig, prepare_run, run

from test_train import SMALL, make_dataset


@pytest.fixture
def bundle(imgcls_home, tmp_path):
    make_dataset(per_class=10)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=10, **SMALL))
    run(run_id, echo=lambda _: None)
    return run_id, export_run(run_id, tmp_path / "bundle")


def test_bundle_holds_every_part(bundle):
    _, out = bundle
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "model.onnx", "model.torchscript.pt", "classes.json", "preprocessing.json",
            "predict.py", "MODEL_CARD.md", "goldens"} <= names
    assert json.loads((out / "classes.json").read_text()) == ["blue", "red"]
    assert len(json.loads((out / "goldens" / "goldens.json").read_text())) >= 2


def test_onnx_and_torchscript_match_the_app_on_the_goldens(bundle):
    run_id, out = bundle
    predictor = Predictor(run_id)
    goldens = json.loads((out / "goldens" / "goldens.json").read_text())
    batch = np.stack([predictor.pre.prepare(decode((out / "goldens" / g["file"]).read_bytes())) for g in goldens])
    dcfg = predictor.config["data_config"]
    x = to_tensor(batch, dcfg["mean"], dcfg["std"])
    app = predictor.probabilities(batch)
    assert np.abs(app - np.array([g["probabilities"] for g in goldens])).max() < 1e-6
    assert np.abs(onnx_probabilities(out, x.numpy()) - app).max() < 1e-4
    scripted = torch.jit.load(str(out / "model.torchscript.pt"))
    with torch.no_grad():
        assert np.abs(scripted(x).softmax(1).numpy() - app).max() < 1e-4


def test_standalone_predict_script_checks_parity_and_predicts(bundle):
    _, out = bundle
    golden = sorted((out / "goldens").glob("*.png"))[0]
    result = subprocess.run([sys.executable, "predict.py", str(golden)], cwd=out, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "parity OK" in result.stdout and golden.name in result.stdout


def test_export_refuses_an_existing_folder(bundle, tmp_path):
    run_id, out = bundle
    with pytest.raises(FileExistsError):
        export_run(run_id, out)


def test_standalone_script_needs_only_onnxruntime_pillow_and_numpy():
    import ast
    from imgcls.evaluate.export import TEMPLATE

    tree = ast.parse(TEMPLATE.read_text())
    roots = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    roots |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    assert roots <= {"json", "sys", "pathlib", "numpy", "onnxruntime", "PIL"}


def test_the_model_card_names_the_run_and_a_run_without_a_model_is_refused(bundle, tmp_path):
    from imgcls.store import runnames, workspace
    from imgcls.ui.common.text import plain

    run_id, out = bundle
    card = (out / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card: toy linear 1\n") and f"`{run_id}`" in card
    assert "Stopped early" not in card  # a finished run
    runnames.rename_run(run_id, "<img src=x> *mine*")
    card = (export_run(run_id, tmp_path / "again") / "MODEL_CARD.md").read_text()
    assert card.startswith(f"# Model card: {plain('<img src=x> *mine*')}\n")
    queued = prepare_run(TrainConfig(dataset="toy", strategy="linear", **SMALL))
    with pytest.raises(workspace.WorkspaceError, match="no model to export"):
        export_run(queued, tmp_path / "nothing")
    assert not (tmp_path / "nothing").exists()
