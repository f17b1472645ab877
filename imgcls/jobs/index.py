"""Which jobs a workspace has queued or running: each job notes its status file here as it is submitted or
starts, so the quotas count every kind of job without knowing where each kind keeps its files.

    <workspace>/jobs/active/<key>.json   {"label": "run/<id>", "status": "<its status file>", "noted": …}
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from imgcls.jobs import statusfile
from imgcls.store import workspace


def _folder(root: Path | None = None) -> Path:
    return Path(root or workspace.home()) / "jobs" / "active"


def note(path: Path, label: str) -> None:
    """Record that the job `label` (such as 'run/<id>'), whose status file is `path`, is queued or running."""
    key = hashlib.sha1(str(Path(path).resolve()).encode()).hexdigest()[:20]
    folder = _folder()
    folder.mkdir(parents=True, exist_ok=True)
    workspace.atomic_write_json(folder / f"{key}.json",
                                {"label": label, "status": str(Path(path).resolve()), "noted": time.time()})


def active(root: Path | None = None) -> list[str]:
    """Labels of the workspace's jobs queued or running now, oldest first; jobs sharing one process (an
    experiment's training runs) count once, under the first noted."""
    folder = _folder(root)
    if not folder.is_dir():
        return []
    entries = []
    for entry in folder.glob("*.json"):
        noted = workspace.read_json(entry)
        status = statusfile.read(Path(noted["status"])) if isinstance(noted, dict) and noted.get("status") else {}
        if status.get("state") not in statusfile.ACTIVE:
            entry.unlink(missing_ok=True)  # ended (or never was): nothing to count
            continue
        entries.append((float(noted.get("noted") or 0), noted["label"], status.get("pid")))
    seen, out = set(), []
    for _, label, pid in sorted(entries):
        if pid is None or pid not in seen:
            out.append(label)
            seen.add(pid)
    return out
