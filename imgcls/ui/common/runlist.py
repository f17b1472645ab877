"""The list of training runs as the pages show it, read without importing the training engine (torch)."""

from __future__ import annotations

from imgcls.store import runnames, runs, workspace


def run_infos() -> list[tuple[str, dict, dict]]:
    """(id, config, status) of every run, newest first: a few small JSON reads each. Every config has a
    name (runs made before names get their readable stand-in)."""
    out = []
    for run_id in runs.list_runs():
        try:
            config = runs.read_config(run_id)
            out.append((run_id, {**config, "name": runnames.display_name(run_id, config)}, runs.read_status(run_id)))
        except (workspace.WorkspaceError, OSError, ValueError):
            continue  # a run folder being deleted or half-written: skip it this time
    return out
