"""Device slots and the queue in front of them, shared by every job on the server.

Each GPU is a slot of its own; the CPU has `IMGCLS_CPU_JOBS` slots (default 1: one job uses every core, so
two never fight over them). Jobs wait in one first-come, first-served line across all users: a ticket per
waiting job, numbered in the order they came and served in that order (unless a teacher or an admin moved
one: its rank), each taking the first free slot it can use, so a job never passes an earlier one that wants
the same device, and a job for another device does not wait behind them. A ticket whose owner already runs
as many jobs at once as their limit allows (`jobs_running`) is passed over until one of them ends, so one
person's pile of jobs does not hold up everyone else. A slot is held by a lease naming the process (pid and
start time); a process that has gone, even by kill -9, holds nothing, and a job that finished its work
leaves its duration to the history the wait estimates come from.

    <server>/jobs/queue/<number>.json   a waiting job: pid, pid_started, device, status file, owner, rank
    <server>/jobs/slots/<slot>.json     the process holding a slot (cuda-1.json for cuda:1), since when
    <server>/jobs/history.json          how long finished jobs took (imgcls.jobs.history)
"""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

import filelock

from imgcls.jobs import forecast, history, procs, statusfile
from imgcls.jobs.devices import CPU, candidates, cores, cpu_slots, devices, slot_env, slot_names  # noqa: F401
from imgcls.store import workspace

# --- the queue ------------------------------------------------------------------------------------


def _root() -> Path:
    path = workspace.server_root() / "jobs"
    (path / "queue").mkdir(parents=True, exist_ok=True)
    (path / "slots").mkdir(parents=True, exist_ok=True)
    return path


def _slot_file(root: Path, slot: str) -> Path:
    return root / "slots" / f"{slot.replace(':', '-')}.json"  # no ':' in a file name on Windows


def _ticket_file(root: Path, number: int) -> Path:
    return root / "queue" / f"{number:012d}.json"


def _lock() -> filelock.FileLock:
    return filelock.FileLock(str(_root() / "queue.lock"))


ADOPT_S = 30.0  # a ticket its launcher has not taken over by then belongs to a launcher that never started


def _tickets(root: Path) -> list[dict]:
    """The waiting tickets in serving order (their rank: their number, unless someone moved them)."""
    out = []
    for path in root.glob("queue/*.json"):
        ticket = workspace.read_json(path)
        if not isinstance(ticket, dict) or not procs.alive(ticket.get("pid"), ticket.get("pid_started")) or \
                not ticket.get("adopted", True) and time.time() - float(ticket.get("made") or 0) > ADOPT_S:
            path.unlink(missing_ok=True)  # its process is gone: it waits no more
            continue
        out.append(dict(ticket, number=int(path.stem)))
    return sorted(out, key=lambda t: (t.get("rank", t["number"]), t["number"]))


def _leases(root: Path) -> dict[str, dict]:
    out = {}
    for path in root.glob("slots/*.json"):
        lease = workspace.read_json(path)
        if not isinstance(lease, dict) or not procs.alive(lease.get("pid"), lease.get("pid_started")):
            path.unlink(missing_ok=True)  # its holder ended (or was killed): the slot is free
            if isinstance(lease, dict):
                _note_finished(lease, root)
            continue
        out[str(lease.get("slot") or path.stem)] = lease
    return out


def _owner() -> str:
    """Whose job is queued now: the user key of the current workspace, "" for the one person's."""
    from imgcls.store import quotas  # here, not at the top: quotas reaches back into the job system

    try:
        return quotas.user_key(workspace.home()) or ""
    except workspace.WorkspaceError:
        return ""


def _caps(owners) -> dict[str, int]:
    """Owner → the most jobs they may run at once (0: no limit)."""
    from imgcls.store import quotas

    try:
        return quotas.running_caps(set(owners))
    except workspace.WorkspaceError:  # a broken limits file must not stop the line: no caps until fixed
        return {}


