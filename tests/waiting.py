"""Waiting in tests for something another process does: poll a check until it answers, or fail saying what."""

from __future__ import annotations

import time


def wait_for(what: str, check, timeout: float = 30.0, poll_s: float = 0.1):
    """What `check()` returns once it is truthy; an AssertionError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"timed out waiting for {what}")
