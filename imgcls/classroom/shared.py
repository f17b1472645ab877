"""Datasets shared with a class: what students may copy, and the test images held back on the server.

    classes/<id>/datasets/<name>/   manifest.csv (train and val rows), their images, shared.json, augment.json
    classes/<id>/hidden/<name>/     manifest.csv (the held-back test rows) and their images

Nothing under hidden/ is ever copied, listed or returned to a student: only its count is shown, and only the
server's scoring job and the class's teacher read it. Images are hard-linked where the file system allows
(they are never changed in place: every write replaces a file), else copied.
"""

from __future__ import annotations

import os
import random
import shutil
import time
import uuid
from pathlib import Path

import pandas as pd

from imgcls.classroom import classes, settings
from imgcls.classroom.classes import ClassroomError, NotAllowed
from imgcls.store import access, quotas, workspace

HOLD_BACK = 0.2       # the share of each class held back as the hidden test when a dataset has no test split
HOLD_BACK_SEED = 0    # the same dataset holds back the same images every time it is shared
MIN_HOLD_BACK = 3     # a class with fewer images keeps them all for training
ORIGIN_FILE, SHARED_FILE, PIPELINE_FILE = "origin.json", "shared.json", "augment.json"


def shared_dir(class_id: str, name: str) -> Path:
    """The folder of a dataset shared with the class (what students may copy)."""
    return classes.class_dir(class_id) / "datasets" / workspace.check_name(name)


def hidden_dir(class_id: str, name: str) -> Path:
    """The folder of a shared dataset's held-back test images (server and teacher only)."""
    return classes.class_dir(class_id) / "hidden" / workspace.check_name(name)


def is_shared(class_id: str, name: str) -> bool:
    """Whether the class has a shared dataset of this name."""
    try:
        return (shared_dir(class_id, name) / SHARED_FILE).exists()
    except workspace.WorkspaceError:
        return False


def shared_info(class_id: str, name: str) -> dict:
    """What was recorded when the dataset was shared (classes, counts, baseline, when)."""
    info = workspace.read_json(shared_dir(class_id, name) / SHARED_FILE) if is_shared(class_id, name) else None
    if not isinstance(info, dict):
        raise ClassroomError(f"'{classes.get(class_id).name}' has no shared dataset '{name}'.")
    return info


def hidden_rows(class_id: str, name: str) -> pd.DataFrame:
    """The held-back test rows of a shared dataset: for the server's scoring and the teacher, never a student."""
    folder = hidden_dir(class_id, name)
    if not (folder / "manifest.csv").exists():
        return pd.DataFrame(columns=workspace.MANIFEST_COLUMNS)
    return workspace.load_manifest_file(folder)


def _place(src: Path, dst: Path) -> None:
    """Hard-link `src` at `dst`, or copy it where links cannot be made (another file system)."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _fill(folder: Path, source: Path, rows: pd.DataFrame) -> None:
    """A dataset folder of these rows: their images placed from `source`, and their manifest."""
    for rel in rows["path"]:
        _place(source / rel, folder / rel)
    workspace.write_manifest(folder, rows.reset_index(drop=True))


def hold_back(df: pd.DataFrame, share: float = HOLD_BACK, seed: int = HOLD_BACK_SEED) -> pd.Series:
    """A stratified, seeded choice of about `share` of each class's rows (True: held back), never taking a
    class's last training or last validation image."""
    chosen = pd.Series(False, index=df.index)
    for label, group in df.groupby("label", sort=True):
        n = len(group)
        want = max(1, round(n * share)) if n >= MIN_HOLD_BACK else 0
        order = sorted(group.index, key=lambda i: (df.at[i, "hash"], df.at[i, "path"]))
        random.Random(f"{seed}:{label}").shuffle(order)
        left, taken = group["split"].value_counts().to_dict(), 0
        for i in order:
            if taken >= want:
                break
            split = df.at[i, "split"]
            if split in ("train", "val") and left.get(split, 0) <= 1:
                continue
            chosen[i], taken = True, taken + 1
            left[split] = left.get(split, 0) - 1
    return chosen


def _split_rows(df: pd.DataFrame, hold_back_test: bool) -> tuple[pd.DataFrame, pd.DataFrame, bool]:
    """(open rows, hidden rows, whether the hidden ones were held back here rather than the test split).
    Test rows are never shared, even with hold_back_test off: that only decides whether a dataset without a
    test split gets one held back."""
    kept = df[~df["excluded"].astype(bool)].copy()
    hidden = kept["split"] == "test"
    carved = False
    if not hidden.any() and hold_back_test:
        hidden, carved = hold_back(kept), True
    open_rows, hidden_rows_ = kept[~hidden], kept[hidden].assign(split="test")
    names = sorted(open_rows["label"].unique())
    if len(names) < 2:
        raise ClassroomError("Students could not train on what is left to share: it needs images of at "
                             "least two classes outside the test split.")
    # a test image of a class nobody can train on cannot be scored fairly
    return open_rows, hidden_rows_[hidden_rows_["label"].isin(names)], carved


