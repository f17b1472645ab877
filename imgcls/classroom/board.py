"""The class board: students submit a run, the server scores it on the hidden test images, the board ranks.

A submission is a frozen copy of the run (its config, model and epoch metrics), so deleting or resuming the
run later changes nothing on the board. The board keeps each student's best scored submission per dataset
(the highest accuracy, then macro F1, then the earliest); a student with nothing scored yet shows with their
latest submission and its state. A student's view of a score holds only aggregate numbers; the per-image
results on the hidden images are the teacher's alone.
"""

from __future__ import annotations

import datetime
import math
import shutil
import time
import uuid

import pandas as pd

from imgcls import jobs
from imgcls.classroom import classes, scoring, settings, shared
from imgcls.classroom.classes import ClassroomError, NotAllowed
from imgcls.store import access, runnames, runs, workspace

COLUMNS = ["rank", "student", "name", "accuracy", "macro_f1", "expected", "settings", "submitted", "state",
           "sub_id", "dataset"]
FROZEN_FILES = ("config.json", "model.safetensors", "metrics.jsonl")
WITHIN_POINTS = 5.0


def _check_expected(value) -> float | None:
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if not 0.0 <= number <= 1.0:
        raise ClassroomError(f"The expected accuracy must be a fraction between 0 and 1 (0.85 for 85%), not {value!r}.")
    return number


def _checked_run(info: classes.ClassInfo, run_id: str) -> tuple[dict, dict]:
    """The run's config and where its dataset came from, if it may go on this class's board."""
    config = runs.read_config(run_id)
    name = runnames.display_name(run_id, config)
    if not runs.usable(run_id, config, runs.read_status(run_id)):
        raise ClassroomError(f"Run '{name}' has no kept model to submit: wait for it to finish, or train one.")
    came = shared.origin(str(config.get("dataset", "")))
    if not came or came.get("class_id") != info.id:
        raise ClassroomError(f"Run '{name}' was trained on '{config.get('dataset')}', which was not copied from "
                             f"'{info.name}': start from one of the class's datasets and train on that copy.")
    if not shared.is_shared(info.id, came.get("dataset", "")):
        raise ClassroomError(f"'{info.name}' no longer shares '{came.get('dataset')}', so it cannot be scored.")
    record = shared.shared_info(info.id, came["dataset"])
    if not record.get("hidden_test"):
        raise ClassroomError(f"'{came['dataset']}' has no hidden test images in '{info.name}' to score on.")
    if sorted(config.get("classes") or []) != sorted(record["classes"]):
        raise ClassroomError(f"Run '{name}' knows the classes {', '.join(config.get('classes') or [])}, but "
                             f"'{came['dataset']}' has {', '.join(record['classes'])}: train on all of them.")
    return config, {**came, "baseline": record.get("baseline")}


def _submissions(class_id: str) -> list[dict]:
    root = scoring.submissions_dir(class_id)
    if not root.is_dir():
        return []
    found = [workspace.read_json(p / scoring.META_FILE) for p in root.iterdir() if not p.name.startswith(".")]
    return sorted((m for m in found if isinstance(m, dict)), key=lambda m: m["submitted"])


def _state(class_id: str, sub_id: str) -> tuple[str, dict, dict | None]:
    """(queued / running / done / failed, the job's status, the score)."""
    status = jobs.status(scoring.status_path(class_id, sub_id))
    score = workspace.read_json(scoring.submission_dir(class_id, sub_id) / scoring.SCORE_FILE)
    state = status.get("state")
    if state == "done":
        return ("done" if isinstance(score, dict) else "failed"), status, score
    return (state if state in jobs.ACTIVE else "failed"), status, None