def _candidates_now():
    """`candidates`, remembered for one look at the line (the forecast asks it thousands of times)."""
    memo: dict[str, list[str]] = {}

    def find(device: str) -> list[str]:
        if device not in memo:
            memo[device] = candidates(device)
        return memo[device]
    return find


def _owner_caps(tickets: list[dict], leases: dict) -> dict[str, int]:
    return _caps({t.get("owner") for t in tickets} | {lease.get("owner") for lease in leases.values()})


def _plan(tickets: list[dict], leases: dict, caps: dict | None = None) -> dict[int, str]:
    """Ticket number → the slot it takes now, serving tickets in order, past those whose owner runs the most
    jobs allowed at once."""
    caps = _owner_caps(tickets, leases) if caps is None else caps
    busy = {slot: lease.get("owner") for slot, lease in leases.items()}
    return {t["number"]: slot for t, slot in forecast.serve(tickets, busy, caps, _candidates_now())}


def enqueue(device: str, pid: int, pid_started: float | None, status_path: str | None = None,
            adopted: bool = True) -> int:
    """Put a job of the current workspace's owner in line for a slot of `device`; its ticket number. With
    `adopted` False the process `pid` only queues it, for a launcher that takes the ticket over (`adopt`)."""
    owner, home = _owner(), str(workspace.home())
    with _lock():
        root = _root()
        counter = root / "last-number.txt"
        try:
            last = int(counter.read_text().strip() or 0)
        except (OSError, ValueError):
            last = 0
        last = max([last, *(int(p.stem) for p in root.glob("queue/*.json"))]) + 1
        workspace.atomic_write_text(counter, str(last))
        workspace.atomic_write_json(_ticket_file(root, last),
                                    {"device": device, "pid": pid, "pid_started": pid_started,
                                     "status": status_path, "adopted": adopted, "made": time.time(),
                                     "owner": owner, "home": home, "rank": last})
    return last


def adopt(number: int, pid: int, pid_started: float | None) -> bool:
    """Hand ticket `number` (taken by whoever queued the job, so the line keeps the order jobs were asked
    for in) to the process that waits on it; False when the ticket has gone meanwhile."""
    with _lock():
        path = _ticket_file(_root(), number)
        ticket = workspace.read_json(path)
        if not isinstance(ticket, dict):
            return False
        workspace.atomic_write_json(path, dict(ticket, pid=pid, pid_started=pid_started, adopted=True))
        return True


def _take(root: Path, tickets: list[dict], leases: dict, number: int, caps: dict | None = None) -> str | None:
    slot = _plan(tickets, leases, caps).get(number)
    ticket = next((t for t in tickets if t["number"] == number), None)
    if slot is None or ticket is None:
        return None
    keep = ("device", "pid", "pid_started", "status", "owner", "home", "number")
    workspace.atomic_write_json(_slot_file(root, slot), {"slot": slot, **{k: ticket.get(k) for k in keep},
                                                         "label": _label(ticket), "taken": time.time()})
    _ticket_file(root, number).unlink(missing_ok=True)
    return slot


def try_take(number: int) -> str | None:
    """The slot ticket `number` takes now that its turn has come (the ticket becomes the slot's lease),
    or None while it must wait."""
    with _lock():
        root = _root()
        return _take(root, _tickets(root), _leases(root), number)


def leave(number: int) -> None:
    """Take ticket `number` out of the line (its job was stopped before its turn)."""
    with _lock():
        _ticket_file(_root(), number).unlink(missing_ok=True)


def release(slot: str, pid: int) -> None:
    """Free `slot` if the process `pid` holds it."""
    with _lock():
        root = _root()
        path = _slot_file(root, slot)
        lease = workspace.read_json(path)
        if isinstance(lease, dict) and lease.get("pid") == pid:
            path.unlink(missing_ok=True)
            _note_finished(lease, root)


def held_by(pid: int) -> str | None:
    """The slot the process `pid` holds, if any."""
    with _lock():
        return next((slot for slot, lease in _leases(_root()).items() if lease.get("pid") == pid), None)


