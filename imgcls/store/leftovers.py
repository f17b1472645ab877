"""What an interrupted import leaves behind, and its cleanup.

A new dataset is imported into a hidden `datasets/.import-<id>` folder, renamed into place at the end; an
import that adds to a dataset writes its images straight into the dataset's `images/` folder and lists them
in the manifest at the end. Each import holds a lock file, `datasets/.import-<id>.lock` (naming the dataset,
and locked for as long as the import runs: the kernel drops the lock when its process dies), so a cleanup
can tell a running import from a dead one and never touches the running one's files. The cleanup removes a
dead import's folder and, where it was adding to a dataset, the image files no manifest row lists.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import filelock

from imgcls.store import workspace

PREFIX = ".import-"
TEMP_AGE_S = 3600  # a temp file of an atomic write this old belongs to no write still going on
CLAIMS_LOCK = "imports.lock"  # held while an import makes its claim, and while a cleanup reads the claims
# files only ever written under the dataset's lock: a temp file of theirs found while holding it is dead
LOCKED_WRITES = ("manifest.csv", "journal.applied.json", "imports.jsonl")


@dataclass
class CleanupReport:
    """What a cleanup removed: folders, image files no manifest lists, their bytes; and what it left."""

    folders: list[str] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)  # of atomic writes cut short
    bytes: int = 0
    busy: list[str] = field(default_factory=list)  # imports still running, datasets being written

    @property
    def message(self) -> str:
        """One plain sentence for the user."""
        if not (self.folders or self.files or self.temp_files):
            text = "Nothing was left over from interrupted imports or edits."
        else:
            text = (f"Removed what interrupted imports and edits left: {len(self.folders):,} folder(s), "
                    f"{len(self.files):,} image file(s) no dataset lists and {len(self.temp_files):,} "
                    f"unfinished temporary file(s), {self.bytes / 1e6:,.1f} MB in all.")
        if self.busy:
            text += f" Left alone while in use: {', '.join(self.busy[:3])}{' …' if len(self.busy) > 3 else ''}."
        return text


class ImportClaim:
    """The lock file of one running import; `folder` is where a new dataset is built (not yet made)."""

    def __init__(self, name: str, adding: bool):
        key = uuid.uuid4().hex[:12]
        root = workspace.datasets_dir()
        self.folder = root / f"{PREFIX}{key}"
        self.lock = root / f"{PREFIX}{key}.lock"
        # made, locked and described while holding the workspace's import lock, which a cleanup holds too:
        # a cleanup never sees a claim half made, so any lock file it finds unlocked is a dead import's
        with workspace.saving(f"the import into '{name}'"), workspace.file_lock(CLAIMS_LOCK):
            self._fh = open(self.lock, "x+", encoding="utf-8")  # noqa: SIM115 - held for the life of the import
            try:
                filelock.lock_descriptor(self._fh.fileno())
                json.dump({"dataset": name, "adding": adding, "pid": os.getpid(), "started": workspace.now()},
                          self._fh)
                self._fh.flush()
            except BaseException:
                self.lock.unlink(missing_ok=True)
                self._fh.close()
                raise

    def release(self) -> None:
        """The import has ended (done, or failed and cleaned up): drop the lock file."""
        if self._fh.closed:
            return
        self.lock.unlink(missing_ok=True)
        self._fh.close()


def claim_import(name: str, adding: bool) -> ImportClaim:
    """Mark an import into dataset `name` as running, until `release()` or the end of its process."""
    return ImportClaim(name, adding)


def clean_leftovers(everything: bool = True) -> CleanupReport:
    """Remove what interrupted imports left in the workspace (imports running now are left alone).

    Always: the folders and lock files of dead imports, the images a dead import added to a dataset without
    listing them, and the temp files of a dataset's manifest and journal writes cut short. With
    `everything`, also every dataset's image files that its manifest does not list, and other temp files
    over an hour old (this reads every manifest)."""
    report = CleanupReport()
    root = workspace.datasets_dir()
    adding: set[str] = set()
    with workspace.file_lock(CLAIMS_LOCK):  # no import is between making its lock file and locking it
        for lock in sorted(root.glob(f"{PREFIX}*.lock")):
            adding |= _clean_import(lock, report)
    for folder in sorted(root.iterdir()):
        if folder.is_dir() and (folder.name.startswith(PREFIX) or folder.name.startswith(".deleting-")):
            if folder.name.startswith(PREFIX) and (root / f"{folder.name}.lock").exists():
                continue  # its import still runs (a dead one's lock file went with it just above)
            _remove(folder, report.folders, report)
    for name in sorted(set(workspace.list_datasets()) | adding):
        _clean_dataset(name, report, orphans=everything or name in adding, old_temp=everything)
    return report


def clean_before_import() -> CleanupReport | None:
    """The quick cleanup an import makes first; a problem with it never stops the import."""
    try:
        return clean_leftovers(everything=False)
    except (OSError, workspace.WorkspaceError):
        return None


def _clean_import(lock: Path, report: CleanupReport) -> set[str]:
    """One import's lock file: if its import is dead, remove its folder and the file; the dataset it was
    adding to, whose unlisted images are to go."""
    try:
        fh = open(lock, "r+", encoding="utf-8")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return set()  # it ended meanwhile
    with fh:
        try:
            meta = json.load(fh)
        except (json.JSONDecodeError, UnicodeDecodeError):
            meta = {}
        meta = meta if isinstance(meta, dict) else {}
        if not filelock.lock_descriptor(fh.fileno(), blocking=False):
            started = str(meta.get("started", "")).replace("T", " ")[:16]
            report.busy.append(f"the import into '{meta.get('dataset', '?')}' started {started}")
            return set()
        folder = lock.with_name(lock.name[: -len(".lock")])
        if folder.exists():
            _remove(folder, report.folders, report)
        lock.unlink(missing_ok=True)
    name = meta.get("dataset")
    return {name} if meta.get("adding") and isinstance(name, str) else set()


def _clean_dataset(name: str, report: CleanupReport, orphans: bool, old_temp: bool) -> None:
    """Remove a dataset's dead temp files and (with `orphans`) its image files that no manifest row lists;
    not while anything writes the dataset."""
    try:
        lock = workspace.dataset_lock_if_free(name)
    except workspace.WorkspaceError:
        return  # not a dataset name: nothing of ours
    with lock as free:
        if not free:  # an import or an edit runs: its files may not be listed yet
            report.busy.append(f"dataset '{name}'")
            return
        folder = workspace.dataset_dir(name)
        for path in folder.glob(".*.tmp"):  # .<file>.<random>.tmp, as workspace.atomic_write_bytes names them
            if path.name[1:].startswith(tuple(f"{w}." for w in LOCKED_WRITES)):
                _remove(path, report.temp_files, report)
            elif old_temp:
                _remove_if_old(path, report, TEMP_AGE_S)
        if orphans:
            _remove_orphans(name, folder, report)


def _remove_orphans(name: str, folder: Path, report: CleanupReport) -> None:
    try:
        listed = set(workspace.read_manifest(name)["path"])
    except (workspace.WorkspaceError, OSError, ValueError, KeyError):
        return  # no readable manifest: nothing can be told apart, so nothing goes
    images = folder / "images"
    for path in sorted(images.rglob("*")) if images.is_dir() else []:
        if path.is_file() and not path.is_symlink() and path.relative_to(folder).as_posix() not in listed:
            _remove(path, report.files, report)


def _remove_if_old(path: Path, report: CleanupReport, age_s: float) -> None:
    try:
        old = time.time() - path.stat().st_mtime > age_s
    except FileNotFoundError:
        return
    if old:
        _remove(path, report.temp_files, report)


def _remove(path: Path, into: list, report: CleanupReport) -> None:
    """Delete a file or folder, listing it in `into` and adding its size to the report."""
    home = workspace.home()
    rel = path.relative_to(home).as_posix() if path.is_relative_to(home) else str(path)
    if path.is_dir() and not path.is_symlink():
        size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
        shutil.rmtree(path, ignore_errors=True)
    else:
        try:
            size = path.stat().st_size
            path.unlink()
        except FileNotFoundError:
            return
    into.append(rel)
    report.bytes += size