def submit(class_id: str, run_id: str, user: access.User, expected_accuracy: float | None = None) -> dict:
    """Put a run of the current workspace on the class's board: a frozen copy of it is scored on the hidden
    test images in the background. `expected_accuracy`: the student's guess, a fraction between 0 and 1."""
    info = classes.get(class_id)
    if not classes.is_member(info, user.key):
        raise NotAllowed(f"Only students of '{info.name}' can submit to its board: join it with your teacher's code.")
    if info.frozen:
        raise ClassroomError(f"The board of '{info.name}' is frozen: it takes no new submissions.")
    expected = _check_expected(expected_accuracy)
    config, came = _checked_run(info, run_id)
    for earlier in _submissions(class_id):
        if earlier["student"] == user.key and _state(class_id, earlier["sub_id"])[0] in jobs.ACTIVE:
            raise ClassroomError("Your previous submission is still being scored: submit again when it is done.")
    sub_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
    folder = scoring.submission_dir(class_id, sub_id)
    staging = folder.with_name(f".{sub_id}")
    try:
        staging.mkdir(parents=True)
        for name in FROZEN_FILES:
            if (runs.run_dir(run_id) / name).exists():
                with workspace.saving("the submission's copy of the run"):
                    shutil.copyfile(runs.run_dir(run_id) / name, staging / name)
        workspace.atomic_write_json(staging / scoring.META_FILE, {
            "sub_id": sub_id, "class_id": class_id, "student": user.key, "name": user.label, "run": run_id,
            "run_name": runnames.display_name(run_id, config), "dataset": came["dataset"],
            "workspace_dataset": config.get("dataset"), "expected": expected, "submitted": time.time(),
            "settings": settings.describe(config, came.get("baseline")),
            "val_accuracy": (runs.read_status(run_id).get("result") or {}).get("val_accuracy")})
        jobs.write_status(staging / "status.json", state="queued", created=time.time(), message=scoring.QUEUED)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    scoring.queue(class_id, sub_id)
    return submission(class_id, sub_id)


def submission(class_id: str, sub_id: str) -> dict:
    """One submission as anyone in the class may see it: who, when, the frozen config, its state, and its
    aggregate score (None until scored); never the per-image results."""
    meta = workspace.read_json(scoring.submission_dir(class_id, sub_id) / scoring.META_FILE)
    if not isinstance(meta, dict):
        raise ClassroomError(f"There is no submission '{sub_id}' in this class.")
    state, status, score = _state(class_id, sub_id)
    config = workspace.read_json(scoring.submission_dir(class_id, sub_id) / "config.json") or {}
    return {**meta, "config": config, "score": score, "state": state,
            "status": {k: status.get(k) for k in ("state", "progress", "message", "created", "started", "finished")}}


def _best(subs: list[dict]) -> dict:
    scored = [s for s in subs if s["state"] == "done"]
    if not scored:
        return max(subs, key=lambda s: s["submitted"])
    return min(scored, key=lambda s: (-s["score"]["accuracy"], -s["score"]["macro_f1"], s["submitted"]))


def _rows(class_id: str, dataset: str | None) -> list[dict]:
    """Every submission of the class's current students (of one dataset, if given), with state and score."""
    members = classes.get(class_id).members
    out = []
    for meta in _submissions(class_id):
        if meta["student"] in members and dataset in (None, meta["dataset"]):
            state, _, score = _state(class_id, meta["sub_id"])
            out.append({**meta, "name": members[meta["student"]].get("name") or meta["name"], "state": state,
                        "score": score})
    return out


