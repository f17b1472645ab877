"""The dataset store: an edit writes only the rows it changes (counted in SQL, not timed), older datasets
migrate from manifest.csv, a kill -9 mid-edit leaves the edit whole or absent, the CSV export equals the
store, digests stay those of the same rows, and the paging reads answer as pandas would."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import pandas as pd
import pytest

from imgcls.store import editlog, journal, manifestquery, manifeststore as store, rowdigest, versions, workspace

LABELS = ("cat", "dog", "fox", "owl")
FIXTURE = Path(__file__).parent / "fixtures" / "workspace-0.1"

pytestmark = pytest.mark.usefixtures("imgcls_home")


def _rows(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "path": [f"images/r{i:06d}.png" for i in range(n)], "label": [LABELS[i % 4] for i in range(n)],
        "split": [workspace.SPLITS[i % 3] for i in range(n)], "hash": [f"{i:064x}" for i in range(n)],
        "width": [8 + i % 3 for i in range(n)], "height": 8, "excluded": [i % 10 == 9 for i in range(n)],
        "source": [f"photos/img_{i:06d}.jpg" for i in range(n)], "format": "PNG", "bytes": 70, "note": ""})


def _dataset(name: str, n: int) -> pd.DataFrame:
    df = _rows(n)
    workspace.write_manifest(workspace.datasets_dir() / name, df)
    return df


def _writes(fn) -> tuple[list[str], int]:
    """The SQL statements that change something while `fn` runs, and the rows the edit touched."""
    seen: list[str] = []
    with store.tracing(seen.append):
        fn()
    writes = [s for s in seen if s.split()[0].upper() in ("INSERT", "UPDATE", "DELETE", "REPLACE")]
    shapes = [re.sub(r"\b\d+\b", "N", re.sub(r"'(?:[^']|'')*'", "?", s)) for s in writes]  # values aside
    return shapes, sum(s.upper().startswith("UPDATE ROWS") for s in writes)


def _killed_at(monkeypatch, owner, name: str, action) -> int:
    """Run `action` in a forked child that kill -9s itself when it reaches `owner.name`; the child's status."""
    pid = os.fork()
    if pid == 0:
        try:
            monkeypatch.setattr(owner, name, lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL))
            action()
        finally:
            os._exit(1)
    return os.waitpid(pid, 0)[1]


def test_an_edit_writes_the_same_statements_at_any_size():
    costs = {}
    for n in (200, 5000):
        _dataset(f"d{n}", n)
        name, path = f"d{n}", "images/r000005.png"
        costs[n] = [_writes(lambda: journal.edit(name, "relabel", [path], "emu")),
                    _writes(lambda: journal.undo(name)),
                    _writes(lambda: journal.redo(name)),
                    _writes(lambda: journal.edit(name, "note", [path, "images/r000006.png"], "blurry"))]
    assert costs[200] == costs[5000], costs
    edit_writes, updated = costs[5000][0]
    assert updated == 1 and len(edit_writes) == 3, edit_writes  # the row, the journal entry, the counter
    assert not any("manifest.csv" in s for s in edit_writes)


def test_undo_and_redo_parse_only_the_entries_they_act_on(monkeypatch):
    import json

    _dataset("d", 3000)
    paths = [f"images/r{i:06d}.png" for i in range(3000)]
    journal.edit("d", "relabel", paths, "emu")  # one entry naming every image
    journal.edit("d", "note", paths[:5], "blurry")
    journal.edit("d", "exclude", paths[5:7])
    journal.undo("d")
    parsed = []
    real = json.loads
    monkeypatch.setattr(store.json, "loads", lambda text, *a, **k: (parsed.append(len(text)), real(text, *a, **k))[1])
    nxt = journal.pending("d")
    assert nxt["undo"]["action"] == "note" and nxt["redo"]["action"] == "exclude"
    assert len(parsed) == 2 and max(parsed) < 2000  # the two entries shown, not the 3,000-image one
    parsed.clear()
    journal.undo("d")  # the note goes; only its entry is read
    assert len(parsed) == 1 and journal.pending("d")["undo"]["action"] == "relabel"
    assert manifestquery.count_rows("d", label="emu") == 3000
    assert [e["action"] for e in journal.latest("d", 2)[0]] == ["undo", "undo"] and journal.latest("d", 2)[1] == 5


