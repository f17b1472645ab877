"""A full disk: every save is refused with workspace.DiskFull ("The disk is full: … nothing was changed"),
and an edit, an undo, a purge or a new run leaves the workspace as it was (no half journal entry, no empty
run folder). On a real 30 MB tmpfs where this machine lets us mount one (root), and everywhere by making
the Nth disk write of an operation fail: a file's (ENOSPC), or a write statement of the dataset's SQLite
store (SQLITE_FULL, as SQLite reports a full disk)."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest

from imgcls.ingest import imports as data
from imgcls.store import editlog, journal, manifeststore, workspace
from imgcls.store.workspace import DiskFull

FULL = "The disk is full: could not save"


def _snapshot(name: str) -> tuple:
    """What a refused change must leave as it was: the store's rows, journal and change counter (read
    straight from its file), manifest.csv and the dataset's files."""
    folder = workspace.dataset_dir(name)
    with manifeststore.reading(folder) as conn:
        rows = conn.execute("SELECT * FROM rows ORDER BY ord").fetchall()
        entries = conn.execute("SELECT * FROM journal ORDER BY id").fetchall()
        changes = conn.execute("SELECT value FROM meta WHERE key = 'changes'").fetchone()
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and not p.name.endswith(("-wal", "-shm")))  # SQLite's own side files come and go
    return rows, entries, changes, (folder / "manifest.csv").read_bytes(), files


def _temp_files(root: Path) -> list[str]:
    return [p.name for p in root.rglob(".*.tmp")]


# --- the Nth write fails ------------------------------------------------------------------------------


SQL_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLACE", "COMMIT")


class FailAt:
    """Make the nth disk write fail: a temp file made or data flushed with fsync (ENOSPC), or a statement
    that writes to a SQLite store, its COMMIT included (SQLITE_FULL, raised before the statement runs, as
    SQLite fails a write it has no room for)."""

    def __init__(self, monkeypatch, n: int):
        self.n, self.calls = n, 0
        real_fsync, real_mkstemp, real_connect = os.fsync, tempfile.mkstemp, sqlite3.connect
        monkeypatch.setattr(os, "fsync", lambda fd: self._step() or real_fsync(fd))
        monkeypatch.setattr(tempfile, "mkstemp", lambda *a, **k: self._step() or real_mkstemp(*a, **k))
        step = self._sql_step

        class Connection(sqlite3.Connection):
            wrote = False  # a COMMIT writes only what its transaction changed

            def execute(self, sql, *args):
                self.wrote = step(sql, self.wrote)
                return super().execute(sql, *args)

            def executemany(self, sql, *args):
                self.wrote = step(sql, self.wrote)
                return super().executemany(sql, *args)
        monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, **{**k, "factory": Connection}))

    def _step(self) -> None:
        self.calls += 1
        if self.calls == self.n:
            raise OSError(errno.ENOSPC, "No space left on device")

    def _sql_step(self, sql: str, wrote: bool) -> bool:
        """Count a statement that writes; whether its transaction has written so far."""
        verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else ""
        if verb in SQL_WRITES and (verb != "COMMIT" or wrote):
            self.calls += 1
            if self.calls == self.n:
                exc = sqlite3.OperationalError("database or disk is full")
                exc.sqlite_errorcode = sqlite3.SQLITE_FULL
                raise exc
        return verb not in ("COMMIT", "ROLLBACK") and (wrote or verb in SQL_WRITES)


@pytest.fixture
def pets(imgcls_home, mk):
    data.import_zip(mk.zip(mk.class_members({"cat": 5, "dog": 5})), "pets")
    return sorted(workspace.read_manifest("pets")["path"])


OPERATIONS = {
    "relabel": lambda paths: journal.edit("pets", "relabel", paths[:3], "fox"),
    "undo": lambda paths: journal.undo("pets"),
    "redo": lambda paths: journal.redo("pets"),
    "purge": lambda paths: journal.purge_excluded("pets"),
}


def _setup(kind: str, paths: list[str]) -> None:
    journal.edit("pets", "exclude", sorted(workspace.read_manifest("pets")["path"])[-2:])  # for the purge
    if kind == "redo":
        journal.undo("pets")


