"""Evaluation: our metrics against scikit-learn, calibration, and a run evaluated end to end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn import metrics as skm

from imgcls.store import runs
from imgcls.evaluate.evaluation import compute_metrics, evaluate, reliability
from imgcls.train.run import TrainConfig, prepare_run, run

from test_train import SMALL, make_dataset

ROOT = Path(__file__).resolve().parents[1]


def _random_case(n=60, classes=3, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % classes
    logits = rng.normal(size=(n, classes)) + 1.5 * np.eye(classes)[labels]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return labels, probs


def test_metrics_match_scikit_learn():
    labels, probs = _random_case()
    pred = probs.argmax(1)
    out = compute_metrics(labels, probs, ["a", "b", "c"])
    assert out["accuracy"] == pytest.approx(skm.accuracy_score(labels, pred))
    assert out["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(labels, pred))
    assert out["macro_f1"] == pytest.approx(skm.f1_score(labels, pred, average="macro"))
    p, r, f, s = skm.precision_recall_fscore_support(labels, pred)
    assert [out["per_class"][c]["recall"] for c in "abc"] == pytest.approx(list(r))
    assert [out["per_class"][c]["precision"] for c in "abc"] == pytest.approx(list(p))
    assert [out["per_class"][c]["support"] for c in "abc"] == list(s)
    assert out["confusion"] == skm.confusion_matrix(labels, pred).tolist()
    assert out["top2_accuracy"] == pytest.approx(skm.top_k_accuracy_score(labels, probs, k=2))
    assert out["roc_auc"] == pytest.approx(skm.roc_auc_score(labels, probs, multi_class="ovr"))
    assert np.allclose(np.asarray(out["confusion_normalised"]).sum(1), 1.0)


def test_binary_roc_auc_and_a_missing_class():
    labels, probs = _random_case(classes=2)
    assert compute_metrics(labels, probs, ["x", "y"])["roc_auc"] == pytest.approx(
        skm.roc_auc_score(labels, probs[:, 1]))
    labels3, probs3 = _random_case(classes=3)
    keep = labels3 != 2  # no image of the third class: ROC-AUC is undefined, not a crash
    assert compute_metrics(labels3[keep], probs3[keep], ["a", "b", "c"])["roc_auc"] is None


def test_expected_calibration_error():
    rng = np.random.default_rng(1)
    correct = rng.random(10_000) < 0.8
    assert reliability(np.full(10_000, 0.8), correct)["ece"] == pytest.approx(0.0, abs=0.02)
    assert reliability(np.full(10_000, 1.0), correct)["ece"] == pytest.approx(0.2, abs=0.02)


def test_evaluating_a_run_reproduces_its_validation_accuracy_and_saves_predictions(imgcls_home):
    make_dataset(per_class=10)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=20, **SMALL))
    trained = run(run_id, echo=lambda _: None)
    result = evaluate(run_id, "val")
    assert result["accuracy"] == pytest.approx(trained["val_accuracy"])
    table = pd.read_csv(result["predictions"])
    assert {"path", "label", "prediction", "p:blue", "p:red", "loss", "correct"} <= set(table.columns)
    assert np.allclose(table[["p:blue", "p:red"]].sum(axis=1), 1.0, atol=1e-5)
    out = subprocess.run([sys.executable, "-m", "imgcls", "evaluate", run_id, "--split", "val", "--json"],
                         cwd=ROOT, env=dict(os.environ, IMGCLS_HOME=str(imgcls_home)),
                         capture_output=True, text=True, check=True)
    cli = json.loads(out.stdout.strip().splitlines()[-1])
    assert {"accuracy", "macro_f1", "per_class", "confusion", "ece", "predictions"} <= set(cli)
    assert (runs.run_dir(run_id) / "evaluation-val.json").exists()


def test_roc_curves_match_scikit_learn():
    from imgcls.charts import evaluation as eval_charts

    labels, probs = _random_case(n=90, classes=3, seed=2)
    probs = np.round(probs, 2)  # ties in the scores, as real probabilities have
    table = pd.DataFrame({"label": [("a", "b", "c")[i] for i in labels],
                          **{f"p:{c}": probs[:, i] for i, c in enumerate("abc")}})
    curves = eval_charts.roc_curves(table, ["a", "b", "c"])
    assert [c["class"] for c in curves] == ["a", "b", "c"]
    for i, curve in enumerate(curves):
        fpr, tpr, thresholds = skm.roc_curve(labels == i, probs[:, i], drop_intermediate=False)
        assert curve["fpr"] == pytest.approx(fpr) and curve["tpr"] == pytest.approx(tpr)
        assert eval_charts.roc_points(labels == i, probs[:, i])[2][1:] == pytest.approx(thresholds[1:])
        assert curve["auc"] == pytest.approx(skm.roc_auc_score(labels == i, probs[:, i]))
    fig = eval_charts.roc_figure(table, ["a", "b", "c"])
    assert [t.name.split(" (")[0] for t in fig.data] == ["a", "b", "c", "Chance"]
    assert fig.data[0].name == f"a (AUC {curves[0]['auc']:.3f})"
    two, p2 = _random_case(classes=2)
    binary = pd.DataFrame({"label": [("x", "y")[i] for i in two], "p:x": p2[:, 0], "p:y": p2[:, 1]})
    only = eval_charts.roc_curves(binary, ["x", "y"])
    assert len(only) == 1 and only[0]["auc"] == pytest.approx(skm.roc_auc_score(two, p2[:, 1]))
    assert eval_charts.roc_curves(binary[binary["label"] == "x"], ["x", "y"]) == []  # one class only: no curve


def test_comparison_table_and_confusion_difference():
    from imgcls.evaluate import compare
    from imgcls.charts import evaluation as eval_charts

    labels, probs = _random_case(seed=3)
    first = compute_metrics(labels, probs, ["a", "b", "c"])
    second = compute_metrics(labels, np.eye(3)[labels] * 0.9 + 0.1 / 3, ["a", "b", "c"])  # always right
    table = compare.metrics_table(first, second).set_index("metric")
    assert table.at["Accuracy", "difference"] == pytest.approx(1.0 - first["accuracy"])
    assert table.at["Accuracy", "better"] == "second" and table.at["F1 of b", "second"] == 1.0
    assert table.at["Calibration error (ECE)", "better"] == ("second" if second["ece"] < first["ece"] else "first")
    diff = compare.confusion_difference(first, second)
    assert np.allclose(diff.sum(1), 0) and np.allclose(np.diag(diff), 1 - np.diag(first["confusion_normalised"]))
    assert np.allclose(eval_charts.confusion_difference_figure(first, second).data[0].z, diff)
    assert compare.comparable({"dataset": "d", "classes": ["a"]}, {"dataset": "d", "classes": ["a"]})
    assert not compare.comparable({"dataset": "d", "classes": ["a"]}, {"dataset": "d", "classes": ["a", "b"]})


def test_saved_evaluations_keep_tta_apart_and_mark_rows_fixed_since(imgcls_home):
    from imgcls.store import journal, workspace
    from imgcls.evaluate.evaluation import changes_since, saved_evaluation

    make_dataset(per_class=10)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=3, **SMALL))
    run(run_id, echo=lambda _: None)
    # the training job saved the validation evaluation (without TTA) once its model was kept; nothing else
    assert saved_evaluation(run_id, "val")["tta"] is False and saved_evaluation(run_id, "val", True) is None
    assert saved_evaluation(run_id, "test") is None
    plain, flipped = evaluate(run_id, "val"), evaluate(run_id, "val", tta=True)
    assert saved_evaluation(run_id, "val")["tta"] is False and saved_evaluation(run_id, "val", True)["tta"] is True
    assert plain["predictions"] != flipped["predictions"]
    table = pd.read_csv(plain["predictions"], keep_default_na=False)
    a, b = table["path"].iloc[0], table["path"].iloc[1]
    journal.edit("toy", "relabel", [a], "green", source="evaluate")
    journal.edit("toy", "exclude", [b], source="evaluate")
    notes = changes_since(table, workspace.read_manifest("toy"))
    assert list(notes.iloc[:2]) == ["relabelled to green since", "excluded since"] and set(notes.iloc[2:]) == {""}


def test_a_linear_run_is_scored_from_its_cached_features_as_the_whole_model_scores_it(imgcls_home, monkeypatch):
    from imgcls.evaluate import evaluation
    from imgcls.vision import imgcache

    make_dataset(per_class=10)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=5, **SMALL))
    run(run_id, echo=lambda _: None)
    real = imgcache.load_images
    with monkeypatch.context() as patch:  # the features training cached stand for the backbone: no image decoded
        patch.setattr(imgcache, "load_images", lambda *a, **k: pytest.fail("decoded images"))
        fast = evaluation.predict_split(run_id, "val")
    with monkeypatch.context() as patch:
        patch.setattr(evaluation, "_cached_features", lambda *a: None)  # the whole model on the decoded images
        patch.setattr(imgcache, "load_images", real)
        full = evaluation.predict_split(run_id, "val")
    columns = ["p:blue", "p:red"]
    assert np.allclose(fast[columns].to_numpy(), full[columns].to_numpy(), atol=1e-5)
    assert list(fast["prediction"]) == list(full["prediction"]) and list(fast["path"]) == list(full["path"])
    # a missing cache entry, or mirrored images (TTA), take the whole model again
    [key_dir] = list((imgcls_home / "cache" / "features").iterdir())
    shutil.rmtree(key_dir)  # the feature store of the run's key, gone: no image of the split has its features
    decoded = []
    monkeypatch.setattr(imgcache, "load_images", lambda *a, **k: decoded.append(1) or real(*a, **k))
    again = evaluation.predict_split(run_id, "val")
    evaluation.predict_split(run_id, "val", tta=True)
    assert decoded == [1, 1] and np.allclose(again[columns].to_numpy(), full[columns].to_numpy(), atol=1e-5)


def test_a_failed_evaluation_after_training_leaves_the_run_done(imgcls_home, monkeypatch):
    from imgcls.evaluate import evaluation

    make_dataset(per_class=10)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=3, **SMALL))
    monkeypatch.setattr(evaluation, "evaluate", lambda *a, **k: (_ for _ in ()).throw(OSError("disk full")))
    said = []
    run(run_id, echo=said.append)
    assert runs.read_status(run_id)["state"] == "done" and (runs.run_dir(run_id) / "model.safetensors").exists()
    assert not (runs.run_dir(run_id) / "evaluation-val.json").exists()
    assert any("not evaluated yet: disk full" in line for line in said)
