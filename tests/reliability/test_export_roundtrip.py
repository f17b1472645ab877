"""The cleaned-dataset ZIP imports back as it was: labels, splits, exclusions, notes and file names.

Class names that a folder cannot carry as they are (a colon, a trailing dot, twins that differ only in
case on Windows and macOS), or that look like something else to the importer (a split, a number), are the
point: the export's manifest.csv, not its folder names, says what each image was.
"""

from __future__ import annotations

import io
import zipfile

import pandas as pd
import pytest

from imgcls.ingest import archive, imports as data
from imgcls.store import journal, workspace

pytestmark = pytest.mark.usefixtures("imgcls_home")

CLASSES = ["ice cream", "crème brûlée", "0", "train", "Cat", "cat", "ratio 4:3 v1.2."]
COLUMNS = list(workspace.MANIFEST_COLUMNS)


def _awkward_dataset(mk) -> pd.DataFrame:
    """A dataset of the awkward classes, imported from a ZIP, with one edit of every kind on it."""
    members, seed = [], 0
    for label in CLASSES:
        # the twins 'Cat' and 'cat' hold files of the same names: the export must keep them apart
        for i in range(3):
            members.append((f"{label}/photo {i}.png", mk.png(seed)))
            seed += 1
    data.import_zip(mk.zip(members), "awkward", source="awkward.zip")
    df = workspace.read_manifest("awkward")
    paths = {label: list(df.loc[df["label"] == label, "path"]) for label in CLASSES}
    journal.edit("awkward", "relabel", paths["ice cream"][:1], "cat")
    journal.edit("awkward", "exclude", paths["0"][:1])
    journal.edit("awkward", "note", paths["train"][:1], 'blurry, "retake"; see *row 3*')
    journal.edit("awkward", "move", paths["Cat"][:1] + paths["cat"][:1], "test")
    journal.edit("awkward", "move", paths["crème brûlée"][:1], "val")
    return workspace.read_manifest("awkward")


def _by_hash(df: pd.DataFrame) -> pd.DataFrame:
    """Rows keyed by content, in a fixed order, with every manifest column."""
    return df[COLUMNS].sort_values("hash").reset_index(drop=True)


def _assert_same(expected: pd.DataFrame, got: pd.DataFrame) -> None:
    expected, got = _by_hash(expected), _by_hash(got)
    assert list(got["hash"]) == list(expected["hash"])
    diff = expected.compare(got)
    assert diff.empty, f"re-imported rows differ:\n{diff.to_string()}"


def test_the_cleaned_zip_imports_back_as_it_was(mk):
    original = _awkward_dataset(mk)
    assert original["excluded"].sum() == 1 and (original["note"] != "").sum() == 1
    report = data.import_zip(archive.export_dataset("awkward"), "back", source="awkward-clean.zip")
    assert not report.skipped_files  # manifest.csv and journal.csv are read, not reported as odd files
    back = workspace.read_manifest("back")
    # the cleaned export leaves excluded images out; everything else is exactly as it was
    _assert_same(original[~original["excluded"]], back)
    assert set(back["label"]) == set(CLASSES)


def test_with_excluded_images_the_exclusions_come_back_too(mk):
    original = _awkward_dataset(mk)
    data.import_zip(archive.export_dataset("awkward", include_excluded=True), "back")
    _assert_same(original, workspace.read_manifest("back"))


def test_the_unzipped_export_imports_back_from_a_folder(mk, tmp_path):
    original = _awkward_dataset(mk)
    folder = tmp_path / "unzipped"
    with zipfile.ZipFile(io.BytesIO(archive.export_dataset("awkward", include_excluded=True))) as zf:
        zf.extractall(folder)
    data.import_folder(folder, "back")
    _assert_same(original, workspace.read_manifest("back"))


def test_images_added_to_the_export_since_are_placed_by_their_folder(mk):
    original = _awkward_dataset(mk)
    with zipfile.ZipFile(io.BytesIO(archive.export_dataset("awkward"))) as zf:
        members = [(n, zf.read(n)) for n in zf.namelist()]
    members.append(("train/Cat/new one.png", mk.png(999)))
    data.import_zip(mk.zip(members), "back")
    back = workspace.read_manifest("back")
    added = back[back["source"] == "train/Cat/new one.png"]
    assert list(added["label"]) == ["Cat"] and list(added["split"]) == ["train"]
    _assert_same(original[~original["excluded"]], back[back["source"] != "train/Cat/new one.png"])


def test_a_manifest_of_something_else_is_not_taken_for_an_export(mk):
    members = mk.class_members({"cats": 3, "dogs": 3})
    members.append(("manifest.csv", b"file,label,split\nelsewhere/x.png,birds,train\n"))
    report = data.import_zip(mk.zip(members), "plain")
    assert report.class_counts == {"cats": 3, "dogs": 3}
