"""Inside a job's own process: mark it running, turn Stop into a stop token, write how it ended.

Stop sends SIGTERM; the handler only sets the token, and the job's loops look at it between steps (through
`token.check()` or a progress callback), so a job ends at a clean point and saves what it has. Work nested
in a job (an experiment's training runs) shares the job's token.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
import signal
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

from imgcls.jobs import index, procs
from imgcls.jobs.statusfile import STOPPED, State, write


class Cancelled(Exception):
    """The job was asked to stop; raised at the next point where it can stop cleanly."""


class StopToken:
    """Set when the job is asked to stop (SIGTERM, or by code); loops check it between steps."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def set(self) -> None:
        self._event.set()

    @property
    def requested(self) -> bool:
        return self._event.is_set()

    def check(self) -> None:
        """Raise Cancelled if a stop was asked for."""
        if self._event.is_set():
            raise Cancelled()


_CURRENT: contextvars.ContextVar[StopToken | None] = contextvars.ContextVar("imgcls_stop_token", default=None)


def current_token() -> StopToken:
    """The stop token of the job this code runs in (a fresh, never-set one outside any job)."""
    return _CURRENT.get() or StopToken()


@contextlib.contextmanager
def stop_token():
    """The job's stop token for the block: SIGTERM sets it (in the main thread); nested blocks share it."""
    outer = _CURRENT.get()
    if outer is not None:
        yield outer
        return
    token = StopToken()
    reset = _CURRENT.set(token)
    previous = None
    if threading.current_thread() is threading.main_thread():
        previous = signal.signal(signal.SIGTERM, lambda *_: token.set())
    try:
        yield token
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        _CURRENT.reset(reset)


def plain_error(exc: BaseException) -> str:
    """One plain line for an error: out of memory says what to change; otherwise its first line."""
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if type(exc).__name__ == "OutOfMemoryError" or "out of memory" in text.lower():
        return "The device ran out of memory: try a smaller batch size or image size."
    return text


def failure_message(exc: BaseException, what: str | None = None, log: Path | None = None,
                    shown_log: str | None = None) -> str:
    """The sentence a failed job shows: `what` stopped with an error, in plain words; the traceback goes to
    its log, which the sentence names (as `shown_log`, a path in the workspace)."""
    text = plain_error(exc)
    message = f"{what} stopped with an error: {text}" if what else text
    message += "" if message.endswith((".", "!", "?")) else "."
    if log is not None and Path(log).exists():
        with contextlib.suppress(OSError), open(log, "a", encoding="utf-8") as fh:
            traceback.print_exception(exc, file=fh)
        message += f" The details are in {shown_log or Path(log).name}."
    return message


@contextlib.contextmanager
def running(path: Path, what: str | None = None, log: Path | None = None, shown_log: str | None = None,
            stopped: str = STOPPED, label: str | None = None, **fields):
    """Run the block as the job `label` whose status file is `path`: running now, then done, cancelled (its
    stop token was set) or failed (with a plain sentence); yields the stop token."""
    with stop_token() as token:
        pid = os.getpid()
        write(path, state=State.RUNNING, pid=pid, pid_started=procs.started_at(pid), started=time.time(),
              finished=None, queue=None, **fields)
        index.note(path, label or str(path))
        try:
            yield token
        except BaseException as exc:
            cancelled = token.requested or isinstance(exc, (Cancelled, KeyboardInterrupt))
            write(path, state=State.CANCELLED if cancelled else State.FAILED, finished=time.time(),
                  message=stopped if cancelled else failure_message(exc, what, log, shown_log))
            raise
        write(path, state=State.DONE, progress=1.0, finished=time.time(), message="Finished")


def progress_writer(path: Path, echo: Callable[[float, str], None] | None = None,
                    every_s: float = 0.3) -> Callable[[float, str], None]:
    """A progress callback (fraction, message) that writes the status a few times a second at most, and
    stops the job there when it was asked to stop."""
    token = current_token()
    last = {"t": 0.0}

    def progress(fraction: float, message: str) -> None:
        token.check()
        if echo:
            echo(fraction, message)
        if time.time() - last["t"] > every_s or fraction >= 1:
            write(path, progress=round(min(max(float(fraction), 0.0), 1.0), 4), message=message)
            last["t"] = time.time()
    return progress
