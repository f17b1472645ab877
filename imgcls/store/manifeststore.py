"""A dataset's rows and its edit journal in one SQLite file, so that one edit writes only the rows it changes.

`datasets/<name>/manifest.sqlite` (stdlib sqlite3, WAL mode) is the source of truth: table `rows` (the
manifest columns plus `ord`, the order rows were imported in), `journal` (one JSON entry per edit, undo,
redo or purge), `meta` (a change counter, the counter the CSV export and the digest were made at) and
`doomed` (files of a purge still to delete).

Why SQLite rather than append-only edits with periodic compaction: an edit's rows and its journal entry
commit in one transaction, so a kill -9 leaves the whole edit or nothing with no replay step to get right;
the pages' reads (counts, class counts, one page of rows, rows by path) are indexed queries, not a pass
over the table; and in WAL mode readers never wait for a writer. An edit log would make writes as small,
but every read would fold the log over the base table, and compaction would be a second whole-table
rewrite to make crash-safe. Measured (one image relabelled, then one excluded, in a process that runs this
checkout's code): at 100k rows 1.9 s / 1.3 s with the whole manifest.csv rewritten, 53 ms / 66 ms now, as
at 1k rows (41 ms / 28 ms); what is left is mostly the fsyncs of synchronous = FULL, not the table.

`manifest.csv` stays, for people and tools, always written atomically: on import (`workspace.write_manifest`),
after a purge (rows go), and whenever the whole table is read (`workspace.read_manifest`: a run starting,
a health check, a download) while it lags the store and nobody holds the dataset's lock. After each edit
only its mtime moves on, so what keys caches on that file's stat sees the change at once.

Old datasets (manifest.csv and journal.jsonl only) are migrated on first open, under the dataset's lock:
the store is built in a temporary file and renamed into place, so a crash before the rename leaves the old
files as they were, to be migrated again; the old journal files go once the store holds their entries
(`manifestlegacy`). The pages' reads are in `manifestquery`; the rows' digest and fingerprint in `rowdigest`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sqlite3
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from imgcls.store import workspace

if TYPE_CHECKING:
    import pandas as pd

DB = "manifest.sqlite"
CSV = "manifest.csv"
COLUMNS = workspace.MANIFEST_COLUMNS
TEXT = ("path", "label", "split", "hash", "source", "format", "note")
NUMBERS = ("width", "height", "bytes")
CHUNK = 500  # paths per IN (...) query: well under SQLite's limit on bound values
SCHEMA = """
CREATE TABLE IF NOT EXISTS rows (ord INTEGER PRIMARY KEY, path TEXT NOT NULL, label TEXT, split TEXT, hash TEXT,
    width, height, excluded INTEGER NOT NULL DEFAULT 0, source TEXT, format TEXT, bytes, note TEXT);
CREATE INDEX IF NOT EXISTS rows_path ON rows(path);
CREATE INDEX IF NOT EXISTS rows_class ON rows(label, excluded, split);
CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY, entry TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value);
CREATE TABLE IF NOT EXISTS doomed (path TEXT PRIMARY KEY);
"""
_TRACERS: list = []  # functions given every SQL statement run (tests count what an edit writes)


@contextlib.contextmanager
def tracing(callback):
    """Within the block, pass every SQL statement this process runs on a store to `callback`."""
    _TRACERS.append(callback)
    try:
        yield
    finally:
        _TRACERS.remove(callback)


def _trace(statement: str) -> None:
    for callback in list(_TRACERS):
        callback(statement)


def _no_room(folder: Path | None) -> bool:
    try:
        stat = os.statvfs(folder)
    except (OSError, TypeError):
        return False
    return stat.f_bavail * stat.f_frsize < 256 * 1024


def is_full(exc: BaseException, folder: Path | None = None) -> bool:
    """Whether an SQLite error is a full disk (or quota): SQLITE_FULL, or an I/O error (a WAL index that
    could not grow) while the disk holding `folder` has no room left."""
    if not isinstance(exc, sqlite3.OperationalError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code == sqlite3.SQLITE_FULL or "disk is full" in str(exc):
        return True
    return (code is not None and code & 0xFF in (sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN)
            or "disk I/O error" in str(exc)) and _no_room(folder)


@contextlib.contextmanager
def full_as(what, folder: Path | None = None):
    """A full disk met in the block becomes DiskFull naming `what` (text, or a function giving it)."""
    try:
        yield
    except sqlite3.Error as exc:
        if is_full(exc, folder):
            raise workspace.DiskFull(what() if callable(what) else what) from exc
        raise


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=60, isolation_level=None)  # autocommit: transactions are explicit
    if _TRACERS:
        conn.set_trace_callback(_trace)
    conn.execute("PRAGMA busy_timeout = 60000")
    # FULL: each commit reaches the disk, so an edit the user was told about survives a power cut too
    conn.execute("PRAGMA synchronous = FULL")
    return conn


def folder_of(name_or_folder) -> Path:
    """A dataset's folder from its name (or the folder itself)."""
    return Path(name_or_folder) if isinstance(name_or_folder, Path) else workspace.dataset_dir(name_or_folder)


