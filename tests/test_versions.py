"""Dataset versions: journal position and manifest digest, and the rows a run keeps of the version it saw."""

from __future__ import annotations

import io
import zipfile

import pytest

from imgcls.ingest import archive
from imgcls.store import journal, runs, versions, workspace
from imgcls.ingest.imports import import_zip

from test_train import make_dataset

pytestmark = pytest.mark.usefixtures("imgcls_home")


def test_version_follows_edits_and_undo_returns_the_same_data():
    make_dataset(per_class=4)
    first = versions.dataset_version("toy")
    assert first["journal"] == 0 and first["imports"] == 2 and first["images"] == 8
    assert first["label"] == f"as imported · {first['digest'][:8]}"
    path = workspace.read_manifest("toy")["path"].iloc[0]
    journal.edit("toy", "exclude", [path])
    edited = versions.dataset_version("toy")
    assert edited["journal"] == 1 and edited["images"] == 7
    assert edited["digest"] != first["digest"] and edited["kept"] != first["kept"]
    assert not versions.is_current("toy", first) and versions.is_current("toy", edited)
    journal.undo("toy")
    back = versions.dataset_version("toy")
    assert back["journal"] == 2 and back["label"].startswith("edit 2 · ")
    assert back["digest"] == first["digest"] and versions.is_current("toy", first)


def test_the_kept_digest_survives_an_export_and_reimport_the_full_digest_does_not():
    make_dataset(per_class=4)
    df = workspace.read_manifest("toy")
    journal.edit("toy", "exclude", [df["path"].iloc[0]])
    journal.edit("toy", "relabel", [df["path"].iloc[1]], "blue")
    data = archive.export_dataset("toy")
    import_zip(data, "copy", label_csv=zipfile.ZipFile(io.BytesIO(data)).read("manifest.csv"))
    mine, theirs = workspace.read_manifest("toy"), workspace.read_manifest("copy")
    assert list(mine["path"]) != list(theirs["path"])  # another row order, and the excluded row is gone
    assert versions.kept_digest(mine) == versions.kept_digest(theirs)
    assert versions.manifest_digest(mine) != versions.manifest_digest(theirs)


def test_canonical_rows_drop_excluded_images_and_sort_by_stored_path():
    make_dataset(per_class=4)
    df = workspace.read_manifest("toy")
    journal.edit("toy", "exclude", [df["path"].iloc[3]])
    rows = versions.canonical_rows(workspace.read_manifest("toy"))
    assert list(rows["path"]) == sorted(set(df["path"]) - {df["path"].iloc[3]})
    assert not rows["excluded"].any()


def test_run_rows_of_a_run_made_before_copies_were_kept_are_the_current_kept_rows():
    make_dataset(per_class=3)
    folder = runs.runs_dir() / "20260101-000000-toy-linear-aaaa"
    folder.mkdir(parents=True)
    workspace.atomic_write_json(folder / "config.json", {"dataset": "toy"})
    journal.edit("toy", "exclude", [workspace.read_manifest("toy")["path"].iloc[0]])
    rows = versions.run_rows(folder.name)
    assert len(rows) == 5 and list(rows["path"]) == sorted(rows["path"])
    assert versions.run_version(folder.name) is None