def holders() -> dict[str, dict]:
    """Slot → the process holding it (pid, pid_started, device, status file, owner, label, when it took the
    slot), for the slots in use."""
    with _lock():
        return _leases(_root())


# --- labels and durations -------------------------------------------------------------------------


def _label(ticket: dict) -> str | None:
    """The job's label ('run/<id>'), as its workspace's job index noted it (None before it is noted)."""
    if ticket.get("label") or not ticket.get("status") or not ticket.get("home"):
        return ticket.get("label")
    for entry in (Path(ticket["home"]) / "jobs" / "active").glob("*.json"):
        with contextlib.suppress(OSError, ValueError):
            noted = workspace.read_json(entry)
            if isinstance(noted, dict) and noted.get("status") == ticket["status"]:
                return noted.get("label")
    return None


EXIT_S = 30.0  # a finished job's process ends within this: longer, and nobody was looking when it did


def _note_finished(lease: dict, root: Path) -> None:
    """Add a job that has left its slot to the durations history, if it finished its work. Its slot was
    busy until its process ended, a moment after it wrote "done": while others wait in line (looking
    several times a second) that is now, otherwise the time it finished."""
    status = statusfile.read_raw(Path(lease["status"])) if lease.get("status") else {}
    finished, taken = status.get("finished"), lease.get("taken")
    if status.get("state") != statusfile.State.DONE.value or not finished or not taken or finished < taken:
        return
    now = time.time()
    looked = any(root.glob("queue/*.json")) and finished <= now < finished + EXIT_S
    with contextlib.suppress(OSError):  # a full disk loses one duration, never the slot
        history.record(history.kind_of(_label(lease)), history.device_class(lease.get("slot")),
                       (now if looked else float(finished)) - float(taken), float(finished))


# --- the forecast ---------------------------------------------------------------------------------


def _outlooks(root: Path, tickets: list[dict] | None = None, leases: dict | None = None,
              caps: dict | None = None) -> tuple[list[dict], dict, dict[int, dict]]:
    """The waiting tickets (with their labels), the leases, and each ticket's outlook (see `outlook`)."""
    tickets = _tickets(root) if tickets is None else tickets
    leases = _leases(root) if leases is None else leases
    caps = _owner_caps(tickets, leases) if caps is None else caps
    for ticket in tickets:
        label = _label(ticket)
        if label and not ticket.get("label"):  # noted once found, so a poll scans no folder
            ticket["label"] = label
            raw = {k: v for k, v in ticket.items() if k != "number"}
            workspace.atomic_write_json(_ticket_file(root, ticket["number"]), raw)
        ticket["kind"] = history.kind_of(label)
    for lease in leases.values():
        lease["kind"] = history.kind_of(_label(lease))
    statuses = {slot: statusfile.read_raw(Path(lease["status"])) if lease.get("status") else {}
                for slot, lease in leases.items()}
    looks = forecast.outlooks(tickets, leases, statuses, caps, _candidates_now(), history.entries(), time.time())
    return tickets, leases, looks


def outlook(number: int) -> dict | None:
    """Where waiting ticket `number` stands: place, seconds until it starts (None: not known yet), how many
    finished jobs that rests on and of which kind, and whether its owner's own jobs hold it back; None when
    it is not waiting."""
    with _lock():
        return _outlooks(_root())[2].get(number)


def estimate(number: int) -> float | None:
    """Seconds until waiting ticket `number` is expected to start, or None (not waiting, or no job like
    those ahead of it has finished here yet)."""
    found = outlook(number)
    return found["seconds"] if found else None


def position(number: int) -> int:
    """1 for the next job to start on the device ticket `number` waits for, 2 for the one after, …: the jobs
    that want the same device and start before it; 0 when it is not waiting."""
    found = outlook(number)
    return found["place"] if found else 0


# --- for teachers and admins ----------------------------------------------------------------------


