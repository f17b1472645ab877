"""Caches never serve one workspace's data to another.

Two workspaces hold a dataset of the same name made of the same pictures with the labels swapped, and a run
of the same id with the same model-file stamp, trained on each one's own labels. Every cached read asked in
one workspace after the other's answer was cached still answers with its own workspace's data: the red
picture is 'red' in one and 'blue' in the other.
"""

from __future__ import annotations

import base64
import json
import os
import types

import numpy as np
import pytest

from imgcls.charts import dataset as charts
from imgcls.lab import runs as exp_runs
from imgcls.health import check as health
from imgcls.vision import imgcache
from imgcls.store import runs, versions, workspace
from imgcls.evaluate.evaluation import evaluate
from imgcls.train.run import TrainConfig, prepare_run, run
from imgcls.ui.common import cached
from imgcls.ui.evaluate import predict as eval_predict, evaluating
from imgcls.ui.review import health as review_health

from test_train import SMALL, _png, make_dataset

RED, BLUE = (220, 40, 40), (40, 40, 220)
RED_PNG, BLUE_PNG = _png(RED, 1000), _png(BLUE, 1001)  # new pictures, not in either dataset
STAMP = 1_700_000_000_123_456_789  # one mtime given to both workspaces' files, so only the root tells them apart


def _same_stamp(*paths) -> None:
    for path in paths:
        os.utime(path, ns=(STAMP, STAMP))


def _train() -> str:
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=40, **SMALL))
    run(run_id, echo=lambda _: None)
    return run_id


@pytest.fixture(scope="module")
def spaces(tmp_path_factory):
    """Workspaces a and b: dataset 'toy' (red pictures labelled red in a, blue in b) and one run id in both."""
    base = tmp_path_factory.mktemp("isolation")
    a, b = base / "a", base / "b"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLS_HOME", str(base / "server"))  # nothing may land in the server's own folder
        with workspace.use(a):
            make_dataset(per_class=10)
            run_id = _train()
        with workspace.use(b):
            make_dataset(per_class=10, classes=(("blue", RED), ("red", BLUE)))
            os.replace(runs.run_dir(_train()), runs.run_dir(run_id))  # the same run id as in a
        for root in (a, b):
            with workspace.use(root):
                _same_stamp(runs.run_dir(run_id) / "model.safetensors", workspace.dataset_dir("toy") / "manifest.csv")
        yield types.SimpleNamespace(a=a, b=b, run_id=run_id)
        assert not (base / "server" / "datasets").exists()


def _in_turn(spaces, ask):
    """ask() in a, then b, then a again (after b's answer was cached): the three answers."""
    out = []
    for root in (spaces.a, spaces.b, spaces.a):
        with workspace.use(root):
            out.append(ask())
    return out


def test_the_manifest_and_its_digest_are_each_workspaces_own(spaces):
    stats = []
    for root in (spaces.a, spaces.b):
        with workspace.use(root):
            stats.append((workspace.dataset_dir("toy") / "manifest.csv").stat())
    # the same stamp and size: a key without the folder would give b the manifest cached for a
    assert (stats[0].st_mtime_ns, stats[0].st_size) == (stats[1].st_mtime_ns, stats[1].st_size)
    with workspace.use(spaces.a):
        df = workspace.read_manifest("toy")
        red = set(df.loc[df["label"] == "red", "path"])  # the red pictures (the same files in b)
    a1, b, a2 = _in_turn(spaces, lambda: cached.manifest("toy"))
    labels = [set(m.loc[m["path"].isin(red), "label"]) for m in (a1, b, a2)]
    assert labels == [{"red"}, {"blue"}, {"red"}]
    digests = _in_turn(spaces, lambda: versions.current_digest("toy"))
    assert digests[0] != digests[1] and digests[0] == digests[2]
    with workspace.use(spaces.b):
        assert digests[1] == versions.manifest_digest(workspace.read_manifest("toy"))


def _bars(figure) -> list:
    """What a bar chart shows: each split's images per class."""
    return [(bar.name, list(bar.x), _values(bar.y)) for bar in figure.data]


def _values(y) -> list[int]:
    """Bar heights, also from plotly's base64 form (what a figure kept by the cache holds)."""
    if isinstance(y, dict):
        y = np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"])
    return [int(v) for v in y]


