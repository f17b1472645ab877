"""Run folders: the contract between the training engine and the UI.

runs/<id>/ config.json, status.json, metrics.jsonl, model.safetensors (best), last.pt (resume), log.txt
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path

from . import dist, workspace

ACTIVE_STATES = ("queued", "running")
FINAL_STATES = ("done", "failed", "cancelled", "interrupted")


def runs_dir() -> Path:
    """Folder holding one subfolder per training run."""
    path = workspace.home() / "runs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def new_run_id(dataset: str, strategy: str) -> str:
    """A sortable, readable, unique run id such as 20261127-1402-shapes-linear-3f2a."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = workspace.suggest_name(f"{dataset}-{strategy}").replace(" ", "_")
    return f"{stamp}-{slug}-{uuid.uuid4().hex[:4]}"


def run_dir(run_id: str) -> Path:
    """Folder of one run; refuses ids that would leave the runs folder."""
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise workspace.WorkspaceError(f"'{run_id}' is not a run id.")
    return runs_dir() / run_id


def list_runs() -> list[str]:
    """Run ids, newest first."""
    return sorted((p.name for p in runs_dir().iterdir() if (p / "config.json").exists()), reverse=True)


def model_runs(dataset: str | None = None) -> list[str]:
    """Finished training runs that kept a model, newest first, leaving out the Learn page's experiment runs
    (trained on part of the data or on flipped labels on purpose)."""
    out = []
    for run_id in list_runs():
        config = workspace.read_json(run_dir(run_id) / "config.json", {}) or {}
        if config.get("task", "train") != "train" or config.get("experiment") \
                or (dataset is not None and config.get("dataset") != dataset):
            continue
        if read_status(run_id).get("state") == "done" and (run_dir(run_id) / "model.safetensors").exists():
            out.append(run_id)
    return out


def read_config(run_id: str) -> dict:
    """The saved configuration of a run."""
    config = workspace.read_json(run_dir(run_id) / "config.json")
    if config is None:
        raise workspace.WorkspaceError(f"There is no run '{run_id}'.")
    return config


def read_status(run_id: str) -> dict:
    """The run's status (state, pid, progress, ETA…); runs whose process vanished read as interrupted."""
    status = workspace.read_json(run_dir(run_id) / "status.json", {}) or {}
    just_made = status.get("pid") is None and time.time() - status.get("created", 0) < 30
    if status.get("state") in ACTIVE_STATES and not just_made and not pid_alive(status.get("pid")):
        status = dict(status, state="interrupted",
                      message="The training process stopped unexpectedly (server restart or crash); resume it.")
    return status


def write_status(run_id: str, **fields) -> dict:
    """Update fields of status.json atomically and return the new status (only the main process writes)."""
    path = run_dir(run_id) / "status.json"
    if not dist.is_main():
        return workspace.read_json(path, {}) or {}
    status = workspace.read_json(path, {}) or {}
    status.update(fields, updated=time.time())
    workspace.atomic_write_json(path, status)
    return status


def append_metrics(run_id: str, record: dict) -> None:
    """Append one JSON line to metrics.jsonl (a line is written whole, in one call)."""
    if not dist.is_main():
        return
    line = json.dumps(record, ensure_ascii=False) + "\n"
    with open(run_dir(run_id) / "metrics.jsonl", "a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()


def read_metrics(run_id: str) -> list[dict]:
    """All metric records of a run (a torn last line, if any, is ignored)."""
    return workspace.read_jsonl(run_dir(run_id) / "metrics.jsonl")


def pid_alive(pid) -> bool:
    """Whether a process with this pid still runs (and is not a zombie)."""
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError):
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{int(pid)}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


def mark_interrupted() -> list[str]:
    """Persist 'interrupted' for runs whose process is gone (after a server restart)."""
    changed = []
    for run_id in list_runs():
        raw = workspace.read_json(run_dir(run_id) / "status.json", {}) or {}
        if raw.get("state") in ACTIVE_STATES and read_status(run_id).get("state") == "interrupted":
            write_status(run_id, state="interrupted", message=read_status(run_id).get("message"))
            changed.append(run_id)
    return changed
