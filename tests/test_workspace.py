"""The on-disk workspace: names, atomic writes, manifests, rename and delete."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from imgcls.store import workspace
from imgcls.ingest.imports import import_zip
from imgcls.store.workspace import WorkspaceError

pytestmark = pytest.mark.usefixtures("imgcls_home")


def _leftovers(folder):
    return [p.name for p in folder.iterdir() if p.name.endswith(".tmp") or p.name.startswith(".")]


def test_home_follows_imgcls_home(imgcls_home):
    assert workspace.home() == imgcls_home.resolve()
    assert workspace.datasets_dir() == imgcls_home.resolve() / "datasets"
    assert workspace.cache_dir("thumbs").is_dir()


@pytest.mark.parametrize("name", ["pets", "My pets 2", "a.b-c+d_e", "猫", "Ünïcødé", "x" * 64, "  padded  "])
def test_check_name_accepts(name):
    assert workspace.check_name(name) == name.strip()


@pytest.mark.parametrize("name", ["", "   ", None, ".", "..", ".hidden", "-dash", "a/b", "a\\b", "../x",
                                  "x" * 65, "tab\tname", "new\nline", "a:b", "a*b"])
def test_check_name_refuses(name):
    with pytest.raises(WorkspaceError):
        workspace.check_name(name)


def test_atomic_writes_leave_no_temp_files(tmp_path):
    folder = tmp_path / "w"
    workspace.atomic_write_bytes(folder / "a.bin", b"\0\1\2")
    workspace.atomic_write_text(folder / "b.txt", "héllo ✓")
    workspace.atomic_write_json(folder / "c.json", {"label": "猫", "n": [1, 2]})
    workspace.atomic_write_text(folder / "b.txt", "second")  # overwrite
    assert sorted(p.name for p in folder.iterdir()) == ["a.bin", "b.txt", "c.json"]
    assert (folder / "a.bin").read_bytes() == b"\0\1\2"
    assert (folder / "b.txt").read_text(encoding="utf-8") == "second"
    assert workspace.read_json(folder / "c.json") == {"label": "猫", "n": [1, 2]}
    assert "猫" in (folder / "c.json").read_text(encoding="utf-8")
    assert workspace.read_json(folder / "missing.json", default={"x": 1}) == {"x": 1}


def test_failed_atomic_write_keeps_old_content(tmp_path, monkeypatch):
    path = tmp_path / "keep.txt"
    workspace.atomic_write_text(path, "old")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(workspace.os, "replace", broken_replace)
    with pytest.raises(OSError, match="disk full"):
        workspace.atomic_write_text(path, "new")
    monkeypatch.undo()
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def _manifest(labels):
    n = len(labels)
    return pd.DataFrame({
        "path": [f"images/{i:020d}.png" for i in range(n)], "label": labels,
        "split": ["train", "val", "test"] * (n // 3) + ["train"] * (n % 3),
        "hash": ["0" * 63 + str(i % 10) if i % 2 else f"{i}e5" for i in range(n)],
        "width": [32] * n, "height": [24] * n, "excluded": [i % 4 == 0 for i in range(n)],
        "source": [f"{lab}/{i}.png" for i, lab in enumerate(labels)], "format": ["PNG"] * n, "bytes": [100] * n,
    })


def test_manifest_round_trip_keeps_labels_as_text():
    labels = [str(d) for d in range(10)] + ["007", "NA", "None", "nan", "1.0", "true", "", "猫", "a,b", 'say "hi"']
    df = _manifest(labels)
    folder = workspace.datasets_dir() / "digits"
    workspace.write_manifest(folder, df)
    back = workspace.read_manifest("digits")
    assert back["label"].tolist() == labels
    assert back["hash"].tolist() == df["hash"].tolist()
    assert back["excluded"].tolist() == df["excluded"].tolist()
    assert back["excluded"].dtype == bool
    assert back["width"].tolist() == [32] * len(labels)
    assert list(back.columns) == workspace.MANIFEST_COLUMNS
    assert workspace.read_manifest(folder)["label"].tolist() == labels
    assert not _leftovers(folder)


def test_read_manifest_of_missing_dataset():
    with pytest.raises(WorkspaceError, match="no dataset 'ghost'"):
        workspace.read_manifest("ghost")


def test_list_datasets_ignores_staging_and_incomplete_folders():
    root = workspace.datasets_dir()
    for name in ("b", "a"):
        workspace.write_manifest(root / name, _manifest(["x", "y", "z"]))
    workspace.write_manifest(root / ".import-0123456789ab", _manifest(["x"]))
    workspace.write_manifest(root / ".deleting-c-123", _manifest(["x"]))
    (root / "no-manifest").mkdir()
    (root / "stray.txt").write_text("x")
    assert workspace.list_datasets() == ["a", "b"]
    assert workspace.dataset_exists("a")
    assert not workspace.dataset_exists("no-manifest")
    assert not workspace.dataset_exists(".import-0123456789ab")
    assert not workspace.dataset_exists("../a")


def test_rename_and_refuse_clash(mk):
    import_zip(mk.zip(mk.class_members({"a": 2, "b": 2})), "one")
    import_zip(mk.zip(mk.class_members({"a": 2, "b": 2}, start=10)), "two")
    before = workspace.read_manifest("two")
    with pytest.raises(WorkspaceError, match="already exists"):
        workspace.rename_dataset("one", "two")
    assert workspace.list_datasets() == ["one", "two"]
    assert workspace.read_manifest("two").equals(before)
    assert workspace.rename_dataset("one", "  three ") == "three"
    assert workspace.list_datasets() == ["three", "two"]
    assert len(workspace.read_manifest("three")) == 4
    with pytest.raises(WorkspaceError, match="no dataset 'one'"):
        workspace.rename_dataset("one", "four")
    with pytest.raises(WorkspaceError, match="cannot be a dataset name"):
        workspace.rename_dataset("three", "../elsewhere")
    assert workspace.list_datasets() == ["three", "two"]


def test_delete_dataset(mk):
    import_zip(mk.zip(mk.class_members({"a": 2, "b": 2})), "gone")
    import_zip(mk.zip(mk.class_members({"a": 2, "b": 2}, start=10)), "kept")
    workspace.delete_dataset("gone")
    assert workspace.list_datasets() == ["kept"]
    assert sorted(os.listdir(workspace.datasets_dir())) == ["kept"]  # nothing moved aside is left
    with pytest.raises(WorkspaceError, match="no dataset 'gone'"):
        workspace.delete_dataset("gone")
    assert len(workspace.read_manifest("kept")) == 4


def test_settings_persist():
    assert workspace.settings() == {}
    workspace.save_setting("active_dataset", "猫")
    workspace.save_setting("theme", "dark")
    assert workspace.settings() == {"active_dataset": "猫", "theme": "dark"}
    assert not _leftovers(workspace.home())


def test_import_leaves_no_temp_files(mk):
    import_zip(mk.zip(mk.class_members({"a": 3, "b": 3})), "clean")
    import_zip(mk.zip(mk.class_members({"c": 3}, start=20)), "clean", add=True)
    folder = workspace.dataset_dir("clean")
    assert sorted(p.name for p in folder.iterdir()) == ["images", "imports.jsonl", "manifest.csv", "manifest.sqlite"]
    assert not _leftovers(folder / "images")
    assert sorted(os.listdir(workspace.datasets_dir())) == ["clean"]


@pytest.mark.parametrize("key", ["", ".", "..", ".hidden", "a/b", "a\\b", "../up"])
def test_keyed_folders_refuse_keys_that_leave_them(key):
    from imgcls.lab import experiments
    from imgcls.store import runs

    assert not workspace.is_key(key)
    for folder_of, what in ((runs.run_dir, "a run id"), (experiments.exp_dir, "an experiment id")):
        with pytest.raises(WorkspaceError, match=f"is not {what}"):
            folder_of(key)


def test_keyed_folders_sit_in_their_workspace_folder(imgcls_home):
    from imgcls.lab import experiments
    from imgcls.store import runs

    assert workspace.is_key("20261127-140203-shapes-linear-3f2a")
    assert runs.run_dir("r1") == workspace.home() / "runs" / "r1" and (workspace.home() / "runs").is_dir()
    assert experiments.exp_dir("e1") == workspace.home() / "experiments" / "e1"
    assert workspace.cache_dir("thumbs") == workspace.home() / "cache" / "thumbs"
    assert workspace.cache_dir("thumbs").is_dir() and workspace.datasets_dir().is_dir()