def _whole_fingerprint(name: str) -> str:
    """The fingerprint recounted from every row (the stored one dropped first)."""
    with store.reading(name) as conn:
        conn.execute("DELETE FROM meta WHERE key = 'fingerprint'")
    return rowdigest.fingerprint(name)


def test_the_fingerprint_follows_each_edit_as_a_whole_recount_would():
    _dataset("d", 400)
    paths = [f"images/r{i:06d}.png" for i in range(400)]
    first = rowdigest.fingerprint("d")
    assert first == _whole_fingerprint("d") and len(first) == 64
    after = []
    for step in (lambda: journal.edit("d", "relabel", paths[:3], "emu"), lambda: journal.edit("d", "exclude", paths[3:9]),
                 lambda: journal.edit("d", "move", paths[9:12], "test"), lambda: journal.undo("d"),
                 lambda: journal.redo("d"), lambda: journal.purge_excluded("d")):
        step()
        after.append(rowdigest.fingerprint("d"))  # the stored value, moved on by the edit itself
        assert after[-1] == _whole_fingerprint("d")
    relabel, exclude, move, undo, redo, purge = after
    assert len({first, relabel, exclude, move, purge}) == 5 and undo == exclude and redo == move
    before_note = rowdigest.fingerprint("d")
    journal.edit("d", "note", paths[20:22], "blurry")  # not a field the fingerprint covers
    assert rowdigest.fingerprint("d") == before_note
    journal.edit("d", "relabel", paths[30:31], "emu")
    journal.undo("d")  # the same rows again: the same fingerprint
    assert rowdigest.fingerprint("d") == before_note == _whole_fingerprint("d")


def test_an_edit_keeps_the_fingerprint_with_the_same_statements_at_any_size():
    costs = {}
    for n in (200, 5000):
        _dataset(f"f{n}", n)
        rowdigest.fingerprint(f"f{n}")  # stored now: each edit keeps it up to date
        costs[n] = _writes(lambda: journal.edit(f"f{n}", "relabel", ["images/r000005.png"], "emu"))
    assert costs[200] == costs[5000] and len(costs[5000][0]) == 4, costs  # row, entry, fingerprint, counter


def test_an_edit_leaves_manifest_csv_unwritten_until_the_table_is_read_whole():
    _dataset("d", 50)
    folder = workspace.dataset_dir("d")
    before = (folder / "manifest.csv").read_bytes()
    mtime = (folder / "manifest.csv").stat().st_mtime_ns
    journal.edit("d", "relabel", ["images/r000001.png"], "emu")
    assert (folder / "manifest.csv").read_bytes() == before  # only the store was written
    assert (folder / "manifest.csv").stat().st_mtime_ns > mtime  # but stat-keyed caches see a change
    df = workspace.read_manifest("d")  # a run starting, a health check, a download: exported now
    exported = workspace.load_manifest_file(folder)
    pd.testing.assert_frame_equal(exported, df)
    assert exported.set_index("path").at["images/r000001.png", "label"] == "emu"


def test_csv_export_equals_the_store_after_edits_undo_and_purge():
    _dataset("d", 300)
    journal.edit("d", "relabel", [f"images/r{i:06d}.png" for i in range(0, 40)], "emu")
    journal.edit("d", "move", ["images/r000003.png"], "test")
    journal.undo("d")
    journal.edit("d", "note", ["images/r000004.png"], 'commas, "quotes" and\na line break')
    journal.edit("d", "exclude", ["images/r000010.png"])
    journal.purge_excluded("d")  # rows go: the export follows at once
    folder = workspace.dataset_dir("d")
    exported = workspace.load_manifest_file(folder)
    assert len(exported) == 300 - 31 and manifestquery.count_rows("d") == len(exported)
    pd.testing.assert_frame_equal(exported, store.read_all(folder, export=False))
    assert editlog.in_step("d")


def test_digests_are_those_of_the_same_rows():
    df = _dataset("d", 400)
    assert rowdigest.digest("d") == versions.manifest_digest(df) == versions.current_digest("d")
    version = versions.dataset_version("d")
    journal.edit("d", "relabel", ["images/r000002.png"], "emu")
    assert versions.current_digest("d") == versions.manifest_digest(workspace.read_manifest("d")) != version["digest"]
    assert not versions.is_current("d", version)
    journal.undo("d")
    assert versions.is_current("d", version)  # the same rows again: the same version
    assert versions.dataset_version("d")["journal"] == 2


