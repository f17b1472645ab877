"""`python -m imgcls.jobs.placed PYTHON-ARGS…`: a job that a cluster scheduler (Ray) has placed already.

It runs `python PYTHON-ARGS` (`-m MODULE …`, `-c CODE …` or `SCRIPT …`) in this same process, with the
job's `slots.hold(device)` passing at once: its GPU or cores are its own, and the server's slot queue,
which tells holders apart by pid, cannot judge a process on another machine.
"""

from __future__ import annotations

import contextlib
import os
import runpy
import sys


@contextlib.contextmanager
def _placed(device: str, *_, **__):
    """Hold nothing and wait for nothing: the slot is the one the scheduler gave."""
    yield os.environ.get("IMGCLS_JOB_SLOT", device)


def main(argv: list[str]) -> None:
    """Run `python ARGS` in this process as a job placed by the cluster."""
    from imgcls.jobs import slots

    slots.hold = _placed  # the job's own hold (and a nested one, an experiment's runs) passes at once
    if argv[:1] == ["-m"] and len(argv) > 1:
        sys.argv = [argv[1], *argv[2:]]
        runpy.run_module(argv[1], run_name="__main__", alter_sys=True)
    elif argv[:1] == ["-c"] and len(argv) > 1:
        sys.argv = ["-c", *argv[2:]]
        exec(compile(argv[1], "<string>", "exec"), {"__name__": "__main__"})
    elif argv:
        sys.argv = list(argv)
        runpy.run_path(argv[0], run_name="__main__")
    else:
        sys.exit("usage: python -m imgcls.jobs.placed (-m MODULE | -c CODE | SCRIPT) ARGS…")


if __name__ == "__main__":
    main(sys.argv[1:])
