"""Shareable demos: a run's predict view, published under /demo?run=<id> until unpublished."""

from __future__ import annotations


from . import runs, workspace


def _path():
    return workspace.home() / "demos.json"


def _locked():
    """One writer of demos.json at a time (two tabs publishing at once lose nothing)."""
    return workspace.file_lock("demos.lock")


def published() -> list[str]:
    """Ids of the runs whose demo link works."""
    return list(workspace.read_json(_path(), {}).get("published", []))


def is_published(run_id: str | None) -> bool:
    """Whether a demo link for this run should open (unknown ids simply are not)."""
    return bool(run_id) and run_id in published()


def publish(run_id: str) -> None:
    """Open the demo link of a run with a saved model: finished, or stopped early after saving one."""
    config = workspace.read_json(runs.run_dir(run_id) / "config.json", {}) or {}
    if not runs.usable(run_id, config, runs.read_status(run_id)):
        raise workspace.WorkspaceError("Only a run with a saved model (finished, or stopped early after saving "
                                       "one) can be shared as a demo.")
    with _locked():
        workspace.atomic_write_json(_path(), {"published": sorted(set(published()) | {run_id})})


def unpublish(run_id: str) -> None:
    """Close the demo link of a run; the run itself is untouched."""
    with _locked():
        workspace.atomic_write_json(_path(), {"published": [r for r in published() if r != run_id]})
