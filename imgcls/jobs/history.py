"""How long finished jobs took on this server, by kind and device: what the queue's wait estimates are made of.

    <server>/jobs/history.json   [{"kind": "run", "device": "cpu", "seconds": 41.2, "finished": …}, …] oldest first

Only jobs that finished their work are kept (a stopped or crashed job says nothing about how long the next one
takes), the newest KEEP of them. A typical duration is the median of the latest RECENT of one kind on one kind
of device: the median, so one unusually long run does not move every estimate.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import filelock

from imgcls.store import workspace

KEEP = 300  # entries on file: enough for every kind on every device
RECENT = 12  # finished jobs a typical duration is taken from
_cache: dict = {}  # (path, mtime, size) → entries, so a poll re-reads the file only when it changed


def _file() -> Path:
    return workspace.server_root() / "jobs" / "history.json"


def kind_of(label: str | None) -> str:
    """The kind of a job from its label: 'run' for 'run/<id>', 'health' for 'health/<dataset>', …"""
    return str(label or "").split("/", 1)[0] or "job"


def device_class(slot: str | None) -> str:
    """What a slot is, for comparing durations: 'cpu' for cpu#1, 'cuda' for any GPU, else its name."""
    name = str(slot or "cpu")
    return "cpu" if name.startswith("cpu") else "cuda" if name.startswith("cuda") else name


def entries() -> list[dict]:
    """Every kept entry, oldest first ([] before the first job finished)."""
    path = _file()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return []
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if _cache.get("key") != key:
        try:
            data = workspace.read_json(path, [])
        except (OSError, ValueError):  # torn by hand or by a full disk: start a new history
            data = []
        _cache.update(key=key, value=[e for e in data if isinstance(e, dict)] if isinstance(data, list) else [])
    return _cache["value"]


def record(kind: str, device: str, seconds: float, finished: float | None = None) -> None:
    """Add one finished job: its kind ('run'), the kind of device it ran on ('cpu', 'cuda') and how long it
    held its slot."""
    if not seconds >= 0:
        return
    path = _file()
    path.parent.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(str(path.with_name("history.lock"))):
        kept = [*entries(), {"kind": kind, "device": device, "seconds": round(float(seconds), 3),
                             "finished": finished or time.time()}]
        workspace.atomic_write_json(path, kept[-KEEP:])


def typical(kind: str, device: str, among: list[dict] | None = None) -> tuple[float, int] | None:
    """The typical duration of a job of `kind` on `device` ('cpu', 'cuda') and how many finished jobs it comes
    from, or None when none has finished here yet."""
    done = [e["seconds"] for e in (entries() if among is None else among)
            if e.get("kind") == kind and e.get("device") == device and isinstance(e.get("seconds"), (int, float))]
    if not done:
        return None
    latest = done[-RECENT:]
    return float(statistics.median(latest)), len(latest)
