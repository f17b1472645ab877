"""The small process that waits in line for a job
(`python -m imgcls.jobs.launcher STATUS DEVICE TICKET -- PYTHON-ARGS`).

It loads no torch (a few MiB, not hundreds): it holds the job's ticket, keeps the job's status file saying
its place in line, and when a slot frees it becomes the job, `python PYTHON-ARGS` (`-m imgcls train …`), in
the same process (the pid the page knows stays right), told its GPU or its share of the cores. Stop before
its turn ends it here.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from imgcls.jobs import procs, slots
from imgcls.jobs.statusfile import STARTING, STOPPED, WAITING, State, write


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv or argv.index("--") != 3:
        print("usage: python -m imgcls.jobs.launcher STATUS DEVICE TICKET -- PYTHON-ARGS…", file=sys.stderr)
        return 2
    path, device, number, args = Path(argv[0]), argv[1], int(argv[2]), argv[4:]
    asked = {"stop": False}
    signal.signal(signal.SIGTERM, lambda *_: asked.update(stop=True))
    pid = os.getpid()
    if not slots.adopt(number, pid, procs.started_at(pid)):  # whoever queued it is gone: join the line anew
        number = slots.enqueue(device, pid, procs.started_at(pid), str(path))
    slot = slots.wait_turn(number, should_stop=lambda: asked["stop"],
                           on_outlook=lambda look: write(path, state=State.QUEUED, message=WAITING,
                                                         **waiting_fields(number, look)))
    if slot is not None and asked["stop"]:
        slots.release(slot, pid)
        slot = None
    if slot is None:
        write(path, state=State.CANCELLED, queue=None, wait=None, finished=time.time(), message=STOPPED)
        return 0
    write(path, state=State.RUNNING, slot=slot, queue=None, wait=None, started=time.time(), message=STARTING)
    env = {**os.environ, **slots.slot_env(slot)}
    command = [sys.executable, *args]
    sys.stdout.flush()
    if os.name == "posix":  # the same process becomes the job: its lease and pid stay valid
        os.execve(sys.executable, command, env)
    code = subprocess.call(command, env=env)
    slots.release(slot, pid)
    return code


def waiting_fields(number: int, look: dict) -> dict:
    """What a waiting job's status file says of its outlook: its place ("queue"), and under "wait" its
    ticket, when it is expected to start (seconds since the epoch, None when that cannot be told yet), how
    many finished jobs of which kind that rests on, and whether its owner's own jobs hold it back."""
    start = None if look["seconds"] is None else round(time.time() + look["seconds"], 1)
    return {"queue": look["place"], "wait": {"ticket": number, "start": start, "from": look["from"],
                                             "kind": look["kind"], "held": look["held"]}}


if __name__ == "__main__":
    sys.exit(main())
