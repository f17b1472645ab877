"""Scoring a submission on the hidden test images, on the server, with imgcls's own code only.

    classes/<id>/submissions/<sub>/  config.json, model.safetensors, metrics.jsonl (the frozen run),
                                     submission.json (who, when, what they expected), status.json (this job),
                                     score.json (aggregate numbers), per_image.csv (teacher only), log.txt

The job is `python -m imgcls score-submission CLASS SUB --job`. It rebuilds the network from the backbone's
name and loads the submitted weights from safetensors (never code or a pickle from the student); the
preprocessing comes from the backbone's own data config at the run's image size. It works in the class's
scoring folder, so the hidden images' decoded copies stay on the server side, never in a student's cache.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from imgcls import jobs
from imgcls.classroom import classes, shared
from imgcls.classroom.classes import ClassroomError
from imgcls.store import ranges, workspace

_SUB_RE = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{8}$")
SCORE_FILE, ROWS_FILE, META_FILE, LOG_FILE = "score.json", "per_image.csv", "submission.json", "log.txt"
QUEUED = "Waiting to be scored"
SCORING = "Scoring on the hidden test images"
SHOWN_LOG = "the scoring log, which the teacher can read"


def submissions_dir(class_id: str) -> Path:
    """The folder holding one subfolder per submission to the class's board."""
    return classes.class_dir(class_id) / "submissions"


def submission_dir(class_id: str, sub_id: str) -> Path:
    """The folder of one submission (a ClassroomError for an id that is not one)."""
    if not isinstance(sub_id, str) or not _SUB_RE.match(sub_id):
        raise ClassroomError(f"There is no submission '{sub_id}'.")
    return submissions_dir(class_id) / sub_id


def status_path(class_id: str, sub_id: str) -> Path:
    """The scoring job's status file."""
    return submission_dir(class_id, sub_id) / "status.json"


def scoring_home(class_id: str) -> Path:
    """The workspace the class's scoring jobs work in (their decoded-image cache, their job records)."""
    return classes.class_dir(class_id) / "scoring"


def queue(class_id: str, sub_id: str, device: str = "cpu") -> int:
    """Queue the scoring of a submission as a background job; its process's pid."""
    folder = submission_dir(class_id, sub_id)
    with workspace.use(scoring_home(class_id)):  # the job's IMGCLS_HOME: the class's server-side folder
        return jobs.submit(status_path(class_id, sub_id), ["score-submission", class_id, sub_id, "--job"], device,
                           log=folder / LOG_FILE, label=f"score/{class_id}/{sub_id}", message=QUEUED)


def _load_model(folder: Path, config: dict, device: str):
    """The submitted network: imgcls's model of that backbone with the submitted weights (safetensors)."""
    from safetensors.torch import load_file

    from imgcls.vision.models import create_model

    try:
        model = create_model(str(config["backbone"]), len(config["classes"]), pretrained=False)
        model.load_state_dict(load_file(str(folder / "model.safetensors"), device="cpu"))
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with the file, the sentence is the same
        first = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        count = len(config.get("classes") or [])
        raise ClassroomError(f"The submitted model cannot be loaded as a network of backbone "
                             f"{config.get('backbone')} with {count} classes ({first}).") from exc
    return model.to(device).eval()


def _preprocess(config: dict):
    """The run's preprocessing, from the backbone's own data config (not from the submitted file)."""
    from imgcls.vision.models import data_config
    from imgcls.vision.preprocess import Preprocess

    try:
        size = ranges.TRAIN["img_size"].check(int(config["img_size"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ClassroomError(f"The submitted run has no usable image size ({exc}).") from None
    return Preprocess.for_run({"backbone": config["backbone"], "strategy": config.get("strategy"),
                               "img_size": size, "data_config": data_config(config["backbone"])})


def _hidden_images(class_id: str, dataset: str, rows: pd.DataFrame, pre, progress):
    try:
        with workspace.use(scoring_home(class_id)):
            return pre.load_images(shared.hidden_dir(class_id, dataset), rows["path"].tolist(),
                                   rows["hash"].tolist(), progress=progress)
    except (OSError, ValueError) as exc:  # which image stays in the log: its name is the teacher's to see
        raise ClassroomError("A hidden test image could not be read: the teacher can share the dataset "
                             "again to repair it.") from exc


def score(class_id: str, sub_id: str, device: str = "cpu",
          progress: Callable[[float, str], None] | None = None) -> dict:
    """Predict the hidden test images with the submitted model; write score.json (the aggregate numbers)
    and per_image.csv (the teacher's); the score."""
    from imgcls.evaluate.evaluation import compute_metrics
    from imgcls.vision.infer import probabilities

    folder = submission_dir(class_id, sub_id)
    meta = workspace.read_json(folder / META_FILE) or {}
    config = workspace.read_json(folder / "config.json") or {}
    names = list(config.get("classes") or [])
    rows = shared.hidden_rows(class_id, meta.get("dataset", ""))
    rows = rows[rows["label"].isin(names)].reset_index(drop=True)
    if rows.empty:
        raise ClassroomError(f"'{meta.get('dataset')}' has no hidden test images of the model's classes.")
    model, pre = _load_model(folder, config, device), _preprocess(config)
    images = _hidden_images(class_id, meta["dataset"], rows, pre, progress)
    if progress:
        progress(0.9, "Predicting the hidden test images")
    probs = probabilities(model, images, pre, device)
    labels = rows["label"].map({c: i for i, c in enumerate(names)}).to_numpy()
    result = {**compute_metrics(labels, probs, names), "n": int(len(rows)), "dataset": meta["dataset"],
              "scored": time.time()}
    table = rows[["path", "source", "label"]].copy()
    table["prediction"] = [names[i] for i in probs.argmax(1)]
    table["confidence"] = probs.max(1)
    table["correct"] = table["prediction"] == table["label"]
    for i, name in enumerate(names):
        table[f"p:{name}"] = probs[:, i]
    workspace.atomic_write_text(folder / ROWS_FILE, table.to_csv(index=False))
    workspace.atomic_write_json(folder / SCORE_FILE, result)
    return result


def run_job(class_id: str, sub_id: str, device: str = "cpu",
            echo: Callable[[float, str], None] | None = None) -> dict:
    """Score a submission in this process as its job, keeping its status up to date (the `--job` path of
    the command line)."""
    path = status_path(class_id, sub_id)
    with jobs.slots.hold(device), jobs.running(path, what="The scoring", log=path.with_name(LOG_FILE),
                                               shown_log=SHOWN_LOG, label=f"score/{class_id}/{sub_id}",
                                               progress=0.0, message=SCORING):
        return score(class_id, sub_id, device, progress=jobs.progress_writer(path, echo))


def read_rows(class_id: str, sub_id: str) -> pd.DataFrame | None:
    """The per-image results of a scored submission (the teacher's view only), or None before scoring."""
    path = submission_dir(class_id, sub_id) / ROWS_FILE
    return pd.read_csv(path, dtype={"path": str, "source": str, "label": str, "prediction": str},
                       keep_default_na=False) if path.exists() else None