def share_dataset(class_id: str, by: access.User, dataset: str, hold_back_test: bool = True,
                  baseline: dict | None = None) -> dict:
    """Share a dataset of the current workspace with the class: its test rows held back on the server, the
    rest for students to copy (excluded rows dropped). Without a test split, and with hold_back_test, a
    stratified 20% is held back instead. `baseline`: the settings the board compares against."""
    info = classes.get(class_id)
    classes.check_manager(info, by.key, "share datasets with it")
    name = workspace.check_name(dataset)
    base = settings.baseline(baseline)
    with workspace.dataset_lock(name):
        df = workspace.read_manifest(name)
        open_rows, hidden, carved = _split_rows(df, hold_back_test)
        source = workspace.dataset_dir(name)
        staging = classes.class_dir(class_id) / f".staging-{uuid.uuid4().hex[:8]}"
        try:
            _fill(staging / "hidden", source, hidden)
            _fill(staging / "datasets", source, open_rows)
            if (source / PIPELINE_FILE).exists():
                shutil.copy2(source / PIPELINE_FILE, staging / "datasets" / PIPELINE_FILE)
            record = {"name": name, "source": name, "shared": time.time(), "by": by.key,
                      "baseline": base, "classes": sorted(open_rows["label"].unique()),
                      "images": len(open_rows), "hidden_test": len(hidden), "held_back": carved}
            workspace.atomic_write_json(staging / "datasets" / SHARED_FILE, record)
            with classes.class_lock(class_id):
                if is_shared(class_id, name) or hidden_dir(class_id, name).exists():
                    raise ClassroomError(f"'{info.name}' already has a dataset named '{name}': rename yours on "
                                         "the Data page and share it under the new name.")
                for part in ("hidden", "datasets"):  # hidden first: a listed dataset always has its test
                    target = classes.class_dir(class_id) / part / name
                    target.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(staging / part, target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return _listing(record)


def _listing(record: dict) -> dict:
    return {"name": record["name"], "images": int(record["images"]), "classes": list(record["classes"]),
            "hidden_test": int(record["hidden_test"]), "shared": float(record["shared"]),
            "baseline": dict(record.get("baseline") or {})}


def class_datasets(class_id: str) -> list[dict]:
    """The datasets shared with the class, oldest first: name, images, classes (their names), hidden_test
    (how many test images are held back; only the count), shared (when), baseline."""
    root = classes.class_dir(class_id) / "datasets"
    if not root.is_dir():
        return []
    found = [workspace.read_json(p / SHARED_FILE) for p in root.iterdir() if not p.name.startswith(".")]
    return sorted((_listing(r) for r in found if isinstance(r, dict)), key=lambda r: r["shared"])


def _free_name(base: str) -> str:
    base = workspace.suggest_name(base)
    name, n = base, 1
    while workspace.dataset_exists(name) or workspace.dataset_dir(name).exists():
        n += 1
        name = workspace.check_name(f"{base[:60]}-{n}")
    return name


def start_from(class_id: str, dataset: str, user: access.User, new_name: str | None = None) -> str:
    """Copy a class dataset (never its hidden test) into the current workspace as a new dataset that records
    where it came from; the new dataset's name (`new_name`, else a free name made from the class's)."""
    info = classes.get(class_id)
    if not (classes.is_member(info, user.key) or classes.can_manage(info, user.key)):
        raise NotAllowed(f"Only students of '{info.name}' can copy its datasets: join it first.")
    record = shared_info(class_id, dataset)
    source = shared_dir(class_id, dataset)
    rows = workspace.load_manifest_file(source)
    if new_name is not None and workspace.dataset_exists(workspace.check_name(new_name)):
        raise workspace.WorkspaceError(f"A dataset named '{workspace.check_name(new_name)}' already exists; "
                                       "choose another name.")
    name = workspace.check_name(new_name) if new_name is not None else _free_name(record["name"])
    quotas.check_import(name, True, [int(b or 0) for b in pd.to_numeric(rows["bytes"], errors="coerce").fillna(0)])
    staging = workspace.datasets_dir() / f".staging-class-{uuid.uuid4().hex[:8]}"
    try:
        _fill(staging, source, rows)
        if (source / PIPELINE_FILE).exists():
            shutil.copy2(source / PIPELINE_FILE, staging / PIPELINE_FILE)
        workspace.atomic_write_json(staging / ORIGIN_FILE, {
            "class_id": class_id, "class_name": info.name, "dataset": record["name"], "when": time.time()})
        with workspace.dataset_lock(name):
            if workspace.dataset_dir(name).exists():
                raise workspace.WorkspaceError(f"A dataset named '{name}' already exists; choose another name.")
            os.replace(staging, workspace.dataset_dir(name))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return name


def origin(dataset: str) -> dict | None:
    """Where a dataset of the current workspace came from (class id, class name, dataset, when), or None
    when it was not copied from a class."""
    try:
        found = workspace.read_json(workspace.dataset_dir(dataset) / ORIGIN_FILE)
    except (workspace.WorkspaceError, OSError, ValueError):
        return None
    return found if isinstance(found, dict) and found.get("class_id") else None
