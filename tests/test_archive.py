"""The cleaned dataset as a ZIP: split/class folders, the manifest, and a round trip through import."""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest

from imgcls.store import journal, workspace
from imgcls.ingest.archive import export_dataset
from imgcls.ingest.imports import import_zip

pytestmark = pytest.mark.usefixtures("imgcls_home")


def test_export_leaves_out_excluded_and_keeps_edits(mk):
    import_zip(mk.zip(mk.class_members({"cat": 5, "dog": 5})), "pets")
    df = workspace.read_manifest("pets")
    journal.edit("pets", "exclude", [df["path"].iloc[0]])
    journal.edit("pets", "relabel", [df["path"].iloc[1]], "fox")
    data = export_dataset("pets")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        names = zf.namelist()
        manifest = pd.read_csv(io.BytesIO(zf.read("manifest.csv")), keep_default_na=False)
        assert "journal.csv" in names
        images = [n for n in names if n.endswith(".png")]
        assert len(images) == 9 == len(manifest)
        assert set(manifest["file"]) == set(images)
        for row in manifest.itertuples():
            assert row.file.split("/")[:2] == [row.split, row.label]
        assert (manifest["label"] == "fox").sum() == 1
        # the user's file names survive
        assert set(manifest["source"].str.rsplit("/", n=1).str[-1]) >= {p.rsplit("/", 1)[-1] for p in images}


def test_export_round_trips_through_import(mk):
    import_zip(mk.zip(mk.class_members({"a": 6, "b": 6})), "one")
    import_zip(export_dataset("one"), "two")
    one = workspace.read_manifest("one").set_index("hash")[["label", "split"]].sort_index()
    two = workspace.read_manifest("two").set_index("hash")[["label", "split"]].sort_index()
    assert one.equals(two)


def test_clashing_and_odd_names_are_made_safe():
    from imgcls.ingest.archive import member_names

    df = pd.DataFrame({"path": ["images/1.png", "images/2.png", "images/3.jpg"],
                       "source": ["x/Photo.png", "y/photo.png", "../../evil:name?.jpg"],
                       "label": ["a", "a", "a/b"], "split": ["train"] * 3, "hash": ["1" * 20, "2" * 20, "3" * 20]})
    names = member_names(df)
    assert names[0] == "train/a/Photo.png" and names[1] == "train/a/photo-2.png"
    assert ".." not in names[2] and names[2].count("/") == 2


def test_odd_class_names_survive_the_round_trip_through_the_manifest(mk, tmp_path):
    from imgcls.teach import recipe

    import_zip(mk.zip(mk.class_members({"a": 3, "b": 3, "c": 3})), "odd")
    df = workspace.read_manifest("odd")
    for label, path in zip(["cat?", "cat!", "Men's shoes"], df.groupby("label")["path"].first()):
        journal.edit("odd", "relabel", [path], label)
    data = export_dataset("odd")
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert any(n.startswith(("train/Men's shoes/", "val/Men's shoes/", "test/Men's shoes/"))
                   for n in zf.namelist())
    (tmp_path / "odd.zip").write_bytes(data)
    code = recipe.data_code("odd").replace("DATASET = 'odd'", "DATASET = 'copy'")
    import os

    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        exec(code, {})
    finally:
        os.chdir(cwd)
    mine = workspace.read_manifest("odd").set_index("hash")[["label", "split"]].sort_index()
    theirs = workspace.read_manifest("copy").set_index("hash")[["label", "split"]].sort_index()
    assert theirs.equals(mine)
