"""A dataset's quick measurements as background jobs: the label safety of a pipeline's transforms
(imgcls.augment.labelsafety.measure, the Augment page), and any other measurement that brings its own
command-line verb and measure function (imgcls.train.headroom, the Train page's check before a finetune run).

One folder per dataset version and what is measured, so a second tab or a later visit finds a finished
measurement: datasets/<name>/measurements/<key>/ choices.json, status.json, result.json, log.txt
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

from imgcls import jobs
from imgcls.store import quotas, workspace

KEEP = 8  # measurements kept per dataset: older ones go when a new one starts


def key_of(dataset: str, choices: list[dict], version: str) -> str:
    """The measurement's key: what it measures (the transforms) on which version of the dataset."""
    text = json.dumps([dataset, version, choices], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def folder(dataset: str, key: str) -> Path:
    """The folder of one measurement; refuses keys that would leave the dataset's measurements."""
    if not key.isalnum():
        raise workspace.WorkspaceError(f"'{key}' is not a measurement key.")
    return workspace.dataset_dir(dataset) / "measurements" / key


def status(dataset: str, key: str) -> dict:
    """The measurement's status ({} when it never ran)."""
    return jobs.status(folder(dataset, key) / "status.json")


def result(dataset: str, key: str) -> dict | None:
    """What the measurement found, once it is done."""
    return workspace.read_json(folder(dataset, key) / "result.json")


def start(dataset: str, choices, key: str, verb: str = "measure-labels") -> None:
    """Queue a measurement of these choices (the transforms, for label safety), run by `python -m imgcls VERB
    DATASET --key KEY`; nothing happens while the same one is queued or running."""
    here = folder(dataset, key)
    if status(dataset, key).get("state") in jobs.ACTIVE:
        return
    _forget_old(here.parent)
    here.mkdir(parents=True, exist_ok=True)
    workspace.atomic_write_json(here / "choices.json", choices)
    (here / "result.json").unlink(missing_ok=True)
    with quotas.job_slot():
        jobs.submit(here / "status.json", [verb, dataset, "--key", key], "cpu", log=here / "log.txt",
                    label=f"measure/{dataset}",
                    message="Waiting to start")


def stop(dataset: str, key: str) -> dict:
    """Stop a queued or running measurement."""
    return jobs.stop(folder(dataset, key) / "status.json")


def _label_safety(dataset: str, choices, progress) -> dict:
    from imgcls.augment.labelsafety import measure  # torch and scikit-learn load here, in the job

    if not isinstance(choices, list):
        raise TypeError("label safety measures a list of transforms")
    return measure(dataset, choices, progress=progress)


def run_job(dataset: str, key: str, echo: Callable[[float, str], None] | None = None,
            measure: Callable[[str, object, Callable], dict] = _label_safety) -> dict:
    """Run a queued measurement in this process (the CLI's `measure-labels --key`), keeping its status:
    `measure(dataset, choices, progress)` gives the result."""
    here = folder(dataset, key)
    choices = workspace.read_json(here / "choices.json")
    if choices is None:
        raise workspace.WorkspaceError(f"There is no measurement '{key}' of '{dataset}'.")
    path = here / "status.json"
    with jobs.slots.hold("cpu"), jobs.running(path, label=f"measure/{dataset}", what="The measurement", log=here / "log.txt",
                                              shown_log=f"datasets/{dataset}/measurements/{key}/log.txt"):
        found = measure(dataset, choices, jobs.progress_writer(path, echo))
        workspace.atomic_write_json(here / "result.json", found)
    return found


def _forget_old(parent: Path) -> None:
    import shutil

    if not parent.is_dir():
        return
    done = sorted((p for p in parent.iterdir() if p.is_dir() and
                   jobs.status(p / "status.json").get("state") not in jobs.ACTIVE),
                  key=lambda p: p.stat().st_mtime)
    for old in done[:max(len(done) - KEEP + 1, 0)]:
        shutil.rmtree(old, ignore_errors=True)
