"""Shareable demos: a run's predict view, published under /demo?run=<id> until unpublished."""

from __future__ import annotations

import contextlib
import fcntl

from . import runs, workspace


def _path():
    return workspace.home() / "demos.json"


@contextlib.contextmanager
def _locked():
    """One writer of demos.json at a time (two tabs publishing at once lose nothing)."""
    path = workspace.home() / "locks" / "demos.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def published() -> list[str]:
    """Ids of the runs whose demo link works."""
    return list(workspace.read_json(_path(), {}).get("published", []))


def is_published(run_id: str | None) -> bool:
    """Whether a demo link for this run should open (unknown ids simply are not)."""
    return bool(run_id) and run_id in published()


def publish(run_id: str) -> None:
    """Open the demo link of a finished run with a saved model."""
    status = runs.read_status(run_id)
    if status.get("state") != "done" or not (runs.run_dir(run_id) / "model.safetensors").exists():
        raise workspace.WorkspaceError("Only a finished run with a saved model can be shared as a demo.")
    with _locked():
        workspace.atomic_write_json(_path(), {"published": sorted(set(published()) | {run_id})})


def unpublish(run_id: str) -> None:
    """Close the demo link of a run; the run itself is untouched."""
    with _locked():
        workspace.atomic_write_json(_path(), {"published": [r for r in published() if r != run_id]})
