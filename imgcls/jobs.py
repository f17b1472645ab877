"""Training jobs as background processes: start, queue (one per device), stop, re-attach.

A process rather than a thread: a crash or out-of-memory kills only the job, Stop is immediate, and the
job outlives a browser refresh or a server restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from . import quotas, runs, workspace

ROOT = Path(__file__).resolve().parents[1]
WAITING = "Waiting for the device"  # the status message of a job queued behind another on its device
STARTING = "Loading PyTorch and the model"  # a job's message once it holds its device, while it imports
_CLAIMED: dict = {}  # device → the open lock file this process holds until it exits (claim_device)


def _lock_path(device: str) -> Path:
    # one lock per device for the whole server: two people's jobs take turns instead of sharing the cores
    path = workspace.server_root() / "locks" / f"{device.split(':')[0]}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def claim_device(run_id: str) -> None:
    """In a job's process, before it imports torch (seconds): wait for the run's device, saying so in its
    status, then mark the run running, so the page shows it started as soon as the device is free. The lock
    is held until the process exits (the kernel drops it then); device_lock() in this process passes."""
    device = str(runs.read_config(run_id).get("device") or "cpu").split(":")[0]
    fh = open(_lock_path(device), "a+")  # noqa: SIM115 - kept open on purpose, for the life of the job
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        runs.write_status(run_id, state="queued", message=WAITING, pid=os.getpid())
        fcntl.flock(fh, fcntl.LOCK_EX)
    _CLAIMED[device] = fh
    runs.write_status(run_id, state="running", started=time.time(), message=STARTING, pid=os.getpid())


@contextlib.contextmanager
def device_lock(device: str, on_wait=None):
    """Hold the lock of one device for the duration of a job; others wait (queued) meanwhile."""
    if device.split(":")[0] in _CLAIMED:  # this job process claimed it already, before loading torch
        yield
        return
    with open(_lock_path(device), "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fh, fcntl.LOCK_EX)  # the kernel drops the lock if the holder dies
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def start(run_id: str, extra_args: list[str] | None = None) -> int:
    """Start `python -m imgcls train --run RUN` in the background and record its pid; a QuotaError (the run
    marked failed, saying why) when the workspace runs the most jobs allowed or is out of disk space."""
    try:
        with quotas.job_slot(ignore=f"run/{run_id}"):
            return _spawn(run_id, extra_args)
    except quotas.QuotaError as exc:
        runs.write_status(run_id, state="failed", finished=time.time(), message=str(exc))
        raise


def _spawn(run_id: str, extra_args: list[str] | None) -> int:
    folder = runs.run_dir(run_id)
    log = open(folder / "log.txt", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgcls", "train", "--run", run_id, *(extra_args or [])],
        cwd=ROOT, env=workspace.job_env(),
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: a server restart does not take it down
    )
    log.close()
    runs.write_status(run_id, pid=proc.pid)
    return proc.pid


def resume(run_id: str) -> int:
    """Continue an interrupted or stopped run from its last checkpoint, in the background."""
    status = runs.read_status(run_id)
    if status.get("state") in runs.ACTIVE_STATES:
        return int(status.get("pid") or 0)  # already going: a second click does nothing
    with quotas.job_slot(ignore=f"run/{run_id}"):  # refused: the run stays as it was, resumable later
        runs.write_status(run_id, state="queued", pid=None, created=time.time(), message="Resuming")
        return _spawn(run_id, ["--resume", run_id])


def stop(run_id: str, grace_s: float = 1.5) -> dict:
    """Stop a run within about two seconds; the best checkpoint already on disk is kept, and the run is then
    evaluable like a finished one (marked as stopped early)."""
    status = runs.read_status(run_id)
    pid = status.get("pid")
    if status.get("state") not in runs.ACTIVE_STATES or not runs.pid_alive(pid):
        return status
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(pid), signal.SIGTERM)  # the trainer alone: it stops its DataLoader workers itself
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and runs.pid_alive(pid):
        time.sleep(0.05)
    if runs.pid_alive(pid):  # still inside a long tensor operation: end it now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), signal.SIGKILL)
        time.sleep(0.1)
    if runs.read_status(run_id).get("state") not in ("cancelled", "done", "failed"):
        runs.write_status(run_id, state="cancelled", message="Stopped by the user; the best model so far is kept.")
    if runs.read_status(run_id).get("state") == "cancelled" and runs.kept_model(run_id) is None:
        runs.write_status(run_id, message="Stopped by the user before the first model was saved: there is "
                                          "nothing to evaluate.")
    return runs.read_status(run_id)


def queue_position(run_id: str) -> int:
    """1 for the first run waiting for its device, 2 for the next, …; 0 when not queued."""
    status = runs.read_status(run_id)
    if status.get("state") != "queued":
        return 0
    waiting = [r for r in runs.list_runs() if runs.read_status(r).get("state") == "queued"
               and runs.read_status(r).get("device") == status.get("device")]
    waiting.sort(key=lambda r: runs.read_status(r).get("created", 0))
    return waiting.index(run_id) + 1 if run_id in waiting else 0


def active_runs() -> list[str]:
    """Runs queued or running right now."""
    return [r for r in runs.list_runs() if runs.read_status(r).get("state") in runs.ACTIVE_STATES]
