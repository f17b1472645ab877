"""The on-disk workspace: datasets, runs and caches under IMGCLS_HOME.

Every path of a user's data derives from `home()`, so this is the one place that decides whose workspace
a call reads or changes. For one person it is IMGCLS_HOME itself. With sign-in, each person's workspace is
`IMGCLS_HOME/users/<key>` (see `imgcls.store.access`); the app installs a resolver that answers with the
signed-in user's folder, and fails closed (WorkspaceError) when a call has no user behind it.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime
import errno
import functools
import json
import os
import re
import shutil
import tempfile
import threading
import unicodedata
from pathlib import Path
from typing import TYPE_CHECKING

import filelock

if TYPE_CHECKING:  # pandas loads when a manifest is read: a job's launcher and the CLI's help need none
    import pandas as pd

MANIFEST_COLUMNS = [
    "path", "label", "split", "hash", "width", "height", "excluded", "source", "format", "bytes", "note",
]
SPLITS = ("train", "val", "test")
_NAME_RE = re.compile(r"^[\w][\w .+-]{0,63}$", re.UNICODE)


class WorkspaceError(Exception):
    """A workspace operation that cannot go ahead, with a plain message."""


class DiskFull(WorkspaceError):
    """The disk (or this account's disk quota) is full: a file could not be saved and was left as it was."""

    def __init__(self, what: str):
        self.what = what
        super().__init__(f"The disk is full: could not save {what}; nothing was changed. Free some space "
                         "(delete runs, datasets or exports you no longer need) and try again.")

    def __reduce__(self):  # rebuilt from `what`, not from the whole sentence
        return type(self), (self.what,)


_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """Whether an error is a full disk or an exceeded disk quota."""
    return isinstance(exc, DiskFull) or (isinstance(exc, OSError) and exc.errno in _FULL)


@contextlib.contextmanager
def saving(what):
    """Turn a full disk met in the block into DiskFull naming `what` (text, or a function giving it, asked
    only then); other errors pass unchanged."""
    try:
        yield
    except DiskFull:
        raise
    except OSError as exc:
        if exc.errno in _FULL:
            raise DiskFull(what() if callable(what) else what) from exc
        raise


def _shown(path: Path) -> str:
    """A file as the user knows it: its path inside the workspace, quoted."""
    try:
        return f"'{Path(path).resolve().relative_to(home()).as_posix()}'"
    except (ValueError, OSError, WorkspaceError):
        return f"'{Path(path).name}'"


# The workspace chosen explicitly for this thread or task (`use`), and the app's per-session resolver.
_ROOT: contextvars.ContextVar[Path | None] = contextvars.ContextVar("imgcls_workspace", default=None)
_resolver = None


_resolved: dict[tuple[str, str], Path] = {}


def _root_named(value: str) -> Path:
    key = (value, os.getcwd())
    root = _resolved.get(key)
    if root is None:  # every path of the workspace starts here: resolve the name once
        root = _resolved[key] = Path(value).expanduser().resolve()
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
    return root


def _default_root() -> Path:
    """The folder IMGCLS_HOME names (default ./workspace)."""
    return _root_named(os.environ.get("IMGCLS_HOME", "workspace"))


def server_root() -> Path:
    """The server's own folder: where the operator's config, the users' workspaces and the demo links live.
    It is IMGCLS_HOME, except in a background job, which works in one user's folder and is told the
    server's (IMGCLS_SERVER_HOME)."""
    named = os.environ.get("IMGCLS_SERVER_HOME", "").strip()
    return _root_named(named) if named else _default_root()


def job_env(**extra: str) -> dict:
    """The environment of a background job: it works in the caller's workspace and knows the server's."""
    return dict(os.environ, IMGCLS_HOME=str(home()), IMGCLS_SERVER_HOME=str(server_root()),
                PYTHONUNBUFFERED="1", **extra)


def home() -> Path:
    """The workspace of whoever this call works for: chosen by `use`, else by the app's resolver, else
    IMGCLS_HOME itself (one person's workspace, or a background job's)."""
    root = _ROOT.get()
    if root is None and _resolver is not None:
        root = _resolver()
    if root is None:
        return _default_root()
    if not root.is_dir():
        root.mkdir(parents=True, exist_ok=True)
    return root


def set_resolver(resolver) -> None:
    """Install the function that names the current caller's workspace (a Path, None for IMGCLS_HOME, or
    a WorkspaceError when nobody is signed in)."""
    global _resolver
    _resolver = resolver


@contextlib.contextmanager
def use(root: Path):
    """Work in the workspace at `root` for the duration of the block (this thread or task only)."""
    token = _ROOT.set(Path(root).resolve())
    try:
        yield
    finally:
        _ROOT.reset(token)


def bound(fn):
    """`fn` wrapped to run in the caller's current workspace, for handing to another thread."""
    root = home()

    @functools.wraps(fn)
    def run(*args, **kwargs):
        with use(root):
            return fn(*args, **kwargs)
    return run


def folder(*parts: str) -> Path:
    """A folder of the workspace, made if missing (`folder("runs")`, `folder("cache", "thumbs")`)."""
    path = home().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def is_key(key: str) -> bool:
    """Whether `key` names one subfolder in place: not empty, no path separator, not a dot name."""
    return bool(key) and "/" not in key and "\\" not in key and not key.startswith(".")


def keyed_dir(kind: str, key: str, what: str) -> Path:
    """Subfolder `key` of the workspace folder `kind` (it may not exist yet); a WorkspaceError saying the
    key is not `what` when it would leave that folder."""
    if not is_key(key):
        raise WorkspaceError(f"'{key}' is not {what}.")
    return folder(kind) / key


def datasets_dir() -> Path:
    """Folder holding one subfolder per dataset."""
    return folder("datasets")


def cache_dir(kind: str) -> Path:
    """A cache folder (thumbnails, features, …) shared by all datasets."""
    return folder("cache", kind)


def check_name(name: str) -> str:
    """Return a cleaned dataset name or raise WorkspaceError saying why it is not usable."""
    name = unicodedata.normalize("NFC", (name or "").strip())
    if not name:
        raise WorkspaceError("A dataset needs a name.")
    if not _NAME_RE.match(name) or name in (".", ".."):
        raise WorkspaceError(
            f"'{name}' cannot be a dataset name: use letters, digits, spaces, '.', '-', '+' or '_' "
            "(at most 64 characters, not starting with a dot or dash)."
        )
    return name


def suggest_name(text: str) -> str:
    """A usable dataset name made from a file name ('photos (1)' → 'photos-1')."""
    text = unicodedata.normalize("NFC", text or "")
    cleaned = re.sub(r"[^\w .+-]+", "-", text, flags=re.UNICODE).strip(" .-+")
    cleaned = re.sub(r"-{2,}", "-", cleaned)[:64].strip(" .-+")
    return cleaned or "dataset"


def dataset_dir(name: str) -> Path:
    """Folder of one dataset (it may not exist yet)."""
    return datasets_dir() / check_name(name)


def list_datasets() -> list[str]:
    """Names of the datasets in the workspace, sorted."""
    return sorted(
        p.name for p in datasets_dir().iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "manifest.csv").exists()
    )


