"""The status file every background job keeps: one format, one set of states.

A training run's `runs/<id>/status.json`, an experiment's `experiments/<id>/status.json` and a dataset's
`health-status.json` all hold: state, progress (0–1), message, pid and pid_started (the process and when it
started), created, started, finished, device, slot; and, while queued, queue (its place in line) and wait
(its ticket and when it is expected to start: `imgcls.jobs.launcher.waiting_fields`). Writes are atomic;
a job whose process has gone while it was queued or running reads as interrupted. A job on a Ray cluster
adds backend ("ray"), ray_actor and host, and whether it is still there is asked of Ray.
"""

from __future__ import annotations

import enum
import time
from pathlib import Path

from imgcls.jobs import procs
from imgcls.store import workspace


class State(str, enum.Enum):
    """Where a job is: waiting its turn, running, or ended one of four ways."""

    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"  # stopped by its owner
    INTERRUPTED = "interrupted"  # its process vanished: a server restart, a crash, kill -9


ACTIVE = (State.QUEUED.value, State.RUNNING.value)
FINAL = (State.DONE.value, State.FAILED.value, State.CANCELLED.value, State.INTERRUPTED.value)
GRACE_S = 30.0  # a job made moments ago may not have its process's pid written yet
VANISHED = "It stopped unexpectedly (a server restart or a crash)."
STOPPED = "Stopped by the user."
WAITING = "Waiting for the device"  # queued while other jobs hold every slot it can use
STARTING = "Loading PyTorch and the model"  # holding a slot, while the job's process starts up


def read_raw(path: Path) -> dict:
    """The status as written, without asking whether its process is still there ({} when none)."""
    status = workspace.read_json(Path(path), {})
    return status if isinstance(status, dict) else {}


def write(path: Path, **fields) -> dict:
    """Update some fields of a status file atomically; the new status."""
    status = read_raw(path)
    status.update({k: (v.value if isinstance(v, State) else v) for k, v in fields.items()}, updated=time.time())
    workspace.atomic_write_json(Path(path), status)
    return status


def vanished(status: dict) -> bool:
    """Whether an active job's process has gone (it cannot be queued or running any more)."""
    if status.get("state") not in ACTIVE:
        return False
    if status.get("backend") == "ray":  # it may run on another machine, where its pid tells nothing here
        from imgcls.jobs import raycluster
        return raycluster.vanished(status)
    if status.get("pid") is None:
        made = status.get("created") or status.get("started") or 0
        return time.time() - float(made or 0) >= GRACE_S
    return not procs.alive(status.get("pid"), status.get("pid_started"))


def read(path: Path) -> dict:
    """The job's status; one whose process vanished reads as interrupted, saying so."""
    status = read_raw(path)
    if vanished(status):
        status = dict(status, state=State.INTERRUPTED.value, message=VANISHED, queue=None, wait=None)
    return status


def settle(path: Path) -> dict:
    """Write down 'interrupted' for a job whose process vanished (after a restart), so it reads so for good."""
    status = read(path)
    if status.get("state") == State.INTERRUPTED.value and read_raw(path).get("state") in ACTIVE:
        return write(path, state=State.INTERRUPTED, message=status.get("message"), queue=None, wait=None)
    return status
