"""A dataset's journal file and its manifest kept in step: an edit and its entry land together or not at all.

An edit is made under the dataset's lock in three steps: its entry is appended to `journal.jsonl` and
flushed to disk (from then on the edit stands), the manifest is rewritten atomically, and
`journal.applied.json` records how far the manifest reflects the journal (the journal's length in bytes).
A crash between the steps leaves the journal ahead of that mark; the next reader (`settle`, called by
`workspace.read_manifest` and `journal.history`) applies the entries past it again. Entries hold absolute
values (each change's before and after) and an image is set to `after` only while it still holds `before`,
so applying an entry twice changes nothing. An edit that fails before its manifest is replaced (a full
disk) takes its entry back out of the journal: journal and manifest stay as they were.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from imgcls.store import workspace

JOURNAL = "journal.jsonl"
MARK = "journal.applied.json"


def journal_path(name: str) -> Path:
    """The dataset's journal file."""
    return workspace.dataset_dir(name) / JOURNAL


def entries(name: str) -> list[dict]:
    """The journal's entries as stored, oldest first (a torn last line from a crash is ignored)."""
    return workspace.read_jsonl(journal_path(name))


def plain(v):
    """Manifest values as JSON-friendly Python (numpy bools → bool)."""
    if hasattr(v, "item"):
        v = v.item()
    return v


def same(a, b) -> bool:
    """Whether two manifest values are equal once plain."""
    return plain(a) == plain(b)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _inode(path: Path):
    try:
        return path.stat().st_ino
    except FileNotFoundError:
        return None


def _append(path: Path, entry: dict) -> None:
    with open(path, "ab") as fh:
        # a line torn by a crash (settle normally cuts it off first) is closed, so it cannot swallow this one
        torn = fh.tell() > 0 and _last_byte(path) != b"\n"
        fh.write((b"\n" if torn else b"") + json.dumps(entry, ensure_ascii=False).encode("utf-8") + b"\n")
        fh.flush()
        os.fsync(fh.fileno())


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def _mark(folder: Path, size: int) -> None:
    try:
        workspace.atomic_write_json(folder / MARK, {"journal_bytes": size})
    except (OSError, workspace.WorkspaceError):
        pass  # only a shortcut: with an old mark the next reader applies entries again, which changes nothing


def _marked(folder: Path) -> int | None:
    try:
        return int((workspace.read_json(folder / MARK, {}) or {}).get("journal_bytes"))
    except (TypeError, ValueError, OSError):
        return None


def commit(name: str, entry: dict, df: pd.DataFrame | None, what: str, then=None) -> None:
    """Append `entry` and save `df` as the manifest (None: the manifest is unchanged), then run `then`;
    under the dataset's lock. On a failure before the manifest is replaced, the entry is taken back out
    (a full disk becomes DiskFull naming `what`)."""
    folder = workspace.dataset_dir(name)
    path, manifest = folder / JOURNAL, folder / "manifest.csv"
    start, before = _size(path), _inode(manifest)
    try:
        _append(path, entry)
        if df is not None:
            workspace.write_manifest(folder, df)
    except BaseException as exc:
        if df is None or _inode(manifest) == before:  # the manifest was not replaced: the edit never happened
            os.truncate(path, start)
        if workspace.is_disk_full(exc):
            raise workspace.DiskFull(what) from exc
        raise
    if then is not None:
        then()
    _mark(folder, _size(path))


def in_step(name: str) -> bool:
    """Whether the manifest reflects every journal entry (no crash left one half made)."""
    folder = workspace.dataset_dir(name)
    size = _size(folder / JOURNAL)
    return size == 0 or _marked(folder) == size


def settle(name: str) -> pd.DataFrame | None:
    """Apply journal entries a crash left out of the manifest; the manifest as it then stands, or None when
    nothing needed doing (the check costs a stat and a small read; the lock is taken only when needed)."""
    if in_step(name):
        return None
    with workspace.dataset_lock(name):
        if in_step(name):  # settled by another process meanwhile, or the edit in progress has finished
            return None
        return _settle_locked(workspace.dataset_dir(name))


def _settle_locked(folder: Path) -> pd.DataFrame | None:
    path = folder / JOURNAL
    if not (folder / "manifest.csv").exists():
        return None
    data, mark = path.read_bytes(), _marked(folder)
    end = data.rfind(b"\n") + 1
    if end < len(data):  # a crash mid-append: the entry is whole (only its newline missing) or was never made
        if _parses(data[end:]):
            data, end = data + b"\n", len(data) + 1
            try:
                with open(path, "ab") as fh:
                    fh.write(b"\n")
            except OSError:
                end -= 1  # a full disk: the next append closes the line itself; the entry stands either way
        else:
            os.truncate(path, end)
            data = data[:end]
    if mark is None or mark > end:  # no mark yet (a journal older than marks): check the last entry only
        mark = data.rfind(b"\n", 0, max(end - 1, 0)) + 1
    df = workspace.load_manifest_file(folder)
    doomed: set[str] = set()
    changed = False
    for line in data[mark:end].splitlines():
        entry = _parses(line)
        if entry:
            df, did = _reapply(df, entry, doomed)
            changed |= did
    if changed:
        try:
            workspace.write_manifest(folder, df)
        except workspace.DiskFull:
            return df  # readers still see the journal's state; the next reader tries to save it again
    for rel in doomed - set(df["path"]):  # a purge's files, once no row lists them
        (folder / rel).unlink(missing_ok=True)
    _mark(folder, end)
    return df


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
