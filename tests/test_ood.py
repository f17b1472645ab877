"""The out-of-distribution check: nearest-neighbour distances, the threshold, and a tiny trained run that
flags noise and stripes but not another image like its training images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from imgcls.evaluate import ood
from imgcls.store import runs
from imgcls.evaluate.predict import Predictor, to_csv
from imgcls.train.run import TrainConfig, prepare_run, run

from test_train import SMALL, _png, make_dataset


def _encode(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def noise_png(seed: int = 0) -> bytes:
    """Random pixels: nothing like a photo of anything."""
    return _encode(np.random.default_rng(seed).integers(0, 256, (48, 48, 3)))


def stripes_png() -> bytes:
    """Black and white stripes: neither red nor blue, all edges."""
    arr = np.zeros((48, 48, 3))
    arr[:, ::6] = arr[:, 1::6] = arr[:, 2::6] = 255
    return _encode(arr)


def test_knn_distance_matches_brute_force():
    rng = np.random.default_rng(0)
    ref, queries = ood.normalise(rng.normal(size=(50, 8))), ood.normalise(rng.normal(size=(7, 8)))
    for k in (1, 3, 50, 80):  # k past the reference size means its farthest row
        want = [1 - np.sort(q @ ref.T)[::-1][min(k, 50) - 1] for q in queries]
        assert ood.knn_distance(queries, ref, k) == pytest.approx(want, abs=1e-6)
    assert ood.knn_distance(ref[:3], ref, 1) == pytest.approx([0, 0, 0], abs=1e-6)  # itself is its nearest


def test_threshold_sits_above_nearly_every_in_distribution_distance():
    d = np.random.default_rng(1).uniform(0.05, 0.2, 1000)
    t = ood.threshold_from(d)
    assert (d <= t).mean() >= 0.99 and t < 0.2 * ood.MARGIN + 1e-9


@pytest.fixture
def trained(imgcls_home):
    make_dataset(per_class=20)  # six validation images: the threshold comes from them, not leave-one-out
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=5, **SMALL))
    run(run_id, echo=lambda _: None)
    return run_id


def test_noise_and_stripes_are_flagged_a_training_like_image_is_not(trained):
    assert ood.load(trained) is not None  # the training job saved it with the model
    (runs.run_dir(trained) / ood.FILE).unlink()  # a run from before that: made on first need
    predictor = Predictor(trained)
    assert not (runs.run_dir(trained) / ood.FILE).exists()  # nor by loading the model: on the first need
    assert predictor.reference.threshold > 0 and (runs.run_dir(trained) / ood.FILE).exists()
    rows = predictor.predict([("red.png", _png((220, 40, 40), 999)), ("blue.png", _png((40, 40, 220), 998)),
                              ("noise.png", noise_png()), ("stripes.png", stripes_png()), ("noise3.png", noise_png(3))])
    by_file = {r["file"]: r for r in rows}
    assert not by_file["red.png"]["unfamiliar"] and not by_file["blue.png"]["unfamiliar"]
    assert by_file["noise.png"]["unfamiliar"] and by_file["noise3.png"]["unfamiliar"]
    assert by_file["stripes.png"]["unfamiliar"]
    assert by_file["noise.png"]["distance"] > predictor.reference.threshold > by_file["red.png"]["distance"]
    header, *lines = to_csv(rows, predictor.classes).splitlines()
    assert header.split(",")[-3:] == ["unfamiliar", "distance", "error"]
    assert lines[2].split(",")[-3] == "True" and lines[0].split(",")[-3] == "False"


def test_the_saved_reference_is_reused_and_rebuilt_for_a_newer_model(trained, monkeypatch):
    Predictor(trained).reference  # noqa: B018 - built and saved on first access
    built = []
    real = ood.build
    monkeypatch.setattr(ood, "build", lambda *a, **k: built.append(1) or real(*a, **k))
    first = Predictor(trained).reference
    assert built == []  # loaded from the run folder
    model = runs.run_dir(trained) / "model.safetensors"
    stamp = (runs.run_dir(trained) / ood.FILE).stat().st_mtime_ns
    import os

    os.utime(model, ns=(stamp + 10**9, stamp + 10**9))
    again = Predictor(trained).reference
    assert built == [1] and again.threshold == pytest.approx(first.threshold, rel=1e-3)


def test_without_its_dataset_a_run_still_predicts_without_the_check(trained):
    from imgcls.store import workspace

    workspace.delete_dataset("toy")
    (runs.run_dir(trained) / ood.FILE).unlink()  # as for a run trained before the job saved its reference
    predictor = Predictor(trained)
    row = predictor.predict([("red.png", _png((220, 40, 40), 5))])[0]
    assert predictor.reference is None and row["prediction"] == "red" and "unfamiliar" not in row


def test_a_big_split_is_sampled_before_decoding_and_embedded_in_chunks(trained, monkeypatch):
    from imgcls.vision import imgcache
    from imgcls.store import workspace

    df = workspace.read_manifest("toy")
    n_train, n_val = int((df["split"] == "train").sum()), int((df["split"] == "val").sum())
    predictor = Predictor(trained, check_familiar=False)
    decoded = []
    real = imgcache.load_images
    monkeypatch.setattr(imgcache, "load_images", lambda folder, paths, *a, **k: decoded.append(list(paths))
                        or real(folder, paths, *a, **k))
    monkeypatch.setattr(ood, "MAX_REFERENCE", n_train - 6)
    monkeypatch.setattr(ood, "EMBED_CHUNK", 8)
    ref = ood.build(trained, predictor.model, predictor.config)
    assert len(ref.train) == n_train - 6 and ref.threshold > 0
    assert sum(map(len, decoded)) == n_train - 6 + n_val  # only the sample is ever read
    assert max(map(len, decoded)) <= 8
    kept = df.set_index("path").loc[[p for chunk in decoded for p in chunk]]
    assert set(kept[kept["split"] == "train"]["label"]) == set(predictor.classes)  # every class keeps its share
    again = ood.build(trained, predictor.model, predictor.config)  # seeded: the same sample every time
    assert np.array_equal(again.train, ref.train) and again.threshold == ref.threshold


def test_sample_keeps_each_class_share_and_rare_classes():
    import pandas as pd

    df = pd.DataFrame({"label": ["a"] * 900 + ["b"] * 100 + ["c"] * 3})
    kept = ood.sample(df, 100)
    counts = kept["label"].value_counts().to_dict()
    assert len(kept) == 100 and counts["c"] == 3 and counts["a"] > 8 * counts["b"]
    assert kept.index.is_monotonic_increasing and kept.index.equals(ood.sample(df, 100).index)
    assert ood.sample(df, 2000) is df