def waiting() -> list[dict]:
    """Every waiting job in serving order: number, owner (user key, "" for the one person's workspace),
    device, status (its status file), label, place, since (when it joined the line), estimate (seconds until
    it starts, or None), held (its owner's own jobs hold it back)."""
    with _lock():
        tickets, _, looks = _outlooks(_root())
    return [{"number": t["number"], "owner": t.get("owner"), "device": t.get("device"), "status": t.get("status"),
             "label": t.get("label"), "place": looks[t["number"]]["place"], "since": t.get("made"),
             "estimate": looks[t["number"]]["seconds"], "held": looks[t["number"]]["held"]} for t in tickets]


def running_jobs() -> list[dict]:
    """Every job holding a slot now, in slot order: owner, label, slot, started (when it took the slot),
    status (its status file)."""
    order = {name: i for i, name in enumerate(slot_names())}
    with _lock():
        leases = _leases(_root())
    return [{"owner": lease.get("owner"), "label": _label(lease), "slot": slot, "started": lease.get("taken"),
             "status": lease.get("status")}
            for slot, lease in sorted(leases.items(), key=lambda item: (order.get(item[0], len(order)), item[0]))]


def move(number: int, place: int) -> int | None:
    """Move waiting ticket `number` to `place` in the whole line (1: served first); its place afterwards, or
    None when it no longer waits. The order lives in the tickets' ranks, so it survives a restart."""
    with _lock():
        root = _root()
        tickets = _tickets(root)
        mine = next((t for t in tickets if t["number"] == number), None)
        if mine is None:
            return None
        ranks = sorted(t.get("rank", t["number"]) for t in tickets)  # the same ranks, dealt out anew
        order = [t for t in tickets if t is not mine]
        place = min(max(int(place), 1), len(tickets))
        order.insert(place - 1, mine)
        for ticket, rank in zip(order, ranks):
            if ticket.get("rank", ticket["number"]) != rank:
                raw = {k: v for k, v in ticket.items() if k != "number"}
                workspace.atomic_write_json(_ticket_file(root, ticket["number"]), dict(raw, rank=rank))
        return place


# --- waiting --------------------------------------------------------------------------------------


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


def _turn(number: int) -> tuple[str | None, dict | None]:
    """One look at the line: the slot ticket `number` takes now, or else its outlook."""
    with _lock():
        root = _root()
        tickets, leases = _tickets(root), _leases(root)
        caps = _owner_caps(tickets, leases)
        slot = _take(root, tickets, leases, number, caps)
        return (slot, None) if slot is not None else (None, _outlooks(root, tickets, leases, caps)[2].get(number))


def wait_turn(number: int, on_wait=None, should_stop=lambda: False, poll_s: float = 0.25,
              on_outlook=None) -> str | None:
    """Wait until ticket `number` takes a slot (returned), or until `should_stop()` says to give up (None).
    `on_wait(place)` hears of each new place, `on_outlook(outlook)` of each new outlook (see `outlook`). Far
    back in line it looks less often (up to 16 × `poll_s`): it cannot start before those ahead."""
    told, shown = None, None
    while True:
        slot, look = _turn(number)
        if slot is not None:
            return slot
        if should_stop():
            leave(number)
            return None
        place = look["place"] if look else 0
        if on_wait is not None and place != told:
            on_wait(place)
        told = place
        if on_outlook is not None and look is not None and _changed(shown, look):
            on_outlook(look)
            shown = dict(look, at=time.time())
        time.sleep(poll_s * min(max(place, 1), 16))


def _changed(shown: dict | None, look: dict) -> bool:
    """Whether an outlook differs enough from the one last shown to be written again."""
    if shown is None or any(shown[k] != look[k] for k in ("place", "from", "kind", "held")):
        return True
    if (shown["seconds"] is None) != (look["seconds"] is None):
        return True
    if look["seconds"] is None:
        return False
    drift = abs((shown["at"] + shown["seconds"]) - (time.time() + look["seconds"]))  # the expected start moved
    return drift >= max(10.0, 0.1 * look["seconds"])
