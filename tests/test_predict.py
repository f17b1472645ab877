"""Prediction on new images: top-k, 'not sure', bad files reported while the batch goes on."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_train import SMALL, _png, make_dataset

from imgcls.evaluate.evaluation import evaluate
from imgcls.evaluate.predict import Predictor
from imgcls.store import workspace
from imgcls.train.run import TrainConfig, prepare_run, run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def trained(imgcls_home):
    make_dataset(per_class=10)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=20, **SMALL))
    run(run_id, echo=lambda _: None)
    return run_id


def test_predictions_match_evaluation_and_bad_files_do_not_stop_the_batch(trained):
    predictor = Predictor(trained)
    table = pd.read_csv(evaluate(trained, "val")["predictions"])
    folder = workspace.dataset_dir("toy")
    files = [(p, (folder / p).read_bytes()) for p in table["path"]]
    rows = predictor.predict(files[:1] + [("broken.jpg", b"not an image")] + files[1:], top_k=2)
    assert [r["file"] for r in rows] == [files[0][0], "broken.jpg"] + [f for f, _ in files[1:]]
    assert "corrupt" in rows[1]["error"]
    good = [r for r in rows if "error" not in r]
    ours = np.array([[r["probabilities"][c] for c in ("blue", "red")] for r in good])
    assert np.allclose(ours, table[["p:blue", "p:red"]].to_numpy(), atol=1e-4)  # same preprocessing everywhere
    assert all(len(r["top"]) == 2 and r["top"][0][1] >= r["top"][1][1] for r in good)


def test_not_sure_below_the_threshold(trained):
    data = _png((130, 40, 130), 99)  # purple: halfway between the red and blue classes
    row = Predictor(trained).predict([("purple.png", data)], min_confidence=1.01)[0]
    assert row["prediction"] == "not sure" and 0 < row["confidence"] <= 1


def test_cli_predict_writes_a_csv_and_reports_missing_files(trained, imgcls_home, tmp_path):
    image = tmp_path / "red.png"
    image.write_bytes(_png((220, 40, 40), 123))
    out_csv = tmp_path / "out.csv"
    out = subprocess.run([sys.executable, "-m", "imgcls", "predict", trained, str(image), str(tmp_path / "nope.png"),
                          "--csv", str(out_csv), "--json"], cwd=ROOT, env=dict(os.environ, IMGCLS_HOME=str(imgcls_home)),
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    by_file = {r["file"]: r for r in result["predictions"]}
    assert by_file[str(image)]["prediction"] == "red" and by_file[str(image)]["unfamiliar"] is False
    assert "unreadable" in by_file[str(tmp_path / "nope.png")]["error"]
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text())))
    assert {r["file"] for r in rows} == set(by_file) and "p:red" in rows[0]
    assert {r["unfamiliar"] for r in rows} == {"False", ""}  # the missing file has no answer at all


def test_grad_cam_of_a_prediction(trained):
    out = Predictor(trained).explain(_png((220, 40, 40), 5))
    assert out["class"] == "red"
    assert out["overlay"].shape == (SMALL["img_size"], SMALL["img_size"], 3) and out["overlay"].dtype == np.uint8
    assert out["heat"].min() >= 0 and out["heat"].max() <= 1


def test_dataset_overlays_are_made_in_one_batch_cached_on_disk_and_match_one_by_one(trained, monkeypatch):
    from PIL import Image

    from imgcls.evaluate import ood
    from imgcls.store import runs

    (runs.run_dir(trained) / ood.FILE).unlink()  # the training job saved one: start without it
    predictor = Predictor(trained)
    df = workspace.read_manifest("toy")
    rows = df[df["split"] == "val"].head(4)
    folder = workspace.dataset_dir("toy")
    items = [(p, h, n % 2) for n, (p, h) in enumerate(zip(rows["path"], rows["hash"]))]
    items.append(("images/gone.png", "0" * 40, 0))  # a file removed since: no overlay, the rest go on
    batches = []
    real = Predictor.explain_prepared
    monkeypatch.setattr(Predictor, "explain_prepared", lambda self, images, *a, **k: batches.append(len(images))
                        or real(self, images, *a, **k))
    files = predictor.overlay_files(folder, items)
    assert batches == [4] and files[-1] is None and all(f.exists() for f in files[:-1])
    assert not (runs.run_dir(trained) / ood.FILE).exists()
    for (path, _, index), file in zip(items[:-1], files[:-1]):  # each file is that image's overlay for that class
        shown = np.asarray(Image.open(file)).astype(int)
        own, other = (predictor.explain((folder / path).read_bytes(), c)["overlay"].astype(int)
                      for c in (index, 1 - index))
        assert np.abs(shown - own).mean() < 10 < np.abs(shown - other).mean()  # JPEG's loss only
    batches.clear()
    assert predictor.overlay_files(folder, items[:4]) == files[:4] and batches == []  # read, not made again
    assert predictor.overlay_files(folder, [(items[0][0], items[0][1], 1 - items[0][2])])[0] != files[0]


def test_the_training_job_saves_the_reference_so_a_first_prediction_does_not_build_it(trained, monkeypatch):
    from imgcls.evaluate import ood

    assert ood.load(trained) is not None  # saved with the run, for its model file
    monkeypatch.setattr(ood, "build", lambda *a, **k: pytest.fail("built again"))
    row = Predictor(trained).predict([("a.png", _png((220, 40, 40), 5))])[0]
    assert "unfamiliar" in row and row["distance"] >= 0


def test_the_reference_is_built_on_first_need_once(trained, monkeypatch):
    from imgcls.evaluate import ood
    from imgcls.store import runs

    (runs.run_dir(trained) / ood.FILE).unlink()  # as for a run trained before the job saved it
    built = []
    real = ood.reference
    monkeypatch.setattr(ood, "reference", lambda *a, **k: built.append(1) or real(*a, **k))
    predictor = Predictor(trained)
    assert not predictor.reference_ready and built == []  # loading the model builds nothing
    predictor.predict([("a.png", _png((220, 40, 40), 5))], familiar=False)
    assert built == []  # nor a prediction that does not ask whether the image is familiar
    row = predictor.predict([("a.png", _png((220, 40, 40), 5))])[0]
    assert built == [1] and predictor.reference_ready and "unfamiliar" in row
    predictor.predict([("b.png", _png((40, 40, 220), 6))])
    assert built == [1]


def test_uploaded_zip_bytes_with_a_corrupt_member_go_on_and_report_it(trained):
    from conftest import make_zip

    from imgcls.evaluate.predict import not_sure, read_uploads, to_csv
    from imgcls.ingest.sources import ImportLimits

    archive = make_zip([("set/red.png", _png((220, 40, 40), 1)), ("set/broken.png", b"\x89PNG but not really"),
                        ("set/readme.txt", b"hello"), ("set/big.png", _png((40, 40, 220), 2) + b"\0" * 20000),
                        ("__MACOSX/._red.png", b"resource fork"), ("set/inner.zip", b"PK")])
    uploads = [("batch.zip", archive), ("loose.png", _png((40, 40, 220), 3)), ("damaged.zip", b"PK\x03\x04 no")]
    files, errors = read_uploads(uploads, ImportLimits(max_file_bytes=15000))
    assert [n for n, _ in files] == ["loose.png", "batch.zip/set/red.png", "batch.zip/set/broken.png"]
    why = {e["file"]: e["error"] for e in errors}
    assert set(why) == {"batch.zip/set/readme.txt", "batch.zip/set/big.png", "batch.zip/set/inner.zip", "damaged.zip"}
    assert why["batch.zip/set/readme.txt"].startswith("not an image")
    assert why["batch.zip/set/big.png"].startswith("too large")
    assert why["batch.zip/set/inner.zip"].startswith("nested archive")
    assert why["damaged.zip"].startswith("unreadable") and "not a ZIP" in why["damaged.zip"]
    seen = []
    rows = Predictor(trained).predict(files, progress=seen.append, batch_size=2)  # readers, read in turn
    assert [r.get("prediction") for r in rows] == ["blue", "red", None] and "corrupt" in rows[2]["error"]
    assert seen == [1 / 3 * 2, 1.0]
    assert not_sure(rows, 1.01)[0]["prediction"] == "not sure" and rows[0]["prediction"] == "blue"
    lines = to_csv(rows + errors, ["blue", "red"]).splitlines()
    assert len(lines) == 1 + 3 + 4 and lines[0].endswith("unfamiliar,distance,error")


def test_uploaded_zip_with_a_deflate64_member_skips_it_and_reads_the_rest():
    from conftest import make_zip
    from test_import import with_method

    from imgcls.evaluate.predict import read_uploads

    archive = with_method(make_zip([("set/red.png", _png((220, 40, 40), 1)), ("set/odd.png", _png((40, 40, 220), 2))]),
                          "set/odd.png", 9)
    files, errors = read_uploads([("batch.zip", archive)])
    assert [n for n, _ in files] == ["batch.zip/set/red.png"] and files[0][1]() == _png((220, 40, 40), 1)
    assert len(errors) == 1 and errors[0]["file"] == "batch.zip/set/odd.png"
    assert errors[0]["error"].startswith("unsupported compression") and "Deflate64" in errors[0]["error"]


def test_a_vision_transformer_run_explains_at_its_fixed_input_size(imgcls_home):
    import torch

    from imgcls.store import runs
    from imgcls.vision.checkpoint import save_model
    from imgcls.vision.models import create_model
    from imgcls.vision.preprocess import Preprocess

    backbone = "vit_small_patch16_224"  # takes 224×224 inputs only; the photo below is neither square nor that
    run_id = runs.new_run_id("toy", "scratch")
    config = Preprocess.for_backbone(backbone, pretrained=False).as_config() | {
        "classes": ["blue", "red"], "strategy": "scratch"}
    runs.run_dir(run_id).mkdir(parents=True)
    workspace.atomic_write_json(runs.run_dir(run_id) / "config.json", config)
    torch.manual_seed(0)
    save_model(create_model(backbone, 2, pretrained=False), runs.run_dir(run_id) / "model.safetensors")
    predictor = Predictor(run_id, check_familiar=False)
    out = predictor.explain(_png((220, 40, 40), 5, side=300))
    assert out["heat"].shape == (224, 224) and out["overlay"].shape == (224, 224, 3)
    assert 0 <= out["heat"].min() and out["heat"].max() == 1 and out["heat"].std() > 0.02
    assert out["class"] == predictor.predict([("red.png", _png((220, 40, 40), 5, side=300))])[0]["prediction"]
