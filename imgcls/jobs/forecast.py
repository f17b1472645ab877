"""Who starts when: the line's plan for now, and a run of the slots forward in time for the wait ahead.

Plain functions over plain dicts (slots.py reads the files they come from), so the plan the launchers follow
and the forecast the pages show are one rule: tickets in serving order, each taking the first free slot of
its device, skipping a ticket whose owner already runs as many jobs at once as allowed.

A forecast assumes each job takes its typical time; what it rests on travels with it as "deps", one
(kind, device) pair per typical duration used, ("eta", kind) for a running job's own estimate, and UNKNOWN
where no job of that kind has finished here yet (then the start time is a guess, good only for ordering).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Callable

from imgcls.jobs import history

UNKNOWN = ("?", "?")


def serve(tickets: list[dict], busy: dict[str, object], caps: dict, candidates: Callable[[str], list[str]]
          ) -> list[tuple[dict, str]]:
    """The tickets (given in serving order) that start now, each with the slot it takes: the first slot of its
    device not in `busy` (slot → owner), unless its owner runs `caps[owner]` jobs already (0: no limit)."""
    counts = Counter(busy.values())
    taken = set(busy)
    out = []
    for ticket in tickets:
        owner = ticket.get("owner")
        if caps.get(owner) and counts[owner] >= caps[owner]:
            continue
        usable = [s for s in candidates(ticket["device"]) if s not in taken]
        if usable:
            taken.add(usable[0])
            counts[owner] += 1
            out.append((ticket, usable[0]))
    return out


def simulate(tickets: list[dict], running: dict[str, dict], caps: dict, candidates: Callable[[str], list[str]],
             duration: Callable[[dict, str], tuple[float, tuple]], now: float) -> dict[int, dict]:
    """When each waiting ticket starts if every job takes its typical time: number → {"start", "slot",
    "order" (the order of starting), "deps"}. `running`: slot → {"owner", "end", "dep"} for the jobs holding
    slots now; `duration(ticket, slot)` → (seconds, dep) for a ticket that takes `slot`."""
    busy = dict(running)
    slot_deps = {slot: {job["dep"]} for slot, job in busy.items()}
    owner_deps: dict = defaultdict(set)
    for job in busy.values():
        owner_deps[job["owner"]].add(job["dep"])
    left, out, t = list(tickets), {}, now
    while left:
        for ticket, slot in serve(left, {s: job["owner"] for s, job in busy.items()}, caps, candidates):
            owner = ticket.get("owner")
            # its start waits on every slot it could take, and on its owner's other jobs when capped
            deps = set().union(*(slot_deps.get(s, set()) for s in candidates(ticket["device"])))
            if caps.get(owner):
                deps |= owner_deps[owner]
            out[ticket["number"]] = {"start": t, "slot": slot, "order": len(out), "deps": deps}
            seconds, dep = duration(ticket, slot)
            busy[slot] = {"owner": owner, "end": t + max(float(seconds), 0.0), "dep": dep}
            slot_deps[slot] = deps | {dep}
            owner_deps[owner] |= deps | {dep}
            left.remove(ticket)
        if not left or not busy:
            break
        t = max(t, min(job["end"] for job in busy.values()))
        for slot in [s for s, job in busy.items() if job["end"] <= t]:
            del busy[slot]
    return out


def place(number: int, tickets: list[dict], plan: dict[int, dict], candidates: Callable[[str], list[str]]) -> int:
    """1 for the next job to start on the device ticket `number` wants, 2 for the one after, …: the jobs that
    want one of its slots and start before it; 0 when it is not in line."""
    mine = next((t for t in tickets if t["number"] == number), None)
    if mine is None:
        return 0
    wanted = set(candidates(mine["device"]))
    if number not in plan:  # never reached (cannot happen while slots free up): its turn in the line
        before = [t for t in tickets[:tickets.index(mine)] if wanted & set(candidates(t["device"]))]
        return len(before) + 1
    when = (plan[number]["start"], plan[number]["order"])
    before = [t for t in tickets if t["number"] != number and t["number"] in plan
              and wanted & set(candidates(t["device"]))
              and (plan[t["number"]]["start"], plan[t["number"]]["order"]) < when]
    return len(before) + 1


# --- from the files' contents to each waiting job's outlook ---------------------------------------


def ends(leases: dict[str, dict], statuses: dict[str, dict], entries: list[dict], now: float) -> dict[str, dict]:
    """Slot → {"owner", "end", "dep"} for the jobs holding slots: a running job's own estimate of the time
    it has left where it gives one, else when it took the slot plus the typical time of its kind; never
    before now (a job past its typical time may end any moment)."""
    out = {}
    for slot, lease in leases.items():
        kind, device, status = lease.get("kind") or "job", history.device_class(slot), statuses.get(slot) or {}
        eta = status.get("eta_seconds")
        if isinstance(eta, (int, float)) and eta >= 0 and status.get("state") == "running":
            end, dep = float(status.get("updated") or now) + float(eta), ("eta", kind)
        else:
            typical = history.typical(kind, device, entries)
            taken = float(lease.get("taken") or status.get("started") or now)
            end = taken + (typical[0] if typical else guess(entries, device))
            dep = (kind, device) if typical else UNKNOWN
        out[slot] = {"owner": lease.get("owner"), "end": max(now, end), "dep": dep}
    return out


def guess(entries: list[dict], device: str) -> float:
    """A stand-in duration for a kind of job never finished here: it orders the forecast, and is never shown."""
    seconds = sorted(e["seconds"] for e in entries if e.get("device") == device and "seconds" in e)
    return float(seconds[len(seconds) // 2]) if seconds else 300.0


def outlooks(tickets: list[dict], leases: dict[str, dict], statuses: dict[str, dict], caps: dict,
             candidates: Callable[[str], list[str]], entries: list[dict], now: float) -> dict[int, dict]:
    """Number → {"place", "seconds" (until it starts; None when no job like those before it has finished
    here yet), "from" (how many finished jobs that rests on), "kind" (theirs, when all of one kind), "held"
    (its owner runs the most jobs allowed at once)} for each waiting ticket (each with its "kind")."""
    def duration(ticket: dict, slot: str) -> tuple[float, tuple]:
        device = history.device_class(slot)
        typical = history.typical(ticket["kind"], device, entries)
        return (typical[0], (ticket["kind"], device)) if typical else (guess(entries, device), UNKNOWN)

    plan = simulate(tickets, ends(leases, statuses, entries, now), caps, candidates, duration, now)
    running = Counter(lease.get("owner") for lease in leases.values())
    out = {}
    for ticket in tickets:
        mine = plan.get(ticket["number"])
        deps = mine["deps"] if mine else {UNKNOWN}
        used = {d for d in deps if d != UNKNOWN and d[0] != "eta"}
        kinds = {kind for kind, _ in used}
        owner = ticket.get("owner")
        out[ticket["number"]] = {
            "place": place(ticket["number"], tickets, plan, candidates),
            "seconds": None if UNKNOWN in deps else max(0.0, mine["start"] - now),
            "from": sum((history.typical(k, d, entries) or (0.0, 0))[1] for k, d in used),
            "kind": next(iter(kinds)) if len(kinds) == 1 else None,
            "held": bool(caps.get(owner)) and running[owner] >= caps[owner]}
    return out
