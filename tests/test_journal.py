"""Edits to a dataset: relabel, exclude, move, note; the journal; undo and redo; purge."""

from __future__ import annotations

import threading

import pytest

from imgcls.store import journal, workspace
from imgcls.ingest.imports import import_zip
from imgcls.store.journal import EditRefused

pytestmark = pytest.mark.usefixtures("imgcls_home")


@pytest.fixture
def ds(mk):
    import_zip(mk.zip(mk.class_members({"a": 6, "b": 6})), "s")
    return "s"


def _row(name, path):
    df = workspace.read_manifest(name)
    return df[df["path"] == path].iloc[0]


def test_relabel_changes_manifest_and_journal(ds):
    path = workspace.read_manifest(ds)["path"].iloc[0]
    res = journal.edit(ds, "relabel", [path], "  blob ")
    assert res.changed == [path] and res.entry == 1
    assert _row(ds, path)["label"] == "blob"
    entry = journal.history(ds)[-1]
    assert entry["action"] == "relabel" and entry["value"] == "blob"
    assert entry["changes"][0]["path"] == path and entry["changes"][0]["after"] == "blob"
    assert "Relabelled 1 image" in res.message


def test_undo_and_redo_restore_every_field(ds):
    df = workspace.read_manifest(ds)
    paths = list(df["path"][:3])
    before = df.set_index("path").loc[paths, ["label", "split", "excluded", "note"]].copy()
    journal.edit(ds, "relabel", paths, "blob")
    journal.edit(ds, "exclude", paths[:1])
    journal.edit(ds, "move", paths[1:], "test" if before["split"].iloc[1] != "test" else "train")
    journal.edit(ds, "note", paths[2:], "looks blurry")
    for _ in range(4):
        assert journal.undo(ds) is not None
    assert journal.undo(ds) is None
    after = workspace.read_manifest(ds).set_index("path").loc[paths, ["label", "split", "excluded", "note"]]
    assert after.equals(before)
    assert journal.redo(ds).action == "redo"
    assert (workspace.read_manifest(ds).set_index("path").loc[paths, "label"] == "blob").all()
    assert journal.pending(ds)["undo"]["action"] == "relabel"


def test_new_edit_clears_redo(ds):
    path = workspace.read_manifest(ds)["path"].iloc[0]
    journal.edit(ds, "exclude", [path])
    journal.undo(ds)
    assert journal.pending(ds)["redo"] is not None
    journal.edit(ds, "note", [path], "x")
    assert journal.pending(ds)["redo"] is None
    assert journal.redo(ds) is None


def test_undo_leaves_images_edited_again_elsewhere(ds):
    path = workspace.read_manifest(ds)["path"].iloc[0]
    journal.edit(ds, "relabel", [path], "x1")
    journal.edit(ds, "relabel", [path], "x2")
    # undo the second, then undo the first: the image goes back to its original label
    original = journal.history(ds)[0]["changes"][0]["before"]
    journal.undo(ds)
    journal.undo(ds)
    assert _row(ds, path)["label"] == original


def test_undo_skips_an_image_changed_since(ds):
    path = workspace.read_manifest(ds)["path"].iloc[0]
    journal.edit(ds, "relabel", [path], "zz")
    df = workspace.read_manifest(ds)  # a change that bypassed the journal (e.g. an import's rewrite)
    df.loc[df["path"] == path, "label"] = "other"
    workspace.write_manifest(workspace.dataset_dir(ds), df)
    res = journal.undo(ds)
    assert res.skipped == [path] and not res.changed
    assert _row(ds, path)["label"] == "other"


@pytest.mark.parametrize("label", ["", "   ", None, "a/b", "a\\b", "..", "tab\tx", "x" * 65])
def test_bad_labels_are_refused_with_a_message(ds, label):
    path = workspace.read_manifest(ds)["path"].iloc[0]
    with pytest.raises(EditRefused) as info:
        journal.edit(ds, "relabel", [path], label)
    assert str(info.value)
    assert journal.history(ds) == []


def test_unknown_split_is_refused(ds):
    with pytest.raises(EditRefused, match="not a split"):
        journal.edit(ds, "move", ["x"], "holdout")