def board(class_id: str, dataset: str | None = None) -> pd.DataFrame:
    """The ranked board: each current student's best submission per dataset, ranked by accuracy then macro F1
    (equal scores share a rank), unscored rows last."""
    groups: dict[tuple, list] = {}
    for row in _rows(class_id, dataset):
        groups.setdefault((row["dataset"], row["student"]), []).append(row)
    best = [_best(subs) for subs in groups.values()]
    records = []
    for s in best:
        score = s["score"] or {}
        records.append({"rank": None, "student": s["student"], "name": s["name"], "accuracy": score.get("accuracy"),
                        "macro_f1": score.get("macro_f1"), "expected": s.get("expected"), "settings": s["settings"],
                        "submitted": s["submitted"], "state": s["state"], "sub_id": s["sub_id"],
                        "dataset": s["dataset"]})
    scored = sorted((r for r in records if r["state"] == "done"),
                    key=lambda r: (r["dataset"], -r["accuracy"], -r["macro_f1"], r["submitted"]))
    for i, r in enumerate(scored):
        before = scored[i - 1] if i else None
        same = before and (before["dataset"], before["accuracy"], before["macro_f1"]) == \
            (r["dataset"], r["accuracy"], r["macro_f1"])
        first = next(j for j, o in enumerate(scored) if o["dataset"] == r["dataset"])
        r["rank"] = before["rank"] if same else i - first + 1
    unscored = sorted((r for r in records if r["state"] != "done"), key=lambda r: (r["dataset"], r["submitted"]))
    df = pd.DataFrame(scored + unscored, columns=COLUMNS)
    df["rank"] = df["rank"].astype("Int64")
    for column in ("accuracy", "macro_f1", "expected", "submitted"):
        df[column] = pd.to_numeric(df[column], errors="coerce").astype(float)
    return df


def _safe_cell(value):
    # a spreadsheet runs a cell that starts like a formula: a student's name must stay text
    return f"'{value}" if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def board_csv(class_id: str, dataset: str | None = None) -> bytes:
    """The board as a CSV file (UTF-8), its times as local ISO dates, text safe to open in a spreadsheet."""
    df = board(class_id, dataset).copy()
    df["submitted"] = [datetime.datetime.fromtimestamp(t).isoformat(timespec="seconds") if t == t else ""
                       for t in df["submitted"]]
    for column in ("student", "name", "settings", "state", "sub_id", "dataset"):
        df[column] = df[column].map(_safe_cell)
    return df.to_csv(index=False).encode("utf-8")


def prediction_quality(class_id: str, dataset: str | None = None) -> dict:
    """How well students predicted their scores, over every scored submission that came with a prediction:
    n, the mean absolute error in percentage points, and the share within 5 points (None when nobody
    predicted)."""
    errors = [abs(r["expected"] - r["score"]["accuracy"]) * 100 for r in _rows(class_id, dataset)
              if r["state"] == "done" and r.get("expected") is not None]
    if not errors:
        return {"n": 0, "mean_abs_error": None, "within_5": None}
    return {"n": len(errors), "mean_abs_error": sum(errors) / len(errors),
            "within_5": sum(e <= WITHIN_POINTS + 1e-9 for e in errors) / len(errors)}


def curves(class_id: str, sub_id: str) -> list[dict]:
    """The epoch metrics records of the frozen run (its validation curves, never anything hidden)."""
    path = scoring.submission_dir(class_id, sub_id) / "metrics.jsonl"
    return [r for r in workspace.read_jsonl(path) if r.get("kind") == "epoch"]


def hidden_report(class_id: str, sub_id: str, viewer_key: str) -> dict:
    """The submission with its per-image results on the hidden test images: the class's teacher (or an
    admin) only, PermissionError for anyone else."""
    classes.check_manager(classes.get(class_id), viewer_key, "see results on the hidden test images")
    out = submission(class_id, sub_id)
    rows = scoring.read_rows(class_id, sub_id)
    return {**out, "rows": [] if rows is None else rows.to_dict("records")}


def hidden_image(class_id: str, name: str, path: str, viewer_key: str) -> bytes:
    """The file of one hidden test image of a shared dataset: the class's teacher (or an admin) only."""
    classes.check_manager(classes.get(class_id), viewer_key, "see the hidden test images")
    if path not in set(shared.hidden_rows(class_id, name)["path"]):
        raise ClassroomError(f"'{path}' is not a hidden test image of '{name}'.")
    return (shared.hidden_dir(class_id, name) / path).read_bytes()
