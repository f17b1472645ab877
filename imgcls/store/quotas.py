"""Limits on what one workspace may hold and run: disk space, datasets, images per dataset, jobs running at
once (the job queue passes over a user's further jobs until one ends) and jobs waiting or running (past that
a new job is refused).

The operator's `[quotas]` in imgcls.toml are the defaults. An admin may override them for everyone and for
single users in `IMGCLS_HOME/quotas.json`: `{"default": {...}, "users": {"<user key>": {...}}}`, the user key
being the name of the user's folder under `IMGCLS_HOME/users`. Zero means "no limit". Usage is measured from
the file system (sizes and manifests, never the images themselves), so checking costs little.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import json
import os
import time
from pathlib import Path

from imgcls.store import access, workspace

QUOTAS_FILE = "quotas.json"
DISK_TTL_S = 30.0  # a page rerun reuses the disk size measured this long ago
FIELDS = tuple(f.name for f in dataclasses.fields(access.Quotas))
WHOLE = {"images_per_dataset", "datasets", "jobs_running", "jobs_queued"}  # counted in units, not gigabytes
# where each kind of job is stopped
JOB_PAGES = {"run": "Train", "health": "Review", "experiment": "Learn", "measure": "Augment", "export": "Evaluate"}
FREE_DISK = "delete a dataset you no longer need on the Data page to free space"
_disk: dict[str, tuple[float, int]] = {}  # workspace root → (when measured, bytes)
_rows: dict[tuple, int] = {}  # (manifest path, mtime, size) → number of images


class QuotaError(workspace.WorkspaceError):
    """A limit of the workspace would be passed; the message names the limit and how to make room."""


# --- the limits -----------------------------------------------------------------------------------


def _file() -> Path:
    return workspace.server_root() / QUOTAS_FILE


def overrides() -> dict:
    """The admin's overrides as saved: {"default": {...}, "users": {key: {...}}}."""
    try:
        data = workspace.read_json(_file(), {}) or {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise access.ConfigError(f"The limits file {_file()} cannot be read ({exc}); fix or delete it.") from None
    if not isinstance(data, dict):
        data = {}
    users = data.get("users") if isinstance(data.get("users"), dict) else {}
    default = data.get("default") if isinstance(data.get("default"), dict) else {}
    return {"default": default, "users": users}


def user_key(root: Path | None = None) -> str | None:
    """The user key of a workspace (its folder name under users/), or None for the one person's workspace."""
    root = Path(root or workspace.home()).resolve()
    return root.name if root.parent == access.users_root().resolve() else None


def limits(root: Path | None = None) -> access.Quotas:
    """The limits of a workspace (default: the current one)."""
    return limits_for(user_key(root))


def limits_for(key: str | None, saved: dict | None = None) -> access.Quotas:
    """The limits of one user (None: of everyone without limits of their own): the operator's, then the
    admin's default overrides (`saved`: as read already), then the admin's overrides for that user."""
    saved = overrides() if saved is None else saved
    own = saved["users"].get(key) if key else None
    values = {**saved["default"], **(own if isinstance(own, dict) else {})}
    return dataclasses.replace(access.load_config().quotas,
                               **{k: v for k, v in values.items() if k in FIELDS and _valid(v)})


def running_caps(keys) -> dict[str, int]:
    """User key ("" for the one person's workspace) → the most jobs they may run at once (0: no limit),
    reading the limits once for all of them."""
    saved = overrides()
    return {key: int(limits_for(key or None, saved).jobs_running) for key in keys if key is not None}


def _valid(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0


def _clean(name: str, value):
    if name not in FIELDS:
        raise QuotaError(f"'{name}' is not a limit imgcls knows (known: {', '.join(FIELDS)}).")
    if value is None:
        return None
    number = float(value) if _valid(value) else -1.0  # NaN, negatives, text and True all fail here
    if not number >= 0 or number == float("inf"):
        raise QuotaError(f"The limit {name} must be a number of zero or more (0 means no limit), not {value!r}.")
    if name in WHOLE:
        if number != int(number):
            raise QuotaError(f"The limit {name} must be a whole number, not {value!r}.")
        return int(number)
    return number


def set_limits(key: str | None, **values) -> dict:
    """Save limits for everyone (key None) or for one user: numbers of zero or more, 0 meaning no limit,
    None removing the override; returns the saved overrides."""
    if key is not None and not workspace.is_key(key):
        raise QuotaError(f"'{key}' is not a user's workspace folder name.")
    cleaned = {name: _clean(name, value) for name, value in values.items()}
    with workspace.file_lock("quotas.lock", root=workspace.server_root()):
        saved = overrides()
        if key is not None and not isinstance(saved["users"].get(key), dict):
            saved["users"][key] = {}
        target = saved["default"] if key is None else saved["users"][key]
        for name, value in cleaned.items():
            if value is None:
                target.pop(name, None)
            else:
                target[name] = value
        if key is not None and not target:
            saved["users"].pop(key, None)
        workspace.atomic_write_json(_file(), saved)
    return saved


# --- usage ----------------------------------------------------------------------------------------


def _walk_bytes(root: Path, skip: set[str]) -> int:
    """Bytes of every file below root, never following a symlink (os.scandir: one stat per entry)."""
    total, todo = 0, [(root, True)]
    while todo:
        folder, top = todo.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:  # removed meanwhile, or unreadable: it holds nothing we can count
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if not (top and entry.name in skip):
                        todo.append((entry.path, False))
                elif entry.is_file(follow_symlinks=False):
                    total += entry.stat(follow_symlinks=False).st_size
            except OSError:
                continue
    return total


def disk_bytes(root: Path | None = None, fresh: bool = False) -> int:
    """Bytes the workspace takes on disk, measured again when older than DISK_TTL_S (or when fresh)."""
    root = Path(root or workspace.home()).resolve()
    cached = _disk.get(str(root))
    if cached and not fresh and time.monotonic() - cached[0] < DISK_TTL_S:
        return cached[1]
    # The one person's workspace is the server root; other people's folders (users/) are not theirs.
    skip = {access.USERS_DIR} if root == workspace.server_root() else set()
    size = _walk_bytes(root, skip)
    _disk[str(root)] = (time.monotonic(), size)
    return size


def forget(root: Path | None = None) -> None:
    """Drop the measured disk size of a workspace (after an import), so the next check measures again."""
    _disk.pop(str(Path(root or workspace.home()).resolve()), None)


def image_count(dataset: str) -> int:
    """Images in a dataset of the current workspace (excluded ones too: they stay on disk until removed)."""
    path = workspace.dataset_dir(dataset) / "manifest.csv"
    try:
        stat = path.stat()
    except FileNotFoundError:
        return 0
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if key not in _rows:
        if len(_rows) > 1024:  # old versions of manifests: forget them all now and then
            _rows.clear()
        with open(path, newline="", encoding="utf-8") as fh:  # notes may hold line breaks: count records
            _rows[key] = max(sum(1 for _ in csv.reader(fh)) - 1, 0)
    return _rows[key]


def running_jobs(root: Path | None = None) -> list[str]:
    """Background jobs of a workspace queued or running now ('run/<id>', 'health/<dataset>',
    'experiment/<id>', 'measure/<dataset>'); jobs sharing one process (an experiment's training runs)
    count once."""
    from imgcls import jobs

    return jobs.index.active(root)


def usage(root: Path | None = None) -> dict:
    """What a workspace (default: the current one) holds and runs: disk bytes, datasets, images per
    dataset, runs, jobs (waiting or running), and of those the ones running and the ones waiting."""
    from imgcls.jobs import slots
    from imgcls.store import runs

    root = Path(root or workspace.home()).resolve()
    with workspace.use(root):
        images = {name: image_count(name) for name in workspace.list_datasets()}
        run_count = len(runs.list_runs())
    owner = user_key(root) or ""
    jobs = len(running_jobs(root))
    running = min(jobs, sum(1 for job in slots.running_jobs() if job["owner"] == owner))
    return {"disk_bytes": disk_bytes(root), "datasets": len(images), "images": images,
            "images_total": sum(images.values()), "runs": run_count, "jobs": jobs, "jobs_running": running,
            "jobs_waiting": jobs - running}


# --- checks ---------------------------------------------------------------------------------------


def size_text(n: float) -> str:
    """Bytes in words people read: '10.2 GB', '350 MB', '12 kB'."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            value = n / scale
            return f"{value:.1f} {unit}".replace(".0 ", " ") if value < 100 else f"{value:,.0f} {unit}"
    return f"{int(n)} bytes"


def _plural(n: int, word: str) -> str:
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def check_new_dataset() -> None:
    """Refuse a new dataset when the workspace holds the most datasets allowed."""
    limit = limits().datasets
    have = len(workspace.list_datasets())
    if limit and have >= limit:
        raise QuotaError(f"You have {_plural(have, 'dataset')}, the most allowed here: delete one you no "
                         "longer need on the Data page.")


def check_images(dataset: str, adding: int) -> None:
    """Refuse adding images that would take a dataset over the most images one dataset may hold."""
    limit = int(limits().images_per_dataset)
    have = image_count(dataset) if workspace.dataset_exists(dataset) else 0
    if limit and have + adding > limit:
        advice = ("Import into a new dataset or exclude and remove images first." if have else
                  "Split the images into smaller parts and import each into a dataset of its own.")
        raise QuotaError(f"A dataset can hold at most {limit:,} images; this import would make '{dataset}' "
                         f"{have + adding:,}. {advice}")


def check_disk(adding_bytes: int = 0) -> None:
    """Refuse work that would take the workspace over its disk space (measured afresh before refusing)."""
    limit = float(limits().disk_gb) * 1e9
    if not limit or disk_bytes() + adding_bytes <= limit:
        return
    used = disk_bytes(fresh=True)  # the cached size may predate a deletion
    if used + adding_bytes <= limit:
        return
    if adding_bytes:
        raise QuotaError(f"This import needs {size_text(adding_bytes)} more, and your workspace already uses "
                         f"{size_text(used)} of its {size_text(limit)}: {FREE_DISK}.")
    raise QuotaError(f"Your workspace uses {size_text(used)} of its {size_text(limit)}: {FREE_DISK}.")


def check_job_start(ignore: str | None = None) -> None:
    """Refuse a background job when the workspace has the most jobs allowed waiting or running
    (`jobs_queued`; `ignore`: the job being started, already recorded as queued). Past `jobs_running` a
    job is not refused: it waits in line until one of the others ends."""
    limit = int(limits().jobs_queued)
    if not limit:
        return
    active = [job for job in running_jobs() if job != ignore]
    if len(active) >= limit:
        pages = sorted({JOB_PAGES.get(job.split("/")[0], "") for job in active} - {""},
                       key=list(JOB_PAGES.values()).index)
        where = f" on the {' or '.join(pages)} page" if pages else ""
        raise QuotaError(f"You already have {_plural(len(active), 'job')} waiting or running, the most allowed "
                         f"here: wait for one to finish or stop {'it' if len(active) == 1 else 'one'}{where}.")


def check_import(dataset: str, new: bool, sizes: list[int]) -> None:
    """Refuse, before anything is written, an import of files of these sizes over any limit."""
    if new:
        check_new_dataset()
    check_images(dataset, len(sizes))
    check_disk(sum(sizes))


@contextlib.contextmanager
def job_slot(ignore: str | None = None):
    """Hold the workspace's job-start lock while checking disk space and jobs waiting or running, and while
    the caller records its new job, so two starts at once cannot both take the last place."""
    with workspace.file_lock("job-start.lock"):
        check_disk()
        check_job_start(ignore)
        yield
