"""The health check as a background process, so a browser refresh or a page switch does not lose it.

Its state lives in datasets/<name>/health-status.json (atomic writes); the Review page polls it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Callable

from . import health, quotas, workspace

ROOT = Path(__file__).resolve().parents[1]  # the repository root: `python -m imgcls` runs from here
STATUS_FILE, LOG_FILE = "health-status.json", "health-log.txt"
JOB_STATES = ("running", "done", "failed", "cancelled")
_GRACE_S = 30.0  # a job just started may not have its pid written yet


def _status_path(name: str) -> Path:
    return workspace.dataset_dir(name) / STATUS_FILE


def _write_status(name: str, **fields) -> dict:
    status = workspace.read_json(_status_path(name), {}) or {}
    status.update(fields, updated=time.time())
    workspace.atomic_write_json(_status_path(name), status)
    return status


def _alive(pid) -> bool:
    from .runs import pid_alive

    return pid_alive(pid)


def job_status(name: str) -> dict:
    """The background check's status ({} if none ever ran); a running one whose process vanished reads as failed."""
    status = workspace.read_json(_status_path(name), {}) or {}
    just_made = status.get("pid") is None and time.time() - float(status.get("started") or 0) < _GRACE_S
    if status.get("state") == "running" and not just_made and not _alive(status.get("pid")):
        status = dict(status, state="failed",
                      message="The check stopped unexpectedly (a server restart or a crash): run it again.")
    return status


def start(name: str, device: str = "cpu") -> None:
    """Start the check as a background process; does nothing while a check of this dataset is running."""
    workspace.read_manifest(name)  # a missing dataset fails here, not in the background
    if job_status(name).get("state") == "running":
        return
    folder = workspace.dataset_dir(name)
    with quotas.job_slot():  # a QuotaError when the workspace runs the most jobs allowed, or is full
        _write_status(name, state="running", progress=0.0, message="Starting the check…", pid=None,
                      started=time.time(), finished=None, device=device)
    try:
        with open(folder / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "imgcls", "health", name, "--device", device, "--job"],
                cwd=ROOT, env=workspace.job_env(),
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True,  # its own process group: a server restart does not take it down
            )
    except OSError as exc:
        _write_status(name, state="failed", finished=time.time(), message=f"The check could not start: {exc}")
        raise
    _write_status(name, pid=proc.pid)


def _failure_message(name: str, exc: BaseException) -> str:
    """A plain sentence for a failed check; the traceback goes to the dataset's health-log.txt."""
    try:  # training's own wording (out of memory → what to change); torch is loaded by now
        from .train import _plain_error
        text = _plain_error(exc)
    except Exception:  # noqa: BLE001 - torch itself failed to load: the bare first line
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    message = f"The check stopped with an error: {text}" + ("" if text.endswith((".", "!", "?")) else ".")
    log = workspace.dataset_dir(name) / LOG_FILE
    if log.exists():
        with contextlib.suppress(OSError), open(log, "a", encoding="utf-8") as fh:
            traceback.print_exception(exc, file=fh)
        message += f" The details are in datasets/{name}/{LOG_FILE}."
    return message


def run_job(name: str, device: str = "cpu", echo: Callable[[float, str], None] | None = None) -> dict:
    """Run the check in this process, keeping health-status.json up to date (the `--job` path of the CLI)."""
    last = {"t": 0.0}

    def progress(fraction: float, message: str) -> None:
        if echo:
            echo(fraction, message)
        if time.time() - last["t"] > 0.3 or fraction >= 1:  # a few writes a second at most
            _write_status(name, progress=round(min(max(float(fraction), 0.0), 1.0), 4), message=message)
            last["t"] = time.time()

    before = workspace.read_json(_status_path(name), {}) or {}
    started = before.get("started") if before.get("state") == "running" else None
    _write_status(name, state="running", pid=os.getpid(), progress=0.0, message="Starting the check…",
                  started=started or time.time(), finished=None)
    try:
        report = health.check(name, progress=progress, device=device)
    except BaseException as exc:
        stopped = isinstance(exc, KeyboardInterrupt)
        _write_status(name, state="cancelled" if stopped else "failed", finished=time.time(),
                      message="Stopped by the user." if stopped else _failure_message(name, exc))
        raise
    _write_status(name, state="done", progress=1.0, finished=time.time(), message="Finished")
    return report


def stop_job(name: str, grace_s: float = 2.0) -> dict:
    """Stop a running check (what it found so far is dropped); returns the status afterwards."""
    status = job_status(name)
    pid = status.get("pid")
    if status.get("state") != "running":
        return status
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(int(pid), signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            for kill in (os.killpg, os.kill):  # its process group when start() made one, else the process
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    kill(int(pid), signal.SIGKILL)
    return _write_status(name, state="cancelled", finished=time.time(), message="Stopped by the user.")