def dataset_exists(name: str) -> bool:
    """Whether a dataset of that name is in the workspace."""
    try:
        return (dataset_dir(name) / "manifest.csv").exists()
    except WorkspaceError:
        return False


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so readers see either the old or the new content, never half of it (DiskFull when the
    disk is full: the old content stays)."""
    path = Path(path)
    with saving(lambda: _shown(path)):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def atomic_write_text(path: Path, text: str) -> None:
    """Atomic text write (UTF-8)."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj) -> None:
    """Atomic JSON write, pretty-printed and UTF-8."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def read_json(path: Path, default=None):
    """Read a JSON file, or return default when it is missing."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return default


def now() -> str:
    """Local time to the microsecond, as the journal and import records keep it (they are ordered by it)."""
    return datetime.datetime.now().isoformat(timespec="microseconds")


def read_jsonl(path: Path) -> list:
    """The records of a JSON-lines file, oldest first; a torn last line (a crash mid-append) is ignored."""
    path = Path(path)
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _in_datasets(folder: Path) -> bool:
    """Whether `folder` is a dataset's (or an import's, being built): its rows live in a store."""
    return Path(folder).parent == datasets_dir()


def write_manifest(folder: Path, df: pd.DataFrame) -> None:
    """Save a manifest atomically: a dataset's rows go into its store (`imgcls.store.manifeststore`), and
    manifest.csv is exported from them; elsewhere (a run's own copy) only manifest.csv is written."""
    df = df if "note" in df else df.assign(note="")
    folder = Path(folder)
    if _in_datasets(folder):
        from imgcls.store import manifeststore  # imported here: it imports this module

        manifeststore.replace_rows(folder, df)
        atomic_write_text(folder / "manifest.csv", df[MANIFEST_COLUMNS].to_csv(index=False))
        manifeststore.mark_exported(folder)
        return
    atomic_write_text(folder / "manifest.csv", df[MANIFEST_COLUMNS].to_csv(index=False))


