"""Training runs as background jobs: start, resume, stop, and their place in line.

The job is `python -m imgcls train --run ID` (imgcls.jobs runs it when a slot of the run's device frees);
the run folder is its contract with the pages.
"""

from __future__ import annotations

import time

from imgcls import jobs
from imgcls.store import quotas, runs


def start(run_id: str, extra_args: list[str] | None = None) -> int:
    """Queue the prepared run to train in the background; its process's pid. A QuotaError (the run marked
    failed, saying why) when the workspace runs the most jobs allowed or is out of disk space."""
    try:
        with quotas.job_slot(ignore=f"run/{run_id}"):
            return _submit(run_id, extra_args or [])
    except quotas.QuotaError as exc:
        runs.write_status(run_id, state="failed", finished=time.time(), message=str(exc))
        raise


def _submit(run_id: str, extra: list[str], **fields) -> int:
    device = str(runs.read_config(run_id).get("device") or "cpu")
    return jobs.submit(runs.status_path(run_id), ["train", "--run", run_id, *extra], device, label=f"run/{run_id}",
                       log=runs.run_dir(run_id) / "log.txt", **fields)


def resume(run_id: str) -> int:
    """Continue an interrupted or stopped run from its last checkpoint, in the background."""
    status = runs.read_status(run_id)
    if status.get("state") in runs.ACTIVE_STATES:
        return int(status.get("pid") or 0)  # already going: a second click does nothing
    with quotas.job_slot(ignore=f"run/{run_id}"):  # refused: the run stays as it was, resumable later
        return _submit(run_id, ["--resume", run_id], message="Resuming")


def stop(run_id: str, grace_s: float = 1.5) -> dict:
    """Stop a run within about two seconds; the best checkpoint already on disk is kept, and the run is then
    evaluable like a finished one (marked as stopped early)."""
    if runs.read_status(run_id).get("state") not in runs.ACTIVE_STATES:
        return runs.read_status(run_id)
    jobs.stop(runs.status_path(run_id), grace_s, message="Stopped by the user; the best model so far is kept.")
    if runs.read_status(run_id).get("state") == "cancelled" and runs.kept_model(run_id) is None:
        runs.write_status(run_id, message="Stopped by the user before the first model was saved: there is "
                                          "nothing to evaluate.")
    return runs.read_status(run_id)


def queue_position(run_id: str) -> int:
    """1 for the next run in line for its device, 2 for the one after, …; 0 when not waiting in line."""
    status = runs.read_status(run_id)
    return int(status.get("queue") or 0) if status.get("state") == "queued" else 0


def active_runs() -> list[str]:
    """Runs queued or running right now."""
    return [r for r in runs.list_runs() if runs.read_status(r).get("state") in runs.ACTIVE_STATES]