def test_the_class_and_split_chart_is_each_workspaces_own(spaces):
    for root in (spaces.a, spaces.b):
        with workspace.use(root):
            make_dataset("shapes", per_class=6)
    with workspace.use(spaces.b):  # a red training image and a blue validation image trade splits: same size
        df = workspace.read_manifest("shapes")
        red = df.index[(df["label"] == "red") & (df["split"] == "train")][0]
        blue = df.index[(df["label"] == "blue") & (df["split"] == "val")][0]
        df.loc[[red, blue], "split"] = ["val", "train"]
        workspace.write_manifest(workspace.dataset_dir("shapes"), df)
    own, stats = [], []
    for root in (spaces.a, spaces.b):
        with workspace.use(root):
            path = workspace.dataset_dir("shapes") / "manifest.csv"
            _same_stamp(path)
            stats.append(path.stat().st_size)
            own.append(_bars(charts.class_split_counts(workspace.read_manifest("shapes"))))
    assert stats[0] == stats[1] and own[0] != own[1]
    shown = _in_turn(spaces, lambda: _bars(cached.figures("shapes")[0]))
    assert shown == [own[0], own[1], own[0]]


def test_the_health_report_is_each_workspaces_own(spaces):
    for root, score in ((spaces.a, 11), (spaces.b, 99)):
        with workspace.use(root):
            path = workspace.dataset_dir("toy") / "health.json"
            workspace.atomic_write_json(path, {"format": health.FORMAT, "score": score, "findings": []})
            _same_stamp(path)
    assert [r["score"] for r in _in_turn(spaces, lambda: review_health.load_report("toy"))] == [11, 99, 11]


def test_each_workspace_loads_its_own_model_for_the_same_run_id(spaces):
    def ask():
        model = eval_predict.predictor(spaces.run_id)
        return model, model.predict([("red.png", RED_PNG)], top_k=1)[0]["prediction"]

    (a1, red_a1), (b, red_b), (a2, red_a2) = _in_turn(spaces, ask)
    assert a1 is a2 and a1 is not b  # loaded once per workspace
    assert [red_a1, red_b, red_a2] == ["red", "blue", "red"]


def test_one_image_answers_come_from_the_workspaces_own_model(spaces):
    answers = _in_turn(spaces, lambda: eval_predict.answer(spaces.run_id, RED_PNG)[0]["prediction"])
    assert answers == ["red", "blue", "red"]
    overlays = _in_turn(spaces, lambda: eval_predict.answer(spaces.run_id, BLUE_PNG, explain=True))
    assert [o[0]["prediction"] for o in overlays] == ["blue", "red", "blue"]
    assert overlays[0][1] is not None and overlays[0][1] != overlays[1][1]  # each model's own Grad-CAM


def test_batch_predictions_come_from_the_workspaces_own_model(spaces):
    files = [("red.png", lambda: RED_PNG), ("blue.png", lambda: BLUE_PNG)]
    answers = _in_turn(spaces, lambda: [r["prediction"] for r in eval_predict.batch_rows(spaces.run_id, files)])
    assert answers == [["red", "blue"], ["blue", "red"], ["red", "blue"]]


def test_an_evaluations_predictions_table_is_each_workspaces_own(spaces):
    results = {}
    for root in (spaces.a, spaces.b):
        with workspace.use(root):
            results[workspace.home()] = result = evaluate(spaces.run_id, "val")
            _same_stamp(runs.run_dir(spaces.run_id) / os.path.basename(result["predictions"]))

    def table():
        df = evaluating.predictions(spaces.run_id, results[workspace.home()])
        return dict(zip(df["path"], df["label"]))

    def own():
        rows = workspace.read_manifest(runs.run_dir(spaces.run_id))  # the rows the run was evaluated on
        rows = rows[rows["split"] == "val"]
        return dict(zip(rows["path"], rows["label"]))

    expected = _in_turn(spaces, own)
    assert expected[0] != expected[1]
    assert _in_turn(spaces, table) == expected


def test_an_experiment_runs_model_is_each_workspaces_own(spaces):
    with workspace.use(spaces.a):
        config = runs.read_config(spaces.run_id)
        df = workspace.read_manifest("toy")
        side = imgcache.cache_size(config["img_size"], config["data_config"]["crop_pct"])
        images = imgcache.load_images(workspace.dataset_dir("toy"), list(df["path"]), list(df["hash"]), side,
                                      config["data_config"]["interpolation"])
        truth = df["label"].map({c: i for i, c in enumerate(config["classes"])}).to_numpy()
    a1, b, a2 = _in_turn(spaces, lambda: exp_runs.predict(spaces.run_id, images))
    assert (a1 == truth).mean() >= 0.9 and (b == 1 - truth).mean() >= 0.9  # b learned the swapped labels
    assert np.array_equal(a1, a2)


def test_the_two_workspaces_really_differ_on_disk(spaces):
    """The premise of the tests above: same names and stamps, different content."""
    found = []
    for root in (spaces.a, spaces.b):
        with workspace.use(root):
            folder = runs.run_dir(spaces.run_id)
            model = folder / "model.safetensors"
            found.append((model.stat().st_mtime_ns, model.read_bytes(),
                          json.loads((folder / "config.json").read_text())["dataset"]))
    assert found[0][0] == found[1][0] == STAMP and found[0][2] == found[1][2] == "toy"
    assert found[0][1] != found[1][1]