def connect(name_or_folder) -> sqlite3.Connection:
    """An open connection to a dataset's store, migrating a dataset that has only a manifest.csv first
    (one connection per call: nothing is shared across threads or forked processes)."""
    folder = folder_of(name_or_folder)
    path = folder / DB
    if not path.exists():
        if not (folder / CSV).exists():
            raise workspace.WorkspaceError(f"There is no dataset '{folder.name}' in the workspace.")
        from imgcls.store import manifestlegacy

        manifestlegacy.migrate(folder)
    return _connect(path)


@contextlib.contextmanager
def reading(name_or_folder):
    """A connection for reads, closed after the block (one consistent snapshot per statement). On a full
    disk, where SQLite cannot make the WAL index it needs to open the store, the store is read without
    writing anything: from its file alone when no log is pending, else from a copy in memory of its last
    commit; a dataset of the older format that cannot be migrated for want of room is read from its old
    files."""
    folder = folder_of(name_or_folder)
    conn = None
    try:
        conn = connect(folder)
        conn.execute("SELECT 1 FROM meta LIMIT 1").fetchall()
    except workspace.DiskFull:
        from imgcls.store import manifestlegacy

        conn = manifestlegacy.in_memory(folder)
    except sqlite3.OperationalError as exc:
        if conn is not None:
            conn.close()
        if not is_full(exc, folder):
            raise workspace.WorkspaceError(f"The dataset '{folder.name}' cannot be read: {exc}.") from exc
        conn = _read_only(folder / DB)
    try:
        yield conn
    finally:
        conn.close()


@contextlib.contextmanager
def transaction(name_or_folder, what="this change"):
    """A write transaction on the store: everything in the block commits together or not at all (a full
    disk becomes DiskFull naming `what`, text or a function giving it). The change counter moves on with
    it when the block changed anything."""
    folder = folder_of(name_or_folder)
    with full_as(what, folder):
        conn = connect(folder)
    try:
        with full_as(what, folder):
            conn.execute("BEGIN IMMEDIATE")
            try:
                start = conn.total_changes
                yield conn
                if conn.total_changes > start:
                    conn.execute("UPDATE meta SET value = value + 1 WHERE key = 'changes'")
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
    finally:
        conn.close()


def _read_only(db: Path) -> sqlite3.Connection:
    """The store opened without writing a byte (for a full disk)."""
    from imgcls.store import walread

    wal = Path(f"{db}-wal")
    if not wal.exists() or wal.stat().st_size == 0:  # every commit is in the file: read it as it stands
        return sqlite3.connect(f"file:{db}?immutable=1", uri=True)
    return walread.open_in_memory(db)


def create_store(path: Path, journal_mode: str) -> sqlite3.Connection:
    conn = _connect(path)
    conn.execute(f"PRAGMA journal_mode = {journal_mode}")
    conn.executescript(SCHEMA)
    conn.execute("INSERT OR IGNORE INTO meta VALUES ('changes', 0), ('exported', -1), ('store', ?)",
                 (uuid.uuid4().hex,))
    return conn


def _plain(value):
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _as_bool(value) -> bool:
    return value.strip().lower() in ("true", "1") if isinstance(value, str) else bool(value)


def insert_rows(conn: sqlite3.Connection, df: pd.DataFrame) -> None:
    df = df if "note" in df else df.assign(note="")
    columns = [df[c].tolist() for c in COLUMNS]
    at = COLUMNS.index("excluded")

    def records():
        for i, values in enumerate(zip(*columns)):
            values = [_plain(v) for v in values]
            values[at] = _as_bool(values[at])
            yield (i, *values)
    conn.executemany(f"INSERT INTO rows (ord, {', '.join(COLUMNS)}) VALUES ({', '.join('?' * (len(COLUMNS) + 1))})",
                     records())


def replace_rows(folder: Path, df: pd.DataFrame) -> None:
    """Replace every row of a dataset's store with `df` (an import's new manifest); the journal stays."""
    folder = Path(folder)
    if not (folder / DB).exists() and not (folder / CSV).exists():
        with workspace.saving(f"the manifest of '{folder.name}'"):
            folder.mkdir(parents=True, exist_ok=True)
        create_store(folder / DB, "WAL").close()
    with transaction(folder, f"the manifest of '{folder.name}'") as conn:
        conn.execute("DELETE FROM rows")
        conn.execute("DELETE FROM meta WHERE key = 'fingerprint'")  # made again, whole, when next asked
        insert_rows(conn, df)


