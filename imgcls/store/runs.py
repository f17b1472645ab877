"""Run folders: the contract between the training engine and the UI.

runs/<id>/ config.json, status.json, metrics.jsonl, model.safetensors (best), last.pt (resume), log.txt

The id is the key everywhere; people read the run's name (imgcls.store.runnames).
"""

from __future__ import annotations

import collections
import json
import time
import uuid
from pathlib import Path

from imgcls.jobs import dist, statusfile
from imgcls.store import workspace

ACTIVE_STATES = statusfile.ACTIVE
FINAL_STATES = statusfile.FINAL
# Ended before their last epoch (Stop, or a restart or crash): the best model saved so far is as usable as a
# finished run's, marked as stopped early.
STOPPED_STATES = ("cancelled", "interrupted")


def runs_dir() -> Path:
    """Folder holding one subfolder per training run."""
    return workspace.folder("runs")


def new_run_id(dataset: str, strategy: str) -> str:
    """A sortable, readable, unique run id such as 20261127-1402-shapes-linear-3f2a."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    slug = workspace.suggest_name(f"{dataset}-{strategy}").replace(" ", "_")
    return f"{stamp}-{slug}-{uuid.uuid4().hex[:4]}"


def run_dir(run_id: str) -> Path:
    """Folder of one run; refuses ids that would leave the runs folder."""
    return workspace.keyed_dir("runs", run_id, "a run id")


def list_runs() -> list[str]:
    """Run ids, newest first (ids carry their creation second; runs made within one second go by the time
    their status records, so the newest is first however the random tails of their ids compare)."""
    ids = [p.name for p in runs_dir().iterdir() if (p / "config.json").exists()]
    per_second = collections.Counter(i[:15] for i in ids)

    def key(run_id: str):
        shared = per_second[run_id[:15]] > 1
        created = (workspace.read_json(run_dir(run_id) / "status.json", {}) or {}).get("created", 0) if shared else 0
        return run_id[:15], created, run_id
    return sorted(ids, key=key, reverse=True)


def usable(run_id: str, config: dict, status: dict) -> bool:
    """Whether a training run has a model to evaluate, compare, export and share: finished, or stopped early
    after saving one."""
    return config.get("task", "train") == "train" and status.get("state") in ("done", *STOPPED_STATES) \
        and (run_dir(run_id) / "model.safetensors").exists()


def stopped_early(status: dict) -> bool:
    """Whether a run ended before its last epoch yet kept a model (its result is that model's)."""
    return status.get("state") in STOPPED_STATES and bool((status.get("result") or {}).get("stopped_early"))


def model_runs(dataset: str | None = None) -> list[str]:
    """Training runs with a usable model (finished or stopped early), newest first, leaving out the Learn
    page's experiment runs (trained on part of the data or on flipped labels on purpose)."""
    out = []
    for run_id in list_runs():
        config = workspace.read_json(run_dir(run_id) / "config.json", {}) or {}
        if config.get("experiment") or (dataset is not None and config.get("dataset") != dataset):
            continue
        if usable(run_id, config, read_status(run_id)):
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
    status = statusfile.read(status_path(run_id))
    if status.get("state") in STOPPED_STATES:
        kept = kept_model(run_id)
        if kept:  # read from the run's own files, so a run stopped before this was written reads alike
            status = dict(status, result=kept)
    return status


def write_status(run_id: str, **fields) -> dict:
    """Update fields of status.json atomically and return the new status (only the main process writes)."""
    if not dist.is_main():
        return statusfile.read_raw(status_path(run_id))
    return statusfile.write(status_path(run_id), **fields)


def status_path(run_id: str) -> Path:
    """The run's status file (the job system's format)."""
    return run_dir(run_id) / "status.json"


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


def mark_interrupted() -> list[str]:
    """Persist 'interrupted' for runs whose process is gone (after a server restart)."""
    changed = []
    for run_id in list_runs():
        if statusfile.read_raw(status_path(run_id)).get("state") in ACTIVE_STATES and \
                statusfile.settle(status_path(run_id)).get("state") == "interrupted":
            changed.append(run_id)
    return changed


# --- the model a stopped run kept -----------------------------------------------------------------

_KEPT: dict[str, tuple[tuple, dict]] = {}  # run folder → (file stamps, kept_model): pages ask on every rerun


def kept_model(run_id: str) -> dict | None:
    """What a run's saved model scored on validation (its best epoch so far), from the run's own metrics;
    None when it saved no model."""
    folder = run_dir(run_id)
    try:
        model = (folder / "model.safetensors").stat()
    except OSError:
        return None
    metrics = folder / "metrics.jsonl"
    seen = metrics.stat() if metrics.exists() else None
    stamp = (model.st_mtime_ns, model.st_size, seen and seen.st_mtime_ns, seen and seen.st_size)
    if _KEPT.get(str(folder), ((),))[0] != stamp:
        _KEPT[str(folder)] = (stamp, _kept(run_id))
    return dict(_KEPT[str(folder)][1])


def model_metadata(path: Path) -> dict:
    """The metadata in a safetensors file's header, read without loading (or importing) any tensor code."""
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size < 100_000_000:
                return {}
            meta = json.loads(fh.read(size)).get("__metadata__") or {}
        return {str(k): str(v) for k, v in meta.items()}
    except (OSError, ValueError, AttributeError):
        return {}


def _epoch_records(run_id: str) -> list[dict]:
    """Epoch records in training order; a resumed run repeats an epoch, and its last record wins."""
    seen: dict[tuple, dict] = {}
    for record in read_metrics(run_id):
        if record.get("kind") == "epoch" and isinstance(record.get("val_loss"), (int, float)):
            seen[(record.get("stage") or "", record.get("epoch") or 0)] = record
    stages = list(dict.fromkeys(stage for stage, _ in seen))
    return [seen[k] for k in sorted(seen, key=lambda k: (stages.index(k[0]), k[1]))]


def _lowest_loss(records: list[dict]) -> dict | None:
    """The epoch the trainer keeps: the first to beat the best validation loss so far by 1e-4."""
    best = None
    for record in records:
        if best is None or record["val_loss"] < best["val_loss"] - 1e-4:
            best = record
    return best


def _kept(run_id: str) -> dict:
    config = workspace.read_json(run_dir(run_id) / "config.json", {}) or {}
    strategy = config.get("strategy")
    meta = model_metadata(run_dir(run_id) / "model.safetensors")
    records = _epoch_records(run_id)
    if "epoch" in meta:  # saved by the network stage after that epoch
        best = next((r for r in reversed(records) if r.get("stage") != "head" and str(r.get("epoch")) == meta["epoch"]),
                    {"epoch": int(meta["epoch"]) if meta["epoch"].isdigit() else None})
    elif meta.get("stage") == "head":  # saved by the last-layer stage, its best epoch
        best = _lowest_loss([r for r in records if r.get("stage") == "head"])
    else:
        best = _lowest_loss(records)
    best = best or {}
    # train.strategies' rules, checked here by name because store stands below train: linear never trains the
    # network, so its last stage is "head"; finetune trains it after a last-layer stage
    last = "head" if strategy == "linear" else strategy
    head_of_finetune = best.get("stage") == "head" and strategy != "linear"
    return {"val_accuracy": best.get("val_accuracy"), "val_loss": best.get("val_loss"),
            # finetune's convention, as in a finished run's result: epoch 0 is its last-layer stage
            "best_epoch": 0 if head_of_finetune else best.get("epoch"), "best_stage": best.get("stage"),
            "epochs": max((r.get("epoch") or 0 for r in records if r.get("stage") == last), default=0),
            "stopped_early": True}


def stopped_summary(config: dict, status: dict) -> str:
    """One plain sentence on a run stopped early: when it stopped, and which model it kept, how good."""
    result = status.get("result") or {}
    done, best = result.get("epochs") or 0, result.get("best_epoch")
    how = "by the user" if status.get("state") == "cancelled" else "by a restart or crash"
    when = f"after epoch {done} of {config.get('epochs', '?')}" if done else "during its first epoch"
    if config.get("strategy") == "finetune" and not done:  # no network epoch ended after its last-layer stage
        when = "before the first fine-tuning epoch ended"
    kept = "the last-layer stage" if best == 0 else f"epoch {best}" if best is not None else "its best epoch"
    acc = result.get("val_accuracy")
    score = f" (validation accuracy {acc:.1%})" if isinstance(acc, (int, float)) else ""
    return f"Stopped early {how}, {when}; the model kept is from {kept}{score}."
