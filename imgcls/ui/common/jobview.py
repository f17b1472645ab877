"""The one live view of a background job: its place in line or its progress, with Stop, polled every second.

Every page that starts a job (training, the learning-rate search, the health check, an experiment, the
label-safety measurement) starts it through `start_job` and shows it through `show_job`; the job system's
status file is all it reads.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable

import streamlit as st

from imgcls import jobs
from imgcls.store import quotas, workspace
from imgcls.ui.common.text import plain

POLL_S = 1.0  # smooth enough for a progress bar; each poll reads one small status file
# what stops a job starting besides a quota: the dataset gone, a bad id or setting, no process to spawn
START_ERRORS = (workspace.WorkspaceError, OSError, ValueError)


@dataclass
class JobView:
    """What the live view needs of one job: how to read its status and stop it, and what to draw with it."""

    stop_key: str  # the Stop button's widget key
    status: Callable[[], dict]
    stop: Callable[[], object]
    stop_label: str = "Stop"
    device: str = "device"  # what it waits for, in words ("cpu", "cuda")
    caption: str | None = None  # said under the progress bar while it runs
    before: Callable[[dict], None] | None = None  # drawn above the progress (a run's settings)
    after: Callable[[dict], None] | None = None  # drawn below it, also once it has ended (curves, outcome)


def start_job(start: Callable[..., object], *args, failed: str = "The job could not start",
              errors: tuple[type[BaseException], ...] = START_ERRORS) -> bool:
    """Call `start(*args)` to start a background job; False after a plain error: a quota's refusal as it says
    it, one of `errors` after `failed` ("The check could not start: …")."""
    try:
        start(*args)
    except quotas.QuotaError as exc:
        st.error(plain(exc))
        return False
    except errors as exc:
        st.error(f"{plain(failed)}: {plain(exc)}")
        return False
    return True


def show_job(job: JobView, drawn_state: str | None = None) -> None:
    """The job's live view: refreshed every second while it is queued or running; once its state differs
    from the one the page was drawn with, the whole page is drawn again (tables, results)."""
    state = drawn_state if drawn_state is not None else job.status().get("state")
    st.fragment(run_every=POLL_S if state in jobs.ACTIVE else None)(_view)(job, state)


def show_polled(draw: Callable[..., None], *args, every_s: float) -> None:
    """Draw `draw(*args)` and draw it again every `every_s` seconds (the job line's view): every page that
    polls the job system does it from here."""
    st.fragment(run_every=every_s)(draw)(*args)


def _view(job: JobView, drawn_state: str | None) -> None:
    status = job.status()
    state = status.get("state")
    if state != drawn_state:
        st.rerun()  # started, finished or gone: the page as a whole changes
    if job.before:
        job.before(status)
    if state == "queued" and status.get("queue"):
        st.info(queue_text(status, job.device), icon=":material/hourglass_top:")
        _stop_button(job, "Cancel")
    elif state == "queued":  # its process is starting, or has its slot and loads PyTorch
        said = status.get("message") or jobs.QUEUED_MESSAGE
        st.progress(0.0, text="Starting…" if said == jobs.QUEUED_MESSAGE else f"Starting… ({plain(said)})")
        _stop_button(job)
    elif state == "running":
        st.progress(min(max(float(status.get("progress") or 0), 0.0), 1.0), text=progress_text(status))
        if job.caption:
            st.caption(plain(job.caption))
        _stop_button(job)
    if job.after:
        job.after(status)


def _stop_button(job: JobView, label: str | None = None) -> None:
    if st.button(plain(label or job.stop_label), key=job.stop_key, icon=":material/stop_circle:"):
        job.stop()
        st.rerun()  # the whole page: the view stops polling and what the job made appears


def device_words(device: str) -> str:
    """A device as people say it: CPU, GPU, GPU 1, Apple GPU."""
    name = str(device or "cpu").strip()
    if name.lower().startswith("cpu"):
        return "CPU"
    if name.startswith("cuda"):
        index = name.partition(":")[2]
        return f"GPU {plain(index)}" if index else "GPU"
    return "Apple GPU" if name == "mps" else plain(name)


KIND_WORDS = {"run": ("run", "runs"), "health": ("health check", "health checks"),
              "experiment": ("experiment", "experiments"), "measure": ("measurement", "measurements"),
              "export": ("export", "exports")}


def queue_text(status: dict, device: str, now: float | None = None) -> str:
    """A waiting job's place in line and its expected wait, in words: "Waiting for the CPU, number 4 in the
    queue, about 3 min (from the last 12 runs here)."."""
    wait = status.get("wait") if isinstance(status.get("wait"), dict) else {}
    text = f"Waiting for the {device_words(device)}, number {int(status['queue']):,} in the queue"
    if wait.get("start") is not None:
        text += f", {wait_words(float(wait['start']) - (time.time() if now is None else now))}"
        count = int(wait.get("from") or 0)
        if count:
            one, many = KIND_WORDS.get(wait.get("kind") or "", ("job", "jobs"))
            text += f" (from the last {one if count == 1 else f'{count:,} {many}'} here)"
        else:
            text += " (from the running job's own estimate)"
        text += "."
    else:
        text += ". There is no estimate of the wait yet: no job like the ones ahead of it has finished here."
    if wait.get("held"):
        text += (" You already run the most jobs allowed at once here, so it waits for one of them to finish "
                 "(other people's jobs may start before it).")
    return text


def wait_words(seconds: float) -> str:
    """A wait in round words: 'less than a minute', 'about 3 min', 'about 1 h 20 min'."""
    if seconds < 60:
        return "less than a minute"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"about {minutes} min"
    return f"about {minutes // 60} h {minutes % 60:02d} min"


def _duration(seconds) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "estimating time left"
    seconds = int(seconds)
    return f"about {seconds // 60} min {seconds % 60:02d} s left" if seconds >= 60 else f"about {seconds} s left"


def progress_text(status: dict) -> str:
    """How far a job is, in words: share done, what it does now, time left and speed where it says them."""
    progress = float(status.get("progress") or 0)
    parts = [f"{progress:.0%} done" if progress else "", plain(status.get("message") or "")]
    if "eta_seconds" in status:
        parts.append(_duration(status.get("eta_seconds")))
    if status.get("images_per_second"):
        parts.append(f"{status['images_per_second']:,.0f} images/s")
    return " · ".join(p for p in parts if p)