def meta_value(conn: sqlite3.Connection, key: str):
    row = conn.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
    return row[0] if row else None


def stamp(name_or_folder) -> tuple[str, str, int]:
    """(folder, store id, change counter): a key that changes with every change to the dataset's rows."""
    folder = folder_of(name_or_folder)
    with reading(folder) as conn:
        return str(folder), str(meta_value(conn, "store")), int(meta_value(conn, "changes"))


def as_frame(cursor, columns: list[str]) -> pd.DataFrame:
    import pandas as pd

    df = pd.DataFrame(list(cursor), columns=columns)
    for col in columns:
        if col in TEXT:
            df[col] = df[col].fillna("").astype(str)  # NULL as ""
        elif col == "excluded":
            df[col] = df[col].astype(bool)
        elif col in NUMBERS and len(df) and df[col].map(lambda v: isinstance(v, int)).all():
            df[col] = df[col].astype("int64")
    return df


def select_sql(columns=None) -> tuple[str, list[str]]:
    columns = list(columns or COLUMNS)
    return "SELECT " + ", ".join(columns) + " FROM rows", columns


def read_all(name_or_folder, export: bool = True) -> pd.DataFrame:
    """Every row in import order, as `workspace.read_manifest` returns them; re-exports manifest.csv when it
    lags the store and nobody holds the dataset's lock (the table is read whole anyway)."""
    folder = folder_of(name_or_folder)
    with reading(folder) as conn:
        conn.execute("BEGIN")  # rows and counter from one snapshot
        sql, cols = select_sql()
        df = as_frame(conn.execute(sql + " ORDER BY ord"), cols)
        changes, exported = int(meta_value(conn, "changes")), int(meta_value(conn, "exported"))
        conn.execute("COMMIT")
    if export and exported != changes and folder.parent == workspace.datasets_dir():
        with workspace.dataset_lock_if_free(folder.name) as free:
            if free and stamp(folder)[2] == changes:  # nobody edits while the lock is held: this is the latest
                _write_csv(folder, df, changes)
    return df


def _write_csv(folder: Path, df: pd.DataFrame, changes: int) -> None:
    try:
        workspace.atomic_write_text(folder / CSV, df[COLUMNS].to_csv(index=False))
    except workspace.DiskFull:
        return  # only the export: the store holds every edit, and the next full read tries again
    with contextlib.suppress(sqlite3.Error), reading(folder) as conn:
        conn.execute("UPDATE meta SET value = ? WHERE key = 'exported' AND CAST(value AS INTEGER) < ?",
                     (changes, changes))


def export_csv(name_or_folder, force: bool = False) -> Path:
    """Write manifest.csv from the store now when it lags (or always, with force); its path."""
    folder = folder_of(name_or_folder)
    with reading(folder) as conn:
        changes, exported = int(meta_value(conn, "changes")), int(meta_value(conn, "exported"))
    if force or exported != changes:
        with workspace.dataset_lock(folder.name) if folder.parent == workspace.datasets_dir() \
                else contextlib.nullcontext():
            changes = stamp(folder)[2]
            _write_csv(folder, read_all(folder, export=False), changes)
    return folder / CSV


def mark_exported(folder: Path) -> None:
    """Record that manifest.csv was just written from the store as it stands."""
    with contextlib.suppress(sqlite3.Error), reading(folder) as conn:
        conn.execute("UPDATE meta SET value = (SELECT value FROM meta WHERE key = 'changes') WHERE key = 'exported'")


def touch_csv(folder: Path) -> None:
    """Move manifest.csv's mtime on (strictly later), its content untouched: caches keyed by its stat see a
    change. An atomic replace is not needed: nothing in it is written."""
    path = Path(folder) / CSV
    with contextlib.suppress(OSError):
        old = path.stat()
        now = max(time.time_ns(), old.st_mtime_ns + 1_000)
        os.utime(path, ns=(old.st_atime_ns, now))


# --- the journal ---------------------------------------------------------------------------------------


def entries(name_or_folder) -> list[dict]:
    """The journal's entries, oldest first."""
    with reading(name_or_folder) as conn:
        return [json.loads(e) for (e,) in conn.execute("SELECT entry FROM journal ORDER BY id")]