def test_an_older_dataset_migrates_with_its_journal_and_keeps_its_versions(imgcls_home):
    shutil.copytree(FIXTURE / "datasets", imgcls_home / "datasets")
    folder = workspace.dataset_dir("tiny")
    legacy = workspace.load_manifest_file(folder)
    old_entries = workspace.read_jsonl(folder / "journal.jsonl")
    old_digest = versions.manifest_digest(legacy)
    assert not (folder / "manifest.sqlite").exists()
    df = workspace.read_manifest("tiny")  # first open migrates
    assert (folder / "manifest.sqlite").exists() and not (folder / "journal.jsonl").exists()
    pd.testing.assert_frame_equal(df, legacy)
    assert journal.history("tiny") == old_entries
    assert versions.current_digest("tiny") == old_digest
    report = workspace.read_json(folder / "health.json") or {}
    recorded = (report.get("version") or {}).get("digest") or report.get("manifest_digest")
    if recorded:
        assert versions.is_current("tiny", {"digest": recorded}) == (recorded == old_digest)
    if old_entries:  # the migrated journal undoes as before
        assert journal.undo("tiny") is not None


def test_a_migration_cut_short_leaves_the_old_files_and_runs_again(imgcls_home, monkeypatch):
    shutil.copytree(FIXTURE / "datasets", imgcls_home / "datasets")
    folder = workspace.dataset_dir("tiny")
    legacy = workspace.load_manifest_file(folder)
    # killed just before the new store would be renamed into place
    status = _killed_at(monkeypatch, os, "replace", lambda: workspace.read_manifest("tiny"))
    assert os.WIFSIGNALED(status)
    assert not (folder / "manifest.sqlite").exists() and (folder / "journal.jsonl").exists()
    pd.testing.assert_frame_equal(workspace.read_manifest("tiny"), legacy)
    assert not list(folder.glob(".manifest.sqlite.migrating*"))


def test_an_old_journal_ahead_of_its_manifest_is_applied_when_migrating():
    df = _rows(20)
    folder = workspace.datasets_dir() / "old"
    folder.mkdir(parents=True)
    df.to_csv(folder / "manifest.csv", index=False)  # the older format, written as it used to be
    entry = {"id": 1, "time": "2025-01-01T00:00:00", "action": "relabel", "field": "label", "value": "emu",
             "source": "review", "changes": [{"path": "images/r000001.png", "before": "dog", "after": "emu"}]}
    workspace.atomic_write_text(folder / "journal.jsonl", __import__("json").dumps(entry) + "\n")
    assert not editlog.in_step("old")  # its manifest was never brought up to the entry
    assert workspace.read_manifest("old").set_index("path").at["images/r000001.png", "label"] == "emu"
    assert editlog.in_step("old") and [e["id"] for e in journal.history("old")] == [1]
    assert journal.undo("old").changed == ["images/r000001.png"]


@pytest.mark.parametrize("where", ["before the transaction commits", "after it commits"])
def test_kill_9_mid_edit_leaves_the_edit_whole_or_absent(monkeypatch, where):
    _dataset("d", 500)
    paths = [f"images/r{i:06d}.png" for i in range(100, 160)]
    before = workspace.read_manifest("d")
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read)
            if where == "before the transaction commits":  # the rows are updated, the COMMIT never runs
                real = store.set_values
                monkeypatch.setattr(store, "set_values",
                                    lambda *a: (real(*a), os.kill(os.getpid(), signal.SIGKILL)))
            else:
                monkeypatch.setattr(store, "touch_csv", lambda *a: os.kill(os.getpid(), signal.SIGKILL))
            journal.edit("d", "relabel", paths, "emu")
            os.write(write, b"returned")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.read(read, 10) == b""
    os.close(read)
    after = workspace.read_manifest("d")
    entries = journal.history("d")
    if where == "before the transaction commits":
        pd.testing.assert_frame_equal(after, before)
        assert entries == []
    else:
        assert [e["id"] for e in entries] == [1] and len(entries[0]["changes"]) == len(paths)
        assert set(after[after["label"] == "emu"]["path"]) == set(paths)
        pd.testing.assert_frame_equal(after.drop(columns="label"), before.drop(columns="label"))
    assert journal.edit("d", "note", paths[:1], "after the crash").entry == len(entries) + 1


