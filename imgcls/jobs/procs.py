"""The processes of background jobs: start one, tell whether it still runs, end it.

A process is known by its pid together with its start time: after a reboot, or once the system has handed
a finished job's pid to another program, the pid alone would read as alive, and Stop would end a stranger.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

_SAME_START_S = 1.0  # start times read by two processes agree to well within this
_CHILDREN: list[subprocess.Popen] = []  # started by this process: reaped once they end (no zombies)


def started_at(pid) -> float | None:
    """When the process `pid` started (seconds since the epoch), or None when there is none."""
    try:
        return psutil.Process(int(pid)).create_time()
    except (psutil.Error, TypeError, ValueError):
        return None


def alive(pid, started: float | None = None) -> bool:
    """Whether the process `pid` still runs (not a zombie) and, when `started` is known, is the same one
    that started then, not a later process given the same number."""
    try:
        proc = psutil.Process(int(pid))
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - float(started)) < _SAME_START_S
    except psutil.AccessDenied:
        return True  # someone else's process holds the number: alive, though not ours to signal
    except (psutil.Error, TypeError, ValueError):
        return False


def spawn(argv: list[str], log: Path, env: dict, cwd: Path) -> tuple[int, float | None]:
    """Start `argv` in the background with its output appended to `log`; its pid and start time. It runs in
    a session of its own, so a server restart does not take it down."""
    _reap()
    detach = {"start_new_session": True} if os.name == "posix" else \
        {"creationflags": getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)}
    with open(log, "ab") as out:
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, **detach)
    _CHILDREN.append(proc)
    return proc.pid, started_at(proc.pid)


def _reap() -> None:
    for proc in list(_CHILDREN):
        if proc.poll() is not None:
            _CHILDREN.remove(proc)


def python_argv(*args: str) -> list[str]:
    """The command line that runs `python -m imgcls ARGS…` with this interpreter."""
    return [sys.executable, "-m", "imgcls", *args]


def end(pid, started: float | None, grace_s: float) -> bool:
    """Ask the process to stop (SIGTERM: a job finishes its current step and saves), and end it with its
    children after `grace_s` if it is still there; True when it is gone."""
    if not alive(pid, started):
        return True
    with contextlib.suppress(psutil.Error):
        psutil.Process(int(pid)).terminate()
    if _wait_gone(pid, started, grace_s):
        return True
    try:  # inside a long tensor operation: end it now, with the DataLoader workers it started
        proc = psutil.Process(int(pid))
        family = [*proc.children(recursive=True), proc]
    except psutil.Error:
        return True
    if os.name == "posix" and _leads_group(int(pid)):
        with contextlib.suppress(OSError):
            os.killpg(int(pid), signal.SIGKILL)
    for member in family:
        with contextlib.suppress(psutil.Error):
            member.kill()
    return _wait_gone(pid, started, 5.0)  # a killed process can take a moment to let go of its memory


def _leads_group(pid: int) -> bool:
    try:
        return os.getpgid(pid) == pid
    except OSError:
        return False


def _wait_gone(pid, started, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while alive(pid, started):
        _reap()
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)
    return True