def entry_heads(name_or_folder, conn: sqlite3.Connection | None = None) -> list[dict]:
    """Every journal entry's id, action and target, oldest first: what undo and redo need to know which entry
    is next. SQLite reads them out of the JSON, so an entry's list of changes (100,000 images for an edit of
    the whole dataset) is never parsed here."""
    with (contextlib.nullcontext(conn) if conn is not None else reading(name_or_folder)) as db:
        try:
            rows = db.execute("SELECT id, json_extract(entry, '$.action'), json_extract(entry, '$.target') "
                              "FROM journal ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # an SQLite built without its JSON functions
            rows = [(e["id"], e.get("action"), e.get("target"))
                    for e in (json.loads(t) for (t,) in db.execute("SELECT entry FROM journal ORDER BY id"))]
    return [{"id": int(i), "action": a, **({"target": int(t)} if t is not None else {})} for i, a, t in rows]


def entries_by_id(name_or_folder, ids, conn: sqlite3.Connection | None = None) -> dict[int, dict]:
    """Those journal entries, whole, by id (missing ids are left out)."""
    wanted = [int(i) for i in dict.fromkeys(ids) if i is not None]
    if not wanted:
        return {}
    with (contextlib.nullcontext(conn) if conn is not None else reading(name_or_folder)) as db:
        found = db.execute(f"SELECT entry FROM journal WHERE id IN ({', '.join('?' * len(wanted))})", wanted)
        return {int(e["id"]): e for e in (json.loads(t) for (t,) in found)}


def latest_entries(name_or_folder, last: int) -> tuple[list[dict], int]:
    """The `last` newest journal entries, oldest first, and how many entries there are in all."""
    with reading(name_or_folder) as conn:
        rows = conn.execute("SELECT entry FROM journal ORDER BY id DESC LIMIT ?", (int(last),)).fetchall()
        total = int(conn.execute("SELECT COUNT(*) FROM journal").fetchone()[0])
    return [json.loads(t) for (t,) in reversed(rows)], total


def last_entry_id(name_or_folder) -> int:
    """The id of the latest journal entry (0 when there is none)."""
    with reading(name_or_folder) as conn:
        return int(conn.execute("SELECT COALESCE(MAX(id), 0) FROM journal").fetchone()[0])


def add_entry(conn: sqlite3.Connection, entry: dict) -> None:
    """Append a journal entry inside the caller's transaction."""
    conn.execute("INSERT INTO journal VALUES (?, ?)", (int(entry["id"]), json.dumps(entry, ensure_ascii=False)))


def next_id(conn: sqlite3.Connection) -> int:
    """The id the next journal entry takes."""
    return int(conn.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM journal").fetchone()[0])


def set_values(conn: sqlite3.Connection, col: str, values: dict[str, object]) -> None:
    """Set field `col` of the rows at the given paths, inside the caller's transaction."""
    if col not in ("label", "excluded", "split", "note"):
        raise ValueError(f"'{col}' is not an editable field")
    from imgcls.store import rowdigest

    with rowdigest.kept_up(conn, list(values) if col in rowdigest.FIELDS else []):
        conn.executemany(f"UPDATE rows SET {col} = ? WHERE path = ?",
                         ((bool(v) if col == "excluded" else v, p) for p, v in values.items()))


def delete_rows(conn: sqlite3.Connection, paths: list[str]) -> None:
    """Remove the rows at `paths` and mark their files for deletion, inside the caller's transaction."""
    from imgcls.store import rowdigest

    with rowdigest.kept_up(conn, paths):
        conn.executemany("DELETE FROM rows WHERE path = ?", ((p,) for p in paths))
    conn.executemany("INSERT OR IGNORE INTO doomed VALUES (?)", ((p,) for p in paths))


def remove_doomed(folder: Path) -> int:
    """Delete the files of purged rows that no row lists any more; how many marks were cleared."""
    with reading(folder) as conn:
        doomed = [p for (p,) in conn.execute("SELECT path FROM doomed")]
        if not doomed:
            return 0
        from imgcls.store import manifestquery

        listed = set(manifestquery.rows_by_paths(folder, doomed, columns=["path"], conn=conn)["path"])
        for rel in doomed:
            if rel not in listed:
                (folder / rel).unlink(missing_ok=True)
        try:
            conn.executemany("DELETE FROM doomed WHERE path = ?", ((p,) for p in doomed))
        except sqlite3.OperationalError as exc:
            if not is_full(exc, folder):
                raise
            return 0  # the files went; their marks stay, and the next settle clears them
        return len(doomed)


def pending_files(folder: Path) -> int:
    """How many files of purged rows still wait to be deleted (a crash came between the two)."""
    with reading(folder) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM doomed").fetchone()[0])
