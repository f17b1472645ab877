"""Real training runs for thorough experiments, run one after another inside the experiment's process.

A run on the whole dataset goes through `train.run` unchanged. A run on part of the training images, or
with some labels changed, cannot be described by a TrainConfig, so it is executed here with the same
engine pieces (head on features, then the network), and its config.json says what was changed.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import threading
import time

import numpy as np
import torch

from . import imgcache, jobs, runs, train, workspace
from .heads import HEAD_UNIT, fit_head
from .netfit import fit_network


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
    handler = signal.getsignal(signal.SIGTERM)
    say(lo, f"{label}: run {run_id}")
    try:
        with _forward_progress(run_id, say, lo, hi, label):
            if drop or relabel:
                result = _run_changed(run_id, drop or set(), relabel or {})
            else:
                result = train.run(run_id, echo=lambda _: None)
    finally:
        signal.signal(signal.SIGTERM, handler)  # train.run installs its own; the experiment's comes back
    epochs = [m for m in runs.read_metrics(run_id) if m.get("kind") == "epoch" and m.get("stage") != "head"]
    return {"run": run_id, "result": result, "epochs": epochs}


def _run_changed(run_id: str, drop: set[str], relabel: dict[str, str]) -> dict:
    """Execute a prepared run on the dataset minus `drop` paths, with `relabel` (path → label) applied."""
    config = runs.read_config(run_id)
    waiting = lambda: runs.write_status(run_id, state="queued", message="Waiting for the device")  # noqa: E731
    with jobs.device_lock(config["device"], on_wait=waiting):
        runs.write_status(run_id, state="running", pid=os.getpid(), started=time.time(), message="Starting")
        try:
            result = _execute(run_id, config, drop, relabel)
        except BaseException as exc:
            stopped = type(exc).__name__ in ("Cancelled", "Stopped", "KeyboardInterrupt")
            runs.write_status(run_id, state="cancelled" if stopped else "failed", finished=time.time(),
                              message="Stopped with its experiment." if stopped else str(exc).split("\n")[0])
            raise
    runs.write_status(run_id, state="done", progress=1.0, eta_seconds=0, finished=time.time(), message="Finished",
                      result=result)
    return result


def _execute(run_id: str, config: dict, drop: set[str], relabel: dict[str, str]) -> dict:
    torch.manual_seed(config["seed"])
    np.random.seed(config["seed"])
    started = time.time()
    df = workspace.read_manifest(config["dataset"])
    df = df[~df["excluded"] & df["split"].isin(["train", "val"]) & ~df["path"].isin(drop)].reset_index(drop=True)
    df["label"] = [relabel.get(p, lab) for p, lab in zip(df["path"], df["label"])]
    train.check_dataset(df)
    classes = config["classes"]
    labels = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    n_train = int((df["split"] == "train").sum())
    head_epochs = config["epochs"] if config["strategy"] == "linear" else config["head_epochs"]
    units = 2 * len(df) + n_train * HEAD_UNIT * head_epochs + (0 if config["strategy"] == "linear"
                                                               else n_train * config["epochs"] * 3)
    rep = train.Reporter(run_id, units, lambda _: None)
    side = imgcache.cache_size(config["img_size"], config["data_config"]["crop_pct"])
    images = imgcache.load_images(workspace.dataset_dir(config["dataset"]), df["path"].tolist(), df["hash"].tolist(),
                                  side, config["data_config"]["interpolation"], progress=rep.track(len(df)))
    data = {"images": images, "labels": labels, "hashes": df["hash"].tolist(), "split": df["split"].to_numpy()}
    from .models import create_model

    model = create_model(config["backbone"], len(classes), pretrained=config["strategy"] != "scratch")
    result = head = None
    if config["strategy"] in ("linear", "finetune"):
        result = head = fit_head(model, data, config, run_id, rep)
    if config["strategy"] != "linear":
        result = fit_network(model, data, config, run_id, rep, start_from=head)
    return dict(result, run=run_id, seconds=round(time.time() - started, 2), device=config["device"])


@functools.lru_cache(maxsize=2)
def _best_model(root: str, run_id: str):
    """The run's best model, once per workspace and run: two workspaces can hold runs of the same id."""
    from .checkpoint import load_run_model

    with workspace.use(root):
        return load_run_model(run_id)


def predict(run_id: str, images: np.ndarray) -> np.ndarray:
    """Class indices the run's best model predicts for cached images (centre crop, no augmentation)."""
    from .loops import predict_arrays

    model, config = _best_model(str(workspace.home()), run_id)
    dcfg = config["data_config"]
    probs = predict_arrays(model, images, config["img_size"], dcfg["mean"], dcfg["std"], "cpu")
    return probs.argmax(1) if len(probs) else np.zeros(0, dtype=int)


def last_epoch(trained: dict) -> dict:
    """The last network epoch's record (train and validation accuracy after the whole budget)."""
    if not trained["epochs"]:
        return {"train_accuracy": float("nan"), "val_accuracy": trained["result"].get("val_accuracy", float("nan"))}
    return trained["epochs"][-1]