@pytest.mark.parametrize("kind", list(OPERATIONS))
def test_an_edit_failing_at_any_write_changes_nothing_or_lands_whole(pets, monkeypatch, kind):
    outcomes = []
    for n in range(1, 8):
        _setup(kind, pets)
        before = _snapshot("pets")
        entries = len(journal.history("pets"))
        with monkeypatch.context() as mp:
            FailAt(mp, n)
            try:
                OPERATIONS[kind](pets)
                outcome = "done"
            except DiskFull as exc:
                outcome = "refused"
                assert str(exc).startswith(FULL) and "nothing was changed" in str(exc), exc
        if outcome == "refused":
            assert _snapshot("pets") == before, f"write {n} failed, yet something changed"
        else:
            assert len(journal.history("pets")) == entries + 1
        assert editlog.in_step("pets") or outcome == "done"  # only a lost mark may lag; it is settled on reading
        assert _temp_files(workspace.home()) == []
        outcomes.append(outcome)
        journal.edit("pets", "restore", pets)  # back to a known state for the next n
        journal.edit("pets", "relabel", pets[:3], "cat")
    ids = [e["id"] for e in journal.history("pets")]
    assert ids == list(range(1, len(ids) + 1)), "a refused edit left an entry behind"
    assert outcomes[0] == "refused" and outcomes[-1] == "done", outcomes


def test_a_run_failing_at_any_write_leaves_no_run_folder(pets, monkeypatch):
    from imgcls.store import runs
    from imgcls.train.run import TrainConfig, prepare_run

    outcomes = []
    for n in range(1, 12):
        with monkeypatch.context() as mp:
            FailAt(mp, n)
            try:
                run_id = prepare_run(TrainConfig(dataset="pets", strategy="linear"))
                outcomes.append("done")
            except DiskFull as exc:
                assert str(exc).startswith(f"{FULL} the new run of 'pets'") or str(exc).startswith(FULL), exc
                outcomes.append("refused")
        folders = sorted(p.name for p in runs.runs_dir().iterdir())
        assert len(folders) == outcomes.count("done"), (n, outcomes, folders)
        if outcomes[-1] == "done":
            assert (runs.run_dir(run_id) / "config.json").exists() and runs.read_status(run_id)["state"] == "queued"
    assert "refused" in outcomes and outcomes[-1] == "done", outcomes


def test_disk_full_pickles_and_reads_as_one_plain_message():
    import pickle

    exc = pickle.loads(pickle.dumps(DiskFull("'datasets/pets/manifest.csv'")))
    assert str(exc).startswith("The disk is full: could not save 'datasets/pets/manifest.csv'; nothing was changed.")
    assert isinstance(exc, workspace.WorkspaceError) and exc.what == "'datasets/pets/manifest.csv'"


def test_atomic_writes_name_the_file_and_keep_the_old_content(imgcls_home, monkeypatch):
    path = workspace.home() / "settings.json"
    workspace.save_setting("active", "pets")
    with monkeypatch.context() as mp:
        FailAt(mp, 1)
        with pytest.raises(DiskFull, match="could not save 'settings.json'"):
            workspace.save_setting("active", "other")
    assert workspace.settings() == {"active": "pets"} and _temp_files(path.parent) == []


