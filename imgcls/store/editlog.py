"""A dataset's journal and its rows kept in step: an edit and its entry land together or not at all.

Both live in the dataset's store (`imgcls.store.manifeststore`): an edit is one SQLite transaction that
appends its journal entry and changes only the rows it edits, under the dataset's lock, so a crash leaves
the whole edit or nothing. What is left to settle after a crash: a purge's image files, deleted once the
transaction that removed their rows has committed (`doomed` in the store), and datasets of the older
format (manifest.csv with journal.jsonl and its mark journal.applied.json), migrated on first open; their
journal may be ahead of their manifest (a crash between the old two writes), so its entries past the mark
are applied again first. Entries hold absolute values (each change's before and after) and an image is
set to `after` only while it still holds `before`, so applying an entry twice changes nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pandas as pd

from imgcls.store import manifeststore, workspace

JOURNAL = "journal.jsonl"  # the journal of the older format, migrated into the store
MARK = "journal.applied.json"


def journal_path(name: str) -> Path:
    """The file that holds the dataset's journal (its store)."""
    return workspace.dataset_dir(name) / manifeststore.DB


def entries(name: str) -> list[dict]:
    """The journal's entries as stored, oldest first."""
    return manifeststore.entries(name)


def plain(v):
    """Manifest values as JSON-friendly Python (numpy bools → bool)."""
    if hasattr(v, "item"):
        v = v.item()
    return v


def same(a, b) -> bool:
    """Whether two manifest values are equal once plain."""
    return plain(a) == plain(b)


@contextlib.contextmanager
def editing(name: str, what):
    """Under the dataset's lock, one store transaction for an edit and its journal entry (a full disk
    becomes DiskFull naming `what`: text, or a function giving it); caches keyed by manifest.csv's stat
    are told afterwards."""
    folder = workspace.dataset_dir(name)
    with workspace.dataset_lock(name):
        settle(name)
        with manifeststore.transaction(folder, what) as conn:
            yield conn
        manifeststore.touch_csv(folder)


def in_step(name: str) -> bool:
    """Whether the dataset has nothing left for a reader to settle: it is in the store, and no purged
    image file awaits deletion."""
    folder = workspace.dataset_dir(name)
    if not (folder / manifeststore.DB).exists():
        return not (folder / JOURNAL).exists() or _size(folder / JOURNAL) == 0 or _marked(folder) == _size(folder / JOURNAL)
    return manifeststore.pending_files(folder) == 0


def settle(name: str) -> None:
    """Migrate a dataset of the older format, and delete the files of purged rows a crash left behind (the
    check costs one small query; the lock is taken only when something needs doing)."""
    folder = workspace.dataset_dir(name)
    if not (folder / manifeststore.DB).exists() and not (folder / "manifest.csv").exists():
        return
    if (folder / manifeststore.DB).exists() and manifeststore.pending_files(folder) == 0:
        return
    with workspace.dataset_lock(name):
        try:
            manifeststore.connect(folder).close()  # migrates the older format
        except workspace.DiskFull:
            return  # no room to migrate: readers read the old files meanwhile, the next open migrates
        manifeststore.remove_doomed(folder)


# --- the older format: manifest.csv + journal.jsonl, read once to migrate ------------------------------


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _marked(folder: Path) -> int | None:
    try:
        return int((workspace.read_json(folder / MARK, {}) or {}).get("journal_bytes"))
    except (TypeError, ValueError, OSError):
        return None


def legacy_state(folder: Path) -> tuple[pd.DataFrame, list[dict]]:
    """The rows of an older-format dataset brought up to its journal, and the journal's entries; the files
    of a purge its manifest never recorded are deleted."""
    df = workspace.load_manifest_file(folder)
    path = folder / JOURNAL
    data = path.read_bytes() if path.exists() else b""
    end = data.rfind(b"\n") + 1
    if end < len(data) and _parses(data[end:]):  # a crash mid-append left the entry whole, its newline missing
        data, end = data + b"\n", len(data) + 1
    mark = _marked(folder)
    if mark is None or mark > end:  # no mark (a journal older than marks): check the last entry only
        mark = data.rfind(b"\n", 0, max(end - 1, 0)) + 1
    doomed: set[str] = set()
    for line in data[mark:end].splitlines():
        entry = _parses(line)
        if entry:
            df, _ = _reapply(df, entry, doomed)
    for rel in doomed - set(df["path"]):  # a purge's files, once no row lists them
        (folder / rel).unlink(missing_ok=True)
    found = [e for e in (_parses(line) for line in data[:end].splitlines()) if e and "id" in e]
    return df, found


def drop_legacy(folder: Path) -> None:
    """Remove the older format's journal files once the store holds their entries."""
    for name in (JOURNAL, MARK):
        with contextlib.suppress(OSError):
            os.unlink(folder / name)


def _parses(line: bytes) -> dict | None:
    try:
        entry = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return entry if isinstance(entry, dict) else None


def _reapply(df: pd.DataFrame, entry: dict, doomed: set[str]) -> tuple[pd.DataFrame, bool]:
    """Apply one entry again where the manifest still holds its before values; (manifest, whether changed).
    A purge's paths are added to `doomed`: their files go once the manifest no longer lists them."""
    changes = [c for c in entry.get("changes") or [] if isinstance(c, dict) and "path" in c]
    if entry.get("action") == "purge":
        gone = {str(c["path"]) for c in changes}
        doomed |= gone
        drop = df["path"].isin(gone) & df["excluded"]
        return (df[~drop].reset_index(drop=True), True) if drop.any() else (df, False)
    col = entry.get("field")
    if col not in df.columns:
        return df, False
    index = dict(zip(df["path"], df.index))
    changed = False
    for c in changes:
        i = index.get(str(c["path"]))
        if i is not None and "before" in c and same(df.at[i, col], c["before"]) and not same(c["before"], c.get("after")):
            df.at[i, col] = c.get("after")
            changed = True
    return df, changed
