"""Background jobs: one way to start, queue, watch and stop everything that runs beside the app.

A job is a command of the CLI (`python -m imgcls train --run ID`, `health NAME --job`, `experiment …`) run
as a process of its own, with a status file as the contract between it and the pages. A process rather
than a thread: a crash or out-of-memory kills only the job, Stop is immediate, and the job outlives a
browser refresh or a server restart.

    submit(status_file, args, device)  queue it; a small launcher waits for a slot, then becomes the job
    status(status_file)                where it is (queued with its place in line, running, how it ended)
    stop(status_file)                  stop it (SIGTERM, then the kill after a grace period)
    running(status_file, …)            inside the job: running → done / failed / cancelled, with a stop token
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from imgcls.jobs import index, procs, raycluster, slots
from imgcls.jobs.runner import (Cancelled, StopToken, current_token, failure_message, plain_error, progress_writer,
                                running)
from imgcls.jobs.statusfile import (ACTIVE, FINAL, STARTING, STOPPED, VANISHED, WAITING, State, read as status, settle,
                                    write as write_status)
from imgcls.store import workspace

ROOT = Path(__file__).resolve().parents[2]  # the repository root: `python -m imgcls` runs from here
QUEUED_MESSAGE = "Waiting to start"

__all__ = ["ACTIVE", "FINAL", "STARTING", "STOPPED", "VANISHED", "WAITING", "Cancelled", "State", "StopToken",
           "current_token", "failure_message", "plain_error", "progress_writer", "running", "settle", "slots",
           "status", "stop", "submit", "write_status"]


def submit(path: Path, args: list[str], device: str = "cpu", log: Path | None = None,
           python_args: list[str] | None = None, label: str | None = None, **fields) -> int:
    """Queue `python -m imgcls ARGS` (or `python PYTHON_ARGS`) as a background job whose status file is
    `path`, to start as soon as a slot of `device` is free, in the order jobs were submitted; the pid of its
    process."""
    path = Path(path).resolve()
    write_status(path, state=State.QUEUED, pid=None, pid_started=None, created=time.time(), started=None,
                 finished=None, progress=0.0, device=device, slot=None, queue=None,
                 **{"message": QUEUED_MESSAGE, **fields})
    if raycluster.address():  # a Ray cluster runs it and keeps the line itself (imgcls.jobs.raycluster)
        command = python_args if python_args is not None else ["-m", "imgcls", *args]
        log = Path(log or path.with_name("log.txt"))
        started = raycluster.submit(path, command, device, log, fields.get("gpus", 1))
        index.note(path, label or str(path))
        return started
    me = os.getpid()
    number = slots.enqueue(device, me, procs.started_at(me), str(path), adopted=False)  # its place: now, not when it starts
    argv = [sys.executable, "-m", "imgcls.jobs.launcher", str(path), device, str(number), "--",
            *(python_args if python_args is not None else ["-m", "imgcls", *args])]
    try:
        pid, started = procs.spawn(argv, Path(log or path.with_name("log.txt")), workspace.job_env(), ROOT)
    except OSError as exc:
        slots.leave(number)
        write_status(path, state=State.FAILED, finished=time.time(), message=f"The job could not start: {exc}")
        raise
    write_status(path, pid=pid, pid_started=started)
    index.note(path, label or str(path))
    return pid


def stop(path: Path, grace_s: float = 2.0, message: str = STOPPED) -> dict:
    """Stop the job (one still in line leaves it; one running finishes its step, or is ended after
    `grace_s`); its status afterwards, cancelled with `message` unless it ended otherwise first."""
    before = status(path)
    if before.get("state") not in ACTIVE:
        return before
    if before.get("backend") == raycluster.BACKEND:  # it may run on another machine: its actor ends it
        raycluster.end(before, grace_s)
    else:
        procs.end(before.get("pid"), before.get("pid_started"), grace_s)
    if status(path).get("state") in (*ACTIVE, State.INTERRUPTED.value):
        write_status(path, state=State.CANCELLED, finished=time.time(), message=message, queue=None)
    return status(path)


def default_device() -> str:
    """The device a job asks for when its owner did not choose: a GPU when the machine has one."""
    found = slots.devices()
    return "cuda" if any(d.startswith("cuda") for d in found) else "mps" if "mps" in found else "cpu"
