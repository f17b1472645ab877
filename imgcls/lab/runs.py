"""Real training runs for thorough experiments, run one after another inside the experiment's process.

Every run goes through `train.run`, the one training executor; a run on part of the training images, or
with some labels changed, passes those as `train.Changes`, and its config.json says what was changed. The
runs share the experiment's slot and its stop token: Stop ends the run in hand and the experiment.
"""

from __future__ import annotations

import contextlib
import functools
import threading

import numpy as np

from imgcls.store import runs, workspace
from imgcls.train import run as train


@contextlib.contextmanager
def _forward_progress(run_id: str, say, lo: float, hi: float, label: str):
    """Relay the run's own progress (status.json) to the experiment's progress, once a second."""
    done = threading.Event()

    def poll() -> None:
        while not done.wait(1.0):
            st = runs.read_status(run_id)
            say(lo + (hi - lo) * float(st.get("progress") or 0.0), f"{label}: {st.get('message') or ''}")
    thread = threading.Thread(target=workspace.bound(poll), daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def train_variant(config: train.TrainConfig, say, lo: float, hi: float, label: str, exp_tag: str,
                  drop: set[str] | None = None, relabel: dict[str, str] | None = None) -> dict:
    """Prepare and run one training run (optionally without some images or with labels changed)."""
    run_id = train.prepare_run(config)
    saved = runs.read_config(run_id)
    saved["experiment"] = {"tag": exp_tag, "variant": label, "dropped_train_images": len(drop or ()),
                           "relabelled_train_images": len(relabel or {})}
    workspace.atomic_write_json(runs.run_dir(run_id) / "config.json", saved)
    say(lo, f"{label}: run {run_id}")
    changes = train.Changes(frozenset(drop or ()), tuple((relabel or {}).items())) if drop or relabel else None
    with _forward_progress(run_id, say, lo, hi, label):
        result = train.run(run_id, echo=lambda _: None, changes=changes)
    epochs = [m for m in runs.read_metrics(run_id) if m.get("kind") == "epoch" and m.get("stage") != "head"]
    return {"run": run_id, "result": result, "epochs": epochs}


@functools.lru_cache(maxsize=2)
def _best_model(root: str, run_id: str):
    """The run's best model, once per workspace and run: two workspaces can hold runs of the same id."""
    from imgcls.vision.checkpoint import load_run_model

    with workspace.use(root):
        return load_run_model(run_id)


def predict(run_id: str, images: np.ndarray) -> np.ndarray:
    """Class indices the run's best model predicts for cached images (centre crop, no augmentation)."""
    from imgcls.vision.infer import probabilities
    from imgcls.vision.preprocess import Preprocess

    model, config = _best_model(str(workspace.home()), run_id)
    probs = probabilities(model, images, Preprocess.for_run(config))
    return probs.argmax(1) if len(probs) else np.zeros(0, dtype=int)


def last_epoch(trained: dict) -> dict:
    """The last network epoch's record (train and validation accuracy after the whole budget)."""
    if not trained["epochs"]:
        return {"train_accuracy": float("nan"), "val_accuracy": trained["result"].get("val_accuracy", float("nan"))}
    return trained["epochs"][-1]
