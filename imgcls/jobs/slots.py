"""Device slots and the queue in front of them, shared by every job on the server.

Each GPU is a slot of its own; the CPU has `IMGCLS_CPU_JOBS` slots (default 1: one job uses every core, so
two never fight over them). Jobs wait in one first-come, first-served line: a ticket per waiting job,
numbered in the order they came. Whenever anyone looks, the tickets are served in number order, each taking
the first free slot it can use, so a job never passes an earlier one that wants the same device, and a job
for another device does not wait behind them. A slot is held by a lease naming the process (pid and start
time); a process that has gone, even by kill -9, holds nothing.

    <server>/jobs/queue/<number>.json   a waiting job: pid, pid_started, what it asks for, its status file
    <server>/jobs/slots/<slot>.json     the process holding a slot (cuda-1.json for cuda:1)
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from pathlib import Path

import filelock

from imgcls.jobs import procs
from imgcls.store import workspace

CPU = "cpu"


def devices() -> list[str]:
    """The devices jobs can run on: cpu, then one entry per GPU (cuda:0, cuda:1, …) and mps on a Mac.
    `IMGCLS_DEVICES` (such as "cpu,cuda:0,cuda:1") overrides what is found."""
    named = os.environ.get("IMGCLS_DEVICES", "").strip()
    if named:
        return [d.strip() for d in named.split(",") if d.strip()]
    found = [CPU, *(f"cuda:{i}" for i in range(_gpu_count()))]
    return found + (["mps"] if sys.platform == "darwin" else [])


def _gpu_count() -> int:
    """NVIDIA GPUs this process may use, found without loading torch (which takes seconds)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([v for v in visible.split(",") if v.strip() and not v.strip().startswith("-")])
    with contextlib.suppress(OSError):
        return len(list(Path("/proc/driver/nvidia/gpus").iterdir()))
    torch = sys.modules.get("torch")  # elsewhere, only if it is loaded already
    return int(torch.cuda.device_count()) if torch is not None and torch.cuda.is_available() else 0


def cpu_slots() -> int:
    """How many CPU jobs run at once (each gets an equal share of the cores)."""
    try:
        return max(1, int(os.environ.get("IMGCLS_CPU_JOBS", "1")))
    except ValueError:
        return 1


def slot_names() -> list[str]:
    """Every slot: cpu#0 … for the CPU, then one per other device."""
    return [f"{CPU}#{i}" for i in range(cpu_slots())] + [d for d in devices() if d != CPU]


def candidates(device: str) -> list[str]:
    """The slots a job asking for `device` may take: 'cuda' takes any GPU, 'cuda:1' only that one."""
    device = (device or CPU).strip()
    names = slot_names()
    if device.startswith(CPU):
        return [s for s in names if s.startswith(f"{CPU}#")]
    if device == "cuda":
        return [s for s in names if s.startswith("cuda:")] or ["cuda:0"]
    return [s for s in names if s == device] or [device]  # not seen here: one slot of its own