def test_missing_images_are_reported_not_crashed_on(ds):
    path = workspace.read_manifest(ds)["path"].iloc[0]
    res = journal.edit(ds, "exclude", [path, "images/gone.png"])
    assert res.changed == [path] and res.missing == ["images/gone.png"]
    assert "no longer in the dataset: images/gone.png" in res.message
    res = journal.edit(ds, "exclude", [path])
    assert res.unchanged == [path] and res.entry is None


def test_two_writers_at_once_lose_nothing(ds):
    paths = list(workspace.read_manifest(ds)["path"])
    half = len(paths) // 2

    def work(chunk, label):
        for p in chunk:
            journal.edit(ds, "relabel", [p], label)

    threads = [threading.Thread(target=work, args=(paths[:half], "left")),
               threading.Thread(target=work, args=(paths[half:], "right"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    df = workspace.read_manifest(ds).set_index("path")
    assert (df.loc[paths[:half], "label"] == "left").all()
    assert (df.loc[paths[half:], "label"] == "right").all()
    ids = [e["id"] for e in journal.history(ds)]
    assert sorted(ids) == list(range(1, len(paths) + 1))


def test_purge_removes_only_excluded_files(ds):
    df = workspace.read_manifest(ds)
    folder = workspace.dataset_dir(ds)
    gone, kept = df["path"].iloc[0], df["path"].iloc[1]
    journal.edit(ds, "exclude", [gone])
    res = journal.purge_excluded(ds)
    assert res.changed == [gone]
    assert not (folder / gone).exists() and (folder / kept).exists()
    assert gone not in set(workspace.read_manifest(ds)["path"])
    assert journal.pending(ds) == {"undo": None, "redo": None}  # nothing before a purge can come back


def test_journal_csv_has_one_row_per_image(ds):
    paths = list(workspace.read_manifest(ds)["path"][:2])
    journal.edit(ds, "relabel", paths, "z")
    lines = journal.to_csv(ds).strip().splitlines()
    assert lines[0].startswith("entry,time,action")
    assert len(lines) == 3 and all(",relabel," in line for line in lines[1:])


def test_old_manifest_without_note_column_reads(ds):
    folder = workspace.dataset_dir(ds)
    text = (folder / "manifest.csv").read_text().splitlines()
    stripped = [line.rsplit(",", 1)[0] for line in text]
    (folder / "manifest.csv").write_text("\n".join(stripped) + "\n")
    (folder / "manifest.sqlite").unlink()  # a dataset of the older format: only its manifest.csv
    df = workspace.read_manifest(ds)
    assert (df["note"] == "").all()
    journal.edit(ds, "note", [df["path"].iloc[0]], "hello")
    assert _row(ds, df["path"].iloc[0])["note"] == "hello"


def test_purge_takes_only_the_confirmed_images(ds):
    a, b = list(workspace.read_manifest(ds)["path"][:2])
    journal.edit(ds, "exclude", [a])
    journal.edit(ds, "exclude", [b])  # excluded after the user confirmed the purge of a
    assert journal.purge_excluded(ds, [a]).changed == [a]
    df = workspace.read_manifest(ds)
    assert a not in set(df["path"]) and df.set_index("path").loc[b, "excluded"]


def test_undo_refuses_when_another_edit_became_the_latest(ds):
    a, b = list(workspace.read_manifest(ds)["path"][:2])
    first = journal.edit(ds, "exclude", [a]).entry
    journal.edit(ds, "exclude", [b])  # another tab
    with pytest.raises(EditRefused, match="Another edit was made meanwhile"):
        journal.undo(ds, expect=first)
    assert journal.undo(ds).changed == [b]


def test_a_torn_last_line_does_not_swallow_the_next_edit(ds):
    a, b = list(workspace.read_manifest(ds)["path"][:2])
    journal.edit(ds, "exclude", [a])
    with open(journal.journal_path(ds), "a") as fh:
        fh.write('{"id": 99, "act')  # a crash mid-append
    journal.edit(ds, "exclude", [b])
    assert [e["changes"][0]["path"] for e in journal.history(ds)] == [a, b]
    assert journal.undo(ds).changed == [b]