# --- a real full disk ---------------------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path, monkeypatch):
    """A 30 MB tmpfs as IMGCLS_HOME (skipped where this user may not mount one)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=30m", "tmpfs", str(mount)],
                              capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"cannot mount a small tmpfs here: {exc}")
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {done.stderr.strip()}")
    monkeypatch.setenv("IMGCLS_HOME", str(mount / "home"))
    try:
        yield mount
    finally:
        if subprocess.run(["umount", str(mount)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def _fill(mount: Path) -> Path:
    """Fill the disk to the last byte; the filler file, to delete to make room again."""
    filler = mount / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        for chunk in (1 << 20, 4096, 1):
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
    finally:
        os.close(fd)
    return filler


def test_on_a_really_full_disk_edits_undo_purge_and_runs_refuse_plainly_and_change_nothing(tiny_disk, mk):
    from imgcls.store import runs
    from imgcls.train.run import TrainConfig, prepare_run

    data.import_zip(mk.zip(mk.class_members({"cat": 20, "dog": 20})), "pets")
    paths = sorted(workspace.read_manifest("pets")["path"])
    journal.edit("pets", "exclude", paths[:2])
    runs.runs_dir()
    filler = _fill(tiny_disk)
    before = _snapshot("pets")
    with pytest.raises(DiskFull, match=r"could not save this edit \(relabel 3 images as 'fox'\); nothing was changed"):
        journal.edit("pets", "relabel", paths[5:8], "fox")
    with pytest.raises(DiskFull, match="could not save this undo"):
        journal.undo("pets")
    with pytest.raises(DiskFull, match="could not save the deletion of 2 images"):
        journal.purge_excluded("pets")
    with pytest.raises(DiskFull, match="could not save the new run of 'pets'"):
        prepare_run(TrainConfig(dataset="pets", strategy="linear"))
    assert _snapshot("pets") == before and list(runs.runs_dir().iterdir()) == []
    assert _temp_files(tiny_disk) == []
    filler.unlink()  # room again: the same edit goes through as the next entry
    assert journal.edit("pets", "relabel", paths[5:8], "fox").entry == 2
    assert [e["id"] for e in journal.history("pets")] == [1, 2]


class _KilledBeforeClose(sqlite3.Connection):
    """A store connection whose process dies as it closes after a commit: the log holds the commit,
    not yet copied into the database file."""

    committed = False

    def execute(self, sql, *args):
        result = super().execute(sql, *args)
        self.committed |= sql.strip().upper() == "COMMIT"
        return result

    def close(self):
        if self.committed:
            os.kill(os.getpid(), signal.SIGKILL)
        super().close()


def test_an_edit_a_crash_left_in_the_log_reads_whole_while_the_disk_is_full(tiny_disk, mk):
    data.import_zip(mk.zip(mk.class_members({"cat": 4, "dog": 4})), "pets")
    path = sorted(workspace.read_manifest("pets")["path"])[0]
    pid = os.fork()
    if pid == 0:
        try:
            real = sqlite3.connect
            sqlite3.connect = lambda *a, **k: real(*a, **{**k, "factory": _KilledBeforeClose})
            journal.edit("pets", "relabel", [path], "fox")
        finally:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status)
    folder = workspace.dataset_dir("pets")
    assert (folder / "manifest.sqlite-wal").stat().st_size > 0  # the commit is in the log only
    filler = _fill(tiny_disk)
    df = workspace.read_manifest("pets")
    assert df.set_index("path").loc[path, "label"] == "fox" and [e["id"] for e in journal.history("pets")] == [1]
    try:  # the log may be reused in place once its commit is copied into the file: no new room needed
        landed = journal.edit("pets", "relabel", [path], "owl").entry == 2
    except DiskFull as exc:
        assert "could not save this edit (relabel 1 image as 'owl'); nothing was changed" in str(exc), exc
        landed = False
    assert workspace.read_manifest("pets").set_index("path").loc[path, "label"] == ("owl" if landed else "fox")
    filler.unlink()
    if not landed:
        assert journal.edit("pets", "relabel", [path], "owl").entry == 2
    assert workspace.read_manifest("pets").set_index("path").loc[path, "label"] == "owl"
    assert [e["id"] for e in journal.history("pets")] == [1, 2]


def test_an_old_dataset_a_crash_left_half_made_reads_whole_while_the_disk_is_full(tiny_disk, mk):
    """A dataset of the older format whose journal is ahead of its manifest (a crash between its two
    writes) cannot be migrated on a full disk, yet reads with the edit; with room again it migrates."""
    data.import_zip(mk.zip(mk.class_members({"cat": 4, "dog": 4})), "pets")
    folder = workspace.dataset_dir("pets")
    path = sorted(workspace.read_manifest("pets")["path"])[0]
    for side in ("manifest.sqlite", "manifest.sqlite-wal", "manifest.sqlite-shm"):
        (folder / side).unlink(missing_ok=True)
    entry = {"id": 1, "time": "2026-01-01T00:00:00", "action": "relabel", "field": "label", "value": "fox",
             "source": "review", "changes": [{"path": path, "before": "cat", "after": "fox"}]}
    (folder / "journal.jsonl").write_text(json.dumps(entry) + "\n")
    (folder / "journal.applied.json").write_text('{"journal_bytes": 0}')
    csv_before = (folder / "manifest.csv").read_bytes()
    filler = _fill(tiny_disk)
    assert not editlog.in_step("pets")
    df = workspace.read_manifest("pets")  # cannot migrate, but reads the journal's state
    assert df.set_index("path").loc[path, "label"] == "fox" and [e["id"] for e in journal.history("pets")] == [1]
    assert (folder / "manifest.csv").read_bytes() == csv_before and not (folder / "manifest.sqlite").exists()
    assert _temp_files(tiny_disk) == [] and not list(folder.glob(".manifest.sqlite.migrating*"))
    filler.unlink()
    assert workspace.read_manifest("pets").set_index("path").loc[path, "label"] == "fox"
    assert editlog.in_step("pets") and (folder / "manifest.sqlite").exists()
    assert not (folder / "journal.jsonl").exists() and [e["id"] for e in journal.history("pets")] == [1]