def read_manifest(name_or_folder) -> pd.DataFrame:
    """Load a dataset's manifest whole (labels kept as text, even '0'…'9'), with every edit made: from its
    store, migrated there from manifest.csv on first open; elsewhere (a run's copy) from manifest.csv."""
    folder = Path(name_or_folder) if isinstance(name_or_folder, Path) else dataset_dir(name_or_folder)
    if _in_datasets(folder):
        from imgcls.store import editlog, manifeststore

        editlog.settle(folder.name)  # an older dataset migrates; a purge's files a crash left go
        return manifeststore.read_all(folder)
    return load_manifest_file(folder)


def load_manifest_file(folder: Path) -> pd.DataFrame:
    """A manifest exactly as stored in `folder` (read_manifest also brings a dataset's up to its journal)."""
    folder = Path(folder)
    path = folder / "manifest.csv"
    if not path.exists():
        raise WorkspaceError(f"There is no dataset '{folder.name}' in the workspace.")
    import pandas as pd

    df = pd.read_csv(
        path,
        dtype={"path": str, "label": str, "split": str, "hash": str, "source": str, "format": str,
               "note": str},
        keep_default_na=False,
    )
    df["excluded"] = df["excluded"].astype(str).str.lower().isin(["true", "1"])
    if "note" not in df:  # manifests written before notes existed
        df["note"] = ""
    df["note"] = df["note"].astype(str)
    return df


_HELD = threading.local()  # lock files this thread holds → how many blocks hold them


@contextlib.contextmanager
def _flock(path: Path, wait: bool = True):
    """Hold the lock file at `path`, yielding True; with wait=False yield False at once when another holds it.
    Re-entrant in one thread: a block nested in another holding the same lock passes (flock would wait on
    itself)."""
    held = _HELD.__dict__.setdefault("counts", {})
    key = str(path)
    if held.get(key):
        held[key] += 1
        try:
            yield True
        finally:
            held[key] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        if not filelock.lock_descriptor(fh.fileno(), blocking=wait):
            yield False
            return
        held[key] = 1
        try:
            yield True
        finally:
            del held[key]
            filelock.unlock_descriptor(fh.fileno())


@contextlib.contextmanager
def file_lock(name: str, root: Path | None = None):
    """Hold the workspace lock `locks/<name>` across threads and processes (the kernel frees it on a crash);
    `root` names another workspace folder than the current one (the server's, for server-wide files)."""
    with _flock((root or home()) / "locks" / name):
        yield


def dataset_lock_if_free(name: str):
    """The dataset's lock if nobody holds it now: a block `with dataset_lock_if_free(n) as free:` runs at
    once, holding the lock when `free` is True."""
    return _flock(home() / "locks" / f"datasets/{check_name(name)}.lock", wait=False)


def dataset_lock(name: str):
    """Serialise writers of one dataset across threads and processes."""
    return file_lock(f"datasets/{check_name(name)}.lock")


def rename_dataset(old: str, new: str) -> str:
    """Rename a dataset folder; refuses to overwrite another dataset."""
    src, dst = dataset_dir(old), dataset_dir(new)
    if not src.exists():
        raise WorkspaceError(f"There is no dataset '{old}' to rename.")
    if dst.exists():
        raise WorkspaceError(f"A dataset named '{dst.name}' already exists; choose another name.")
    os.replace(src, dst)
    return dst.name


def delete_dataset(name: str) -> None:
    """Delete a dataset: moved aside atomically first, so a crash never leaves half a dataset."""
    src = dataset_dir(name)
    if not src.exists():
        raise WorkspaceError(f"There is no dataset '{name}' to delete.")
    trash = datasets_dir() / f".deleting-{src.name}-{os.getpid()}"
    os.replace(src, trash)
    shutil.rmtree(trash, ignore_errors=True)


def settings() -> dict:
    """Small app-wide settings (such as the active dataset), kept across restarts."""
    return read_json(home() / "settings.json", {}) or {}


def save_setting(key: str, value) -> None:
    """Store one app-wide setting."""
    data = settings()
    data[key] = value
    atomic_write_json(home() / "settings.json", data)
