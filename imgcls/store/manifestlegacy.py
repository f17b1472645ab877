"""Datasets of the older format (manifest.csv and journal.jsonl only): migrated into a store on first open,
or read from an in-memory store while a full disk leaves no room to migrate them."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
from pathlib import Path

from imgcls.store import manifeststore as ms, workspace


def in_memory(folder: Path) -> sqlite3.Connection:
    """An older-format dataset's rows and journal in an in-memory store, for reads while it cannot be
    migrated (a full disk); the next open with room migrates it."""
    from imgcls.store import editlog

    df, journal = editlog.legacy_state(folder)
    conn = sqlite3.connect(":memory:", isolation_level=None)
    conn.executescript(ms.SCHEMA)
    conn.execute("INSERT INTO meta VALUES ('changes', 0), ('exported', 0), ('store', 'legacy')")
    ms.insert_rows(conn, df)
    conn.executemany("INSERT OR REPLACE INTO journal VALUES (?, ?)",
                     ((int(e["id"]), json.dumps(e, ensure_ascii=False)) for e in journal))
    return conn


def migrate(folder: Path) -> None:
    """Build the store of a dataset that has only manifest.csv (and maybe journal.jsonl), crash-safe."""
    from imgcls.store import editlog

    with workspace.dataset_lock(folder.name) if folder.parent == workspace.datasets_dir() else contextlib.nullcontext():
        if (folder / ms.DB).exists():
            return  # migrated by another process meanwhile
        df, journal = editlog.legacy_state(folder)  # the old manifest brought up to its old journal
        tmp = folder / f".{ms.DB}.migrating"
        for leftover in (tmp, Path(f"{tmp}-journal")):
            leftover.unlink(missing_ok=True)  # from a migration a crash cut short
        what = f"the dataset '{folder.name}' in its new format"
        conn = None
        with workspace.saving(what), ms.full_as(what, folder):
            try:
                conn = ms.create_store(tmp, "DELETE")  # no -wal file beside a file about to be renamed
                conn.execute("BEGIN")
                ms.insert_rows(conn, df)
                conn.executemany("INSERT OR REPLACE INTO journal VALUES (?, ?)",
                                 ((int(e["id"]), json.dumps(e, ensure_ascii=False)) for e in journal))
                conn.execute("COMMIT")
                conn.execute("PRAGMA journal_mode = WAL")
                conn.close()
                os.replace(tmp, folder / ms.DB)
            except BaseException:
                if conn is not None:
                    conn.close()
                for leftover in (tmp, Path(f"{tmp}-journal")):
                    leftover.unlink(missing_ok=True)
                raise
        editlog.drop_legacy(folder)
