"""The health check as a background job, so a browser refresh or a page switch does not lose it.

Its status lives in datasets/<name>/health-status.json (the job system's format); the Review page polls it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from imgcls import jobs
from imgcls.health import check as health
from imgcls.store import quotas, workspace

STATUS_FILE, LOG_FILE = "health-status.json", "health-log.txt"
STARTING = "Starting the check…"


def status_path(name: str) -> Path:
    """The dataset's health-check status file."""
    return workspace.dataset_dir(name) / STATUS_FILE


def job_status(name: str) -> dict:
    """The background check's status ({} if none ever ran); one whose process vanished reads as interrupted."""
    return jobs.status(status_path(name))


def start(name: str, device: str = "cpu") -> None:
    """Queue the check as a background job; does nothing while a check of this dataset is queued or running."""
    workspace.read_manifest(name)  # a missing dataset fails here, not in the background
    if job_status(name).get("state") in jobs.ACTIVE:
        return
    with quotas.job_slot():  # a QuotaError when the workspace runs the most jobs allowed, or is full
        jobs.submit(status_path(name), ["health", name, "--device", device, "--job"], device,
                    log=workspace.dataset_dir(name) / LOG_FILE, label=f"health/{name}", message=STARTING)


def run_job(name: str, device: str = "cpu", echo: Callable[[float, str], None] | None = None) -> dict:
    """Run the check in this process as the dataset's job, keeping its status up to date (the `--job` path
    of the CLI); a stop request ends it at its next progress step."""
    path = status_path(name)
    with jobs.slots.hold(device), jobs.running(path, label=f"health/{name}", what="The check", log=path.with_name(LOG_FILE),
                                               shown_log=f"datasets/{name}/{LOG_FILE}", progress=0.0,
                                               message=STARTING):
        return health.check(name, progress=jobs.progress_writer(path, echo), device=device)


def stop_job(name: str, grace_s: float = 2.0) -> dict:
    """Stop a queued or running check (what it found so far is dropped); the status afterwards."""
    return jobs.stop(status_path(name), grace_s)