def slot_env(slot: str) -> dict:
    """What a job's process is told about its slot: the GPU it may see, or its share of the cores."""
    env = {"IMGCLS_JOB_SLOT": slot}
    if slot.startswith("cuda:"):
        env["CUDA_VISIBLE_DEVICES"] = slot.split(":", 1)[1]  # the job then sees its GPU as cuda:0
    elif slot.startswith(f"{CPU}#"):
        share = max(1, cores() // cpu_slots())
        env.update(IMGCLS_JOB_THREADS=str(share), OMP_NUM_THREADS=str(share))
    return env


def cores() -> int:
    """Every core this process may use (a container or taskset may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# --- the queue ------------------------------------------------------------------------------------


def _root() -> Path:
    path = workspace.server_root() / "jobs"
    (path / "queue").mkdir(parents=True, exist_ok=True)
    (path / "slots").mkdir(parents=True, exist_ok=True)
    return path


def _slot_file(root: Path, slot: str) -> Path:
    return root / "slots" / f"{slot.replace(':', '-')}.json"  # no ':' in a file name on Windows


def _lock() -> filelock.FileLock:
    return filelock.FileLock(str(_root() / "queue.lock"))


ADOPT_S = 30.0  # a ticket its launcher has not taken over by then belongs to a launcher that never started


def _tickets(root: Path) -> list[dict]:
    out = []
    for path in sorted(root.glob("queue/*.json")):
        ticket = workspace.read_json(path)
        if not isinstance(ticket, dict) or not procs.alive(ticket.get("pid"), ticket.get("pid_started")) or \
                not ticket.get("adopted", True) and time.time() - float(ticket.get("made") or 0) > ADOPT_S:
            path.unlink(missing_ok=True)  # its process is gone: it waits no more
            continue
        out.append(dict(ticket, number=int(path.stem)))
    return sorted(out, key=lambda t: t["number"])


def _leases(root: Path) -> dict[str, dict]:
    out = {}
    for path in root.glob("slots/*.json"):
        lease = workspace.read_json(path)
        if not isinstance(lease, dict) or not procs.alive(lease.get("pid"), lease.get("pid_started")):
            path.unlink(missing_ok=True)  # its holder ended (or was killed): the slot is free
            continue
        out[str(lease.get("slot") or path.stem)] = lease
    return out


def _plan(tickets: list[dict], leases: dict) -> dict[int, str]:
    """Ticket number → the slot it takes now, serving tickets in number order."""
    known = slot_names()
    free = [s for s in known if s not in leases]
    plan = {}
    for ticket in tickets:
        usable = [s for s in candidates(ticket["device"]) if s in free or (s not in known and s not in leases)]
        if usable:
            plan[ticket["number"]] = usable[0]
            if usable[0] in free:
                free.remove(usable[0])
            leases = {**leases, usable[0]: ticket}
    return plan


def enqueue(device: str, pid: int, pid_started: float | None, status_path: str | None = None,
            adopted: bool = True) -> int:
    """Put a job in line for a slot of `device`; its ticket number. With `adopted` False the process
    `pid` only queues it, for a launcher that takes the ticket over (`adopt`) as it starts."""
    with _lock():
        root = _root()
        counter = root / "last-number.txt"
        try:
            last = int(counter.read_text().strip() or 0)
        except (OSError, ValueError):
            last = 0
        last = max([last, *(int(p.stem) for p in root.glob("queue/*.json"))]) + 1
        workspace.atomic_write_text(counter, str(last))
        workspace.atomic_write_json(root / "queue" / f"{last:012d}.json",
                                    {"device": device, "pid": pid, "pid_started": pid_started,
                                     "status": status_path, "adopted": adopted, "made": time.time()})
    return last


def adopt(number: int, pid: int, pid_started: float | None) -> bool:
    """Hand ticket `number` (taken by whoever queued the job, so the line keeps the order jobs were asked
    for in) to the process that waits on it; False when the ticket has gone meanwhile."""
    with _lock():
        path = _root() / "queue" / f"{number:012d}.json"
        ticket = workspace.read_json(path)
        if not isinstance(ticket, dict):
            return False
        workspace.atomic_write_json(path, dict(ticket, pid=pid, pid_started=pid_started, adopted=True))
        return True


def try_take(number: int) -> str | None:
    """The slot ticket `number` takes now that its turn has come (the ticket becomes the slot's lease),
    or None while it must wait."""
    with _lock():
        root = _root()
        tickets, leases = _tickets(root), _leases(root)
        slot = _plan(tickets, leases).get(number)
        ticket = next((t for t in tickets if t["number"] == number), None)
        if slot is None or ticket is None:
            return None
        workspace.atomic_write_json(_slot_file(root, slot), {"slot": slot, **{
            k: ticket.get(k) for k in ("device", "pid", "pid_started", "status")}})
        (root / "queue" / f"{number:012d}.json").unlink(missing_ok=True)
        return slot


def leave(number: int) -> None:
    """Take ticket `number` out of the line (its job was stopped before its turn)."""
    with _lock():
        (_root() / "queue" / f"{number:012d}.json").unlink(missing_ok=True)


def release(slot: str, pid: int) -> None:
    """Free `slot` if the process `pid` holds it."""
    with _lock():
        path = _slot_file(_root(), slot)
        lease = workspace.read_json(path)
        if isinstance(lease, dict) and lease.get("pid") == pid:
            path.unlink(missing_ok=True)


def held_by(pid: int) -> str | None:
    """The slot the process `pid` holds, if any."""
    with _lock():
        return next((slot for slot, lease in _leases(_root()).items() if lease.get("pid") == pid), None)


def position(number: int) -> int:
    """1 for the next job in line for the device ticket `number` waits for, 2 for the one after, …; 0 when
    it is not waiting."""
    with _lock():
        tickets = _tickets(_root())
    mine = next((t for t in tickets if t["number"] == number), None)
    if mine is None:
        return 0
    wanted = set(candidates(mine["device"]))
    ahead = [t for t in tickets if t["number"] < number and wanted & set(candidates(t["device"]))]
    return len(ahead) + 1


def holders() -> dict[str, dict]:
    """Slot → the process holding it (pid, pid_started, device, status file), for the slots in use."""
    with _lock():
        return _leases(_root())


@contextlib.contextmanager
def hold(device: str, on_wait=None):
    """Hold a slot of `device` for the block, waiting in line for it first; `on_wait(place)` is told the
    place in line while it waits. A process that holds a slot already (a job the launcher started, or an
    experiment's own training runs) passes at once."""
    pid = os.getpid()
    mine = held_by(pid)
    if mine is not None:
        yield mine
        return
    number = enqueue(device, pid, procs.started_at(pid))
    try:
        slot = wait_turn(number, on_wait)
    except BaseException:
        leave(number)
        raise
    try:
        yield slot
    finally:
        release(slot, pid)


def wait_turn(number: int, on_wait=None, should_stop=lambda: False, poll_s: float = 0.25) -> str | None:
    """Wait until ticket `number` takes a slot (returned), or until `should_stop()` says to give up (None)."""
    told = None
    while True:
        slot = try_take(number)
        if slot is not None:
            return slot
        if should_stop():
            leave(number)
            return None
        place = position(number)
        if on_wait is not None and place != told:
            on_wait(place)
            told = place
        time.sleep(poll_s)