def test_paging_queries_answer_as_pandas_does():
    df = _dataset("d", 1000)
    kept = df[~df["excluded"]]
    assert manifestquery.count_rows("d") == 1000
    assert manifestquery.count_rows("d", excluded=False) == len(kept)
    assert manifestquery.count_rows("d", label="fox", split="val", excluded=False) == \
        len(kept[(kept["label"] == "fox") & (kept["split"] == "val")])
    counts = {(lb, sp, ex): n for lb, sp, ex, n in manifestquery.class_counts("d")}
    assert counts == {k: int(v) for k, v in df.groupby(["label", "split", "excluded"]).size().items()}
    page = manifestquery.page_rows("d", 48, 24, {"label": "owl", "excluded": False})
    expected = kept[kept["label"] == "owl"].iloc[48:72].reset_index(drop=True)
    pd.testing.assert_frame_equal(page, expected)
    by_path = manifestquery.page_rows("d", 0, 5, order="path", filters={"split": "test"})
    assert list(by_path["path"]) == sorted(df[df["split"] == "test"]["path"])[:5]
    wanted = ["images/r000900.png", "gone.png", "images/r000003.png"]
    assert list(manifestquery.rows_by_paths("d", wanted)["path"]) == ["images/r000900.png", "images/r000003.png"]
    subset = {"paths": [f"images/r{i:06d}.png" for i in range(0, 1000, 7)], "not_paths": ["images/r000007.png"]}
    assert manifestquery.count_rows("d", **subset) == len(range(0, 1000, 7)) - 1
    assert manifestquery.labels("d") == sorted(LABELS)
    sizes = {(w, h): n for w, h, n in manifestquery.size_counts("d")}
    assert sizes == {k: int(v) for k, v in kept.groupby(["width", "height"]).size().items()}


def test_a_purge_killed_before_its_files_go_deletes_them_on_the_next_open(mk, monkeypatch):
    from imgcls.ingest import imports

    imports.import_files([(f"{i}.png", mk.png(i)) for i in range(4)], "p", "cat")
    folder = workspace.dataset_dir("p")
    gone = workspace.read_manifest("p")["path"].iloc[0]
    journal.edit("p", "exclude", [gone])
    status = _killed_at(monkeypatch, store, "remove_doomed", lambda: journal.purge_excluded("p"))
    assert os.WIFSIGNALED(status) and (folder / gone).exists() and not editlog.in_step("p")
    assert gone not in set(workspace.read_manifest("p")["path"])
    assert not (folder / gone).exists() and editlog.in_step("p")


def test_a_store_with_commits_in_its_log_only_reads_whole_without_writing(tmp_path):
    """The full-disk fallback: a store whose commits are still in its log (the writer was killed before it
    closed the store) reads from a copy in memory exactly as SQLite reads it, its side files aside."""
    import sqlite3

    from imgcls.store import walread

    _dataset("logged", 300)
    folder = workspace.dataset_dir("logged")
    pid = os.fork()
    if pid == 0:
        try:
            real = sqlite3.connect
            hold = real(folder / store.DB)  # an open reader keeps SQLite from folding the log in on close
            hold.execute("BEGIN")
            hold.execute("SELECT COUNT(*) FROM rows").fetchall()
            journal.edit("logged", "relabel", ["images/r000005.png"], "emu")
            journal.edit("logged", "exclude", ["images/r000006.png"])
            os.kill(os.getpid(), signal.SIGKILL)
        finally:
            os._exit(1)
    os.waitpid(pid, 0)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in (store.DB, f"{store.DB}-wal"):  # not the WAL index: as if it could not be made
        shutil.copy(folder / name, copy / name)
    assert (copy / f"{store.DB}-wal").stat().st_size > 0
    conn = walread.open_in_memory(copy / store.DB)
    got = conn.execute("SELECT * FROM rows ORDER BY ord").fetchall()
    ids = [i for (i,) in conn.execute("SELECT id FROM journal ORDER BY id")]
    conn.close()
    with store.reading(folder) as real_conn:
        want = real_conn.execute("SELECT * FROM rows ORDER BY ord").fetchall()
    assert got == want and ids == [1, 2]
    plain = sqlite3.connect(f"file:{copy / store.DB}?immutable=1", uri=True)  # the file alone lags the log
    assert plain.execute("SELECT COUNT(*) FROM journal").fetchone()[0] == 0
