"""The export bundle (imgcls.evaluate.export.export_zip) built as a background job, so a page stays
responsive while the model files are converted and checked (tens of seconds: torch.export, ONNX, and TFLite
and Core ML where their converters are installed), and a refresh does not lose it.

runs/<id>/export-status.json is its status (the job system's format); the bundle lands beside it.
"""

from __future__ import annotations

from pathlib import Path

from imgcls import jobs
from imgcls.store import quotas, runs

STATUS_FILE = "export-status.json"


def status_path(run_id: str) -> Path:
    """The run's export-job status file."""
    return runs.run_dir(run_id) / STATUS_FILE


def status(run_id: str) -> dict:
    """The export job's status ({} when none ran)."""
    return jobs.status(status_path(run_id))


def ready(run_id: str) -> Path | None:
    """The bundle of the run's current model, name and outcome, if it is built."""
    from imgcls.evaluate.export import bundle_path

    path = bundle_path(run_id)
    return path if path.exists() else None


def start(run_id: str) -> None:
    """Queue the bundle's build; nothing happens while one is queued or running, or when it is built."""
    if status(run_id).get("state") in jobs.ACTIVE or ready(run_id):
        return
    with quotas.job_slot():
        jobs.submit(status_path(run_id), ["export", run_id, "--bundle"], "cpu",
                    log=runs.run_dir(run_id) / "export-log.txt", label=f"export/{run_id}",
                    message="Waiting to start")


def stop(run_id: str) -> dict:
    """Stop a queued or running build (nothing half-made is kept)."""
    return jobs.stop(status_path(run_id))


def run_job(run_id: str) -> Path:
    """Build the bundle in this process as the run's export job (the CLI's `export RUN --bundle`)."""
    from imgcls.evaluate.export import export_zip

    path = status_path(run_id)
    with jobs.slots.hold("cpu"), jobs.running(path, label=f"export/{run_id}", what="The export",
                                              log=path.with_name("export-log.txt"),
                                              shown_log=f"runs/{run_id}/export-log.txt",
                                              message="Converting the model and checking each file"):
        return export_zip(run_id)
