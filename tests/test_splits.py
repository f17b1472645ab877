"""Seeded, stratified train/val/test splits, alone and through an import."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from imgcls.store import workspace
from imgcls.ingest.imports import import_files, import_zip
from imgcls.ingest.splits import DEFAULT_RATIOS, assign_splits, normalise_split, plan_counts

pytestmark = pytest.mark.usefixtures("imgcls_home")


# --- plan_counts ------------------------------------------------------------------------------


@pytest.mark.parametrize("n,expected", [
    (0, (0, 0, 0)), (-3, (0, 0, 0)), (1, (1, 0, 0)), (2, (1, 1, 0)), (3, (1, 1, 1)), (4, (2, 1, 1)),
    (5, (3, 1, 1)), (7, (5, 1, 1)), (10, (6, 2, 2)), (20, (14, 3, 3)), (100, (70, 15, 15)),
    (1000, (700, 150, 150)),
])
def test_plan_counts_default_ratios(n, expected):
    assert plan_counts(n) == dict(zip(("train", "val", "test"), expected))


@pytest.mark.parametrize("n", range(0, 60))
def test_plan_counts_invariants(n):
    c = plan_counts(n)
    assert set(c) == {"train", "val", "test"}
    assert sum(c.values()) == max(n, 0)
    assert all(v >= 0 for v in c.values())
    if n >= 1:
        assert c["train"] >= 1
    if n >= 3:
        assert c["val"] >= 1 and c["test"] >= 1
        assert c["train"] >= c["val"] and c["train"] >= c["test"]
    if n >= 20:
        assert abs(c["train"] / n - 0.70) <= 0.05
        assert abs(c["val"] / n - 0.15) <= 0.05 and abs(c["test"] / n - 0.15) <= 0.05


@pytest.mark.parametrize("ratios,n,expected", [
    ((0.8, 0.2, 0.0), 10, (8, 2, 0)),
    ((0.8, 0.2, 0.0), 2, (1, 1, 0)),
    ((0.8, 0.0, 0.2), 2, (1, 0, 1)),
    ((0.8, 0.0, 0.2), 5, (4, 0, 1)),
    ((1.0, 0.0, 0.0), 2, (2, 0, 0)),
    ((1.0, 0.0, 0.0), 9, (9, 0, 0)),
    ((70, 15, 15), 100, (70, 15, 15)),  # ratios need not sum to 1
    ((0.1, 0.45, 0.45), 3, (1, 1, 1)),
    ((0.1, 0.45, 0.45), 4, (1, 1, 2)),  # shares round to 2+2: one given back so training keeps one
    ((0.1, 0.45, 0.45), 20, (2, 9, 9)),
])
def test_plan_counts_other_ratios(ratios, n, expected):
    assert plan_counts(n, ratios) == dict(zip(("train", "val", "test"), expected))


def test_normalise_split_aliases():
    for name, split in [("train", "train"), ("Training", "train"), ("val", "val"), ("valid", "val"),
                        ("VALIDATION", "val"), (" test ", "test"), ("testing", "test")]:
        assert normalise_split(name) == split
    for other in ("", None, "cats", "dev", "holdout"):
        assert normalise_split(other) is None


# --- assign_splits ----------------------------------------------------------------------------


def _data(per_class: dict[str, int]):
    labels = [lab for lab, n in per_class.items() for _ in range(n)]
    keys = [f"{lab}-{i:04d}" for i, lab in enumerate(labels)]
    return labels, keys


def test_assign_splits_stratified_per_class():
    labels, keys = _data({"a": 40, "b": 20, "c": 7})
    splits, warnings = assign_splits(labels, keys, seed=0)
    assert warnings == []
    for lab, n in (("a", 40), ("b", 20), ("c", 7)):
        got = Counter(s for s, l in zip(splits, labels) if l == lab)
        assert got == +Counter(plan_counts(n))


def test_assign_splits_same_seed_same_split_other_seed_differs():
    labels, keys = _data({"a": 30, "b": 30})
    first, _ = assign_splits(labels, keys, seed=7)
    assert assign_splits(labels, keys, seed=7)[0] == first
    others = [assign_splits(labels, keys, seed=s)[0] for s in (8, 9, 10)]
    assert all(o != first for o in others)
    for other in others:  # a different seed changes which images, never how many
        assert Counter(zip(other, labels)) == Counter(zip(first, labels))


def test_assign_splits_does_not_depend_on_arrival_order():
    labels, keys = _data({"a": 25, "b": 12})
    splits, _ = assign_splits(labels, keys, seed=3)
    by_key = dict(zip(keys, splits))
    order = list(range(len(labels)))
    random.Random(1).shuffle(order)
    shuffled, _ = assign_splits([labels[i] for i in order], [keys[i] for i in order], seed=3)
    assert dict(zip([keys[i] for i in order], shuffled)) == by_key


def test_assign_splits_tops_up_existing_counts():
    labels, keys = _data({"a": 10})
    existing = {"a": Counter({"train": 10})}  # 10 already in training
    splits, _ = assign_splits(labels, keys, seed=0, existing=existing)
    # 20 in all → 14/3/3: the 10 new ones fill val and test first, the rest train
    assert Counter(splits) == Counter({"train": 4, "val": 3, "test": 3})
    # a class already over its training share gets no more than it needs elsewhere
    splits, _ = assign_splits(["b"] * 2, ["k1", "k2"], seed=0, existing={"b": Counter({"train": 1, "val": 1, "test": 1})})
    assert Counter(splits) == Counter({"train": 2})


def test_assign_splits_warns_about_tiny_classes():
    labels, keys = _data({"one": 1, "two": 2, "three": 3})
    splits, warnings = assign_splits(labels, keys, seed=0)
    assert splits[0] == "train"
    assert sorted(splits[1:3]) == ["train", "val"]
    assert len(warnings) == 2
    assert any("'one'" in w and "only 1 image" in w and "training" in w for w in warnings)
    assert any("'two'" in w and "only 2 images" in w and "test" in w for w in warnings)
    # a class with existing images is judged on its total
    _, warnings = assign_splits(["one"], ["k"], seed=0, existing={"one": Counter({"train": 5})})
    assert warnings == []


def test_assign_splits_empty():
    assert assign_splits([], [], seed=0) == ([], [])


# --- through an import ------------------------------------------------------------------------


def _zip(mk, per_class):
    return mk.zip(mk.class_members(per_class))


def _split_by_hash(name):
    df = workspace.read_manifest(name)
    return dict(zip(df["hash"], df["split"]))


def test_import_split_is_seeded_and_stratified(mk):
    raw = _zip(mk, {"cats": 20, "dogs": 10})
    report = import_zip(raw, "s0a", seed=0)
    assert report.splits == {"train": 14 + 6, "val": 3 + 2, "test": 3 + 2}
    import_zip(raw, "s0b", seed=0)
    import_zip(raw, "s1", seed=1)
    assert _split_by_hash("s0a") == _split_by_hash("s0b")
    assert _split_by_hash("s0a") != _split_by_hash("s1")
    for name in ("s0a", "s1"):
        df = workspace.read_manifest(name)
        for label, n in (("cats", 20), ("dogs", 10)):
            assert Counter(df[df["label"] == label]["split"]) == +Counter(plan_counts(n))


def test_import_split_ignores_file_order(mk):
    members = mk.class_members({"cats": 12, "dogs": 12})
    import_zip(mk.zip(members), "forward", seed=5)
    import_zip(mk.zip(list(reversed(members))), "backward", seed=5)
    assert _split_by_hash("forward") == _split_by_hash("backward")


def test_import_custom_ratios(mk):
    report = import_zip(_zip(mk, {"a": 10, "b": 10}), "ratios", ratios=(0.8, 0.2, 0.0))
    assert report.splits == {"train": 16, "val": 4, "test": 0}


def test_tiny_classes_imported_with_warnings(mk):
    report = import_zip(_zip(mk, {"big": 10, "single": 1, "pair": 2}), "tiny")
    assert report.class_counts == {"big": 10, "pair": 2, "single": 1}
    df = workspace.read_manifest("tiny")
    assert df[df["label"] == "single"]["split"].tolist() == ["train"]
    assert sorted(df[df["label"] == "pair"]["split"]) == ["train", "val"]
    assert len(report.warnings) == 2
    assert any("'single'" in w for w in report.warnings) and any("'pair'" in w for w in report.warnings)


def test_adding_to_a_tiny_class_clears_its_warning(mk):
    first = import_files([("a.png", mk.png(1))], "grow", "cats")
    assert any("'cats'" in w for w in first.warnings)
    import_files([(f"d{i}.png", mk.png(10 + i)) for i in range(5)], "grow", "dogs")
    later = import_files([(f"c{i}.png", mk.png(20 + i)) for i in range(4)], "grow", "cats")
    assert not any("'cats'" in w for w in later.warnings)
    df = workspace.read_manifest("grow")
    assert Counter(df[df["label"] == "cats"]["split"]) == +Counter(plan_counts(5))
    assert df[df["source"] == "a.png"]["split"].tolist() == ["train"]  # never moved


def test_default_ratios():
    assert DEFAULT_RATIOS == (0.70, 0.15, 0.15)
