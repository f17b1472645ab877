"""The server's job line for teachers and admins: who runs what now, who waits for what and since when, and
when each waiting job is expected to start; Up, Down and Cancel for those who may manage it.

Everything comes from `imgcls.jobs.slots` (the one line every job waits in); Cancel is the job system's Stop.
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from imgcls import jobs
from imgcls.jobs import slots, statusfile
from imgcls.store import workspace
from imgcls.ui.common.jobview import device_words, show_polled, wait_words
from imgcls.ui.common.text import plain

POLL_S = 5.0  # the line moves in minutes: a look every few seconds keeps it true
CANCELLED = "Cancelled by a teacher or an administrator before it started."
NO_KEY = "the server's own workspace"  # jobs of the workspace without sign-in
KINDS = {"run": "Training run", "health": "Health check of", "experiment": "Experiment",
         "measure": "Label-safety measurement of", "export": "Export of run", "score": "Scoring for the board of"}


def show_queue(owners: set[str] | None, names: dict[str, str], can_manage: bool, key: str) -> None:
    """The jobs of `owners` (user keys; None: everyone's) running and waiting, named by `names` (user key →
    name); with `can_manage`, Up, Down and Cancel for the waiting ones. `key` prefixes its widget keys."""
    show_polled(_draw, owners, names, can_manage, key, every_s=POLL_S)


def _draw(owners: set[str] | None, names: dict[str, str], can_manage: bool, key: str) -> None:
    said = st.session_state.pop(f"{key}.said", None)
    if said:
        (st.success if said[0] == "done" else st.warning)(said[1])
    mine = lambda job: owners is None or job.get("owner") in owners  # noqa: E731
    running = [job for job in slots.running_jobs() if mine(job)]
    line = slots.waiting()
    shown = [job for job in line if mine(job)]
    if running:
        st.dataframe(running_table(running, names), hide_index=True, width="stretch", key=f"{key}.running")
    else:
        st.caption("No job of theirs is running." if owners is not None else "No job is running.")
    if not shown:
        st.caption("Nobody's job is waiting in line.")
        return
    st.dataframe(line_table(shown, names), hide_index=True, width="stretch", key=f"{key}.line")
    if can_manage:
        _controls(shown, line, names, key)


def who(owner: str | None, names: dict[str, str]) -> str:
    """A job's owner as people know them."""
    return names.get(owner or "") or (owner or NO_KEY)


def what(label: str | None, status: str | None) -> str:
    """A job in words: 'Training run shapes linear 3', 'Health check of pets'."""
    kind, _, name = str(label or "").partition("/")
    if kind == "run" and status:  # a run's own short name, kept in its config next to its status
        config = workspace.read_json(Path(status).with_name("config.json"), {})
        name = (config.get("name") if isinstance(config, dict) else None) or name
    if kind in KINDS:
        return f"{KINDS[kind]} {name}".strip()
    return str(label) if label else "A job"


def _since(seconds: float | None) -> str:
    """A moment of today as a clock time ('14:05'), with the day when it was not today."""
    if not seconds:
        return ""
    when = time.localtime(float(seconds))
    same_day = time.strftime("%Y-%m-%d", when) == time.strftime("%Y-%m-%d")
    return time.strftime("%H:%M" if same_day else "%d %b %H:%M", when)


def line_table(shown: list[dict], names: dict[str, str]) -> pd.DataFrame:
    """One row per waiting job, in serving order: place, who, what, device, waiting since, expected start."""
    rows = [{"Place": job["place"], "Who": who(job["owner"], names), "What": what(job["label"], job["status"]),
             "Device": device_words(job["device"]), "Waiting since": _since(job["since"]),
             "Starts in": (wait_words(job["estimate"]) if job["estimate"] is not None else "not known yet")
             + (" (after their own jobs)" if job["held"] else "")} for job in shown]
    return pd.DataFrame(rows, columns=["Place", "Who", "What", "Device", "Waiting since", "Starts in"])


def running_table(running: list[dict], names: dict[str, str]) -> pd.DataFrame:
    """One row per job holding a slot: who, what, on which device, running since."""
    rows = [{"Running": what(job["label"], job["status"]), "Who": who(job["owner"], names),
             "On": device_words(job["slot"]),
             "Since": _since(job["started"])} for job in running]
    return pd.DataFrame(rows, columns=["Running", "Who", "On", "Since"])


def _controls(shown: list[dict], line: list[dict], names: dict[str, str], key: str) -> None:
    """Pick a waiting job; move it before the one shown above it or after the one below, or cancel it."""
    labels = {job["number"]: f"{job['place']}. {who(job['owner'], names)}: {what(job['label'], job['status'])}"
              for job in shown}
    number = st.selectbox("Waiting job", list(labels), format_func=labels.get, key=f"{key}.pick")
    if number not in labels:
        return
    at = [job["number"] for job in shown].index(number)
    spots = {job["number"]: i + 1 for i, job in enumerate(line)}  # places in the whole line, for slots.move
    above = spots[shown[at - 1]["number"]] if at > 0 else None
    below = spots[shown[at + 1]["number"]] if at + 1 < len(shown) else None
    up, down, cancel = st.columns(3)
    up.button("Up", key=f"{key}.up", icon=":material/arrow_upward:", disabled=above is None,
              on_click=_move, args=(key, number, above))
    down.button("Down", key=f"{key}.down", icon=":material/arrow_downward:", disabled=below is None,
                on_click=_move, args=(key, number, below))
    status = shown[at]["status"]
    cancel.button("Cancel", key=f"{key}.cancel", icon=":material/cancel:", disabled=not status,
                  on_click=_cancel, args=(key, status),
                  help="Take it out of the line; its owner sees that it was cancelled.")


def _move(key: str, number: int, place: int | None) -> None:
    if place is None or slots.move(number, place) is None:
        st.session_state[f"{key}.said"] = ("warn", "That job no longer waits: it has started or was stopped.")


def _cancel(key: str, status: str) -> None:
    path = Path(status)
    if jobs.status(path).get("state") != statusfile.State.QUEUED.value:
        st.session_state[f"{key}.said"] = ("warn", "That job no longer waits: it has started or ended, so it "
                                                   "was left alone.")
        return
    after = jobs.stop(path, message=CANCELLED)
    if after.get("state") == statusfile.State.CANCELLED.value:
        jobs.write_status(path, message=CANCELLED)  # the launcher's own words were its owner's Stop
        st.session_state[f"{key}.said"] = ("done", "Cancelled it: its owner sees that it will not run.")
    else:
        st.session_state[f"{key}.said"] = ("warn", plain(after.get("message") or "It could not be cancelled."))
