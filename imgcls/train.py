"""Training runs: configuration, data checks, the four strategies, and the run folder they fill."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
import time
from dataclasses import dataclass
from typing import Callable

import torch

from . import dist, imgcache, jobs, ranges, runnames, runs, versions, workspace
from .augment import build_pipeline, pipeline_to_dict, resolve_augment
from .evaluate import evaluate_quietly
from .heads import HEAD_UNIT, fit_head, head_lr_find_run
from .loops import default_threads, reproducible
from .models import DEFAULT_BACKBONE, bundled_weights_path, create_model, data_config
from .netfit import fit_network, network_lr_find_run

STRATEGIES = {
    "linear": "Keep the pretrained network frozen and train only its last layer: done in seconds, "
              "and strong when your photos look like everyday photos.",
    "finetune": "Train the last layer first, then let the top of the network adjust too, earlier layers "
                "more gently: usually the most accurate.",
    "full": "Let every layer of the pretrained network learn: slower, and it needs more images to pay off.",
    "scratch": "Start from random weights with no pretraining: a comparison that shows what transfer "
               "learning buys you.",
}
# img_size 256 for the pretrained strategies: on hymenoptera, features at 256 px scored 0.948 against
# 0.935 at the backbone's native 224 (small insects gain from the extra pixels), for 30% more compute.
DEFAULTS = {
    "linear": {"epochs": 60, "lr": 3e-3, "patience": 10, "batch_size": 64, "img_size": 256},
    "finetune": {"epochs": 6, "lr": 3e-4, "patience": 3, "batch_size": 32, "img_size": 256},
    "full": {"epochs": 8, "lr": 5e-4, "patience": 3, "batch_size": 32, "img_size": None},
    "scratch": {"epochs": 30, "lr": 2e-3, "patience": 6, "batch_size": 32, "img_size": None},
}
IMBALANCE_LIMIT = 3.0  # past 3:1 between the largest and smallest class, the loss is reweighted


class TrainError(Exception):
    """A run that cannot start or cannot go on, with a plain explanation."""


@dataclass
class TrainConfig:
    """Everything that decides a run; saved as config.json so the run can be reproduced."""

    dataset: str
    backbone: str = DEFAULT_BACKBONE
    strategy: str = "linear"
    epochs: int | None = None
    lr: float | str | None = None  # None: the strategy's default; "auto": the learning-rate finder
    batch_size: int | None = None
    img_size: int | None = None
    augment: str | dict = "saved"  # the dataset's saved pipeline (Augment page), else the light preset
    seed: int = 0
    device: str = "auto"
    weight_decay: float = 0.05
    label_smoothing: float = 0.1
    warmup_epochs: float = 1.0
    patience: int | None = None
    layer_decay: float = 0.7
    unfreeze: int = 8
    head_epochs: int = 30
    compile: bool = False
    workers: int | None = None
    threads: int | None = None  # CPU threads (None: every core this process may use); results depend on it
    task: str = "train"  # or "lr_find": only sweep the learning rate and suggest one

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Refuse a number outside its range with TrainError, in the words the command line uses too."""
        for name, allowed in ranges.TRAIN.items():
            value = getattr(self, name)
            if value is None or (name == "lr" and value in ("", "auto")):
                continue  # the strategy's default, or the learning-rate finder
            if name == "lr" and isinstance(value, str):
                with contextlib.suppress(ValueError):
                    value = float(value)
            try:
                setattr(self, name, allowed.check(value))
            except ranges.OutOfRange as exc:
                raise TrainError(str(exc)) from None

    def resolved(self) -> "TrainConfig":
        """A copy with the strategy's defaults filled in."""
        if self.strategy not in STRATEGIES:
            raise TrainError(f"Unknown strategy '{self.strategy}': choose {', '.join(STRATEGIES)}.")
        d = DEFAULTS[self.strategy]
        lr = self.lr if self.lr not in (None, "") else d["lr"]
        if lr != "auto":
            lr = float(lr)
        return dataclasses.replace(
            self, epochs=self.epochs or d["epochs"], lr=lr, batch_size=self.batch_size or d["batch_size"],
            img_size=self.img_size or d["img_size"],
            patience=self.patience or d["patience"], device=resolve_device(self.device),
            threads=self.threads or default_threads(),
        )


def resolve_device(name: str) -> str:
    """'auto' becomes cuda, mps or cpu, whichever this machine has."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise TrainError("This machine has no CUDA GPU: choose device cpu (or auto).")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise TrainError("This machine has no Apple GPU (mps): choose device cpu (or auto).")
    if name not in ("cpu", "cuda", "mps") and not name.startswith("cuda:"):
        raise TrainError(f"Unknown device '{name}': choose auto, cpu, cuda or mps.")
    return name


def check_dataset(df) -> list[str]:
    """Refuse datasets that cannot train, before anything starts; return plain notes otherwise."""
    classes = sorted(df["label"].unique())
    train, val = df[df["split"] == "train"], df[df["split"] == "val"]
    if len(classes) < 2:
        raise TrainError("Training needs at least two classes; this dataset has "
                         f"{len(classes)}. Add images of another class on the Data page.")
    if len(val) == 0:
        raise TrainError("The validation split is empty, so progress cannot be measured. "
                         "Move some images to 'val' on the Review page, or re-import without split folders.")
    missing = sorted(set(classes) - set(train["label"]))
    if missing:
        raise TrainError(f"No training images for class {', '.join(repr(m) for m in missing)}: "
                         "add some, or exclude the class.")
    counts = train["label"].value_counts()
    ratio = counts.max() / counts.min()
    return [f"Classes are imbalanced ({ratio:.1f}:1), so the loss weights rarer classes more."] \
        if ratio > IMBALANCE_LIMIT else []


ETA_WARMUP_S = 2.0  # a stage's rate is trusted after this long: its first batches carry its start-up


def stage_of(message: str) -> str:
    """The stage a progress message belongs to: the message without its numbers ('Epoch 2/6: 64 images' and
    'Epoch 3/6: 96 images' are one stage)."""
    return " ".join(re.sub(r"\d+(?:[.,]\d+)*%?", " ", message).split())


_STOP = {"requested": False}  # set by SIGTERM (the Stop button); loops check it between steps


def _on_term(*_) -> None:
    _STOP["requested"] = True


class Reporter:
    """Writes progress to status.json and metrics.jsonl, and watches for a stop request.

    The time left is the work left divided by the throughput measured in the current stage (decoding,
    features, last-layer epochs, network epochs), not since the start: the stages run at very different
    speeds per unit of work, so a whole-run average drifts with every stage change."""

    def __init__(self, run_id: str, total_units: float, echo: Callable[[str], None],
                 clock: Callable[[], float] = time.time):
        self.run_id, self.total, self.echo, self.clock = run_id, max(total_units, 1e-9), echo, clock
        self.done, self.started, self.last_write = 0.0, clock(), 0.0
        self.last_call, self.stage, self.stage_started, self.stage_units = self.started, None, self.started, 0.0
        self.estimate: tuple[float, float] | None = None  # (seconds left, when estimated)

    def should_stop(self) -> bool:
        return _STOP["requested"]

    def track(self, units: float):
        """A progress callback (fraction, message) that counts `units` of work as it goes."""
        seen = {"f": 0.0}

        def callback(fraction: float, message: str) -> None:
            self.advance(max(fraction - seen["f"], 0.0) * units, f"{message} {fraction:.0%}")
            seen["f"] = max(fraction, seen["f"])
        return callback

    def eta(self, units: float, message: str, now: float) -> float | None:
        """Seconds left: the work left at the current stage's measured rate; while a new stage warms up, the
        last estimate counts down."""
        if units > 0:
            stage = stage_of(message)
            if stage != self.stage:  # its work began when the previous call ended
                self.stage, self.stage_started, self.stage_units = stage, self.last_call, 0.0
            self.stage_units += units
        self.last_call = now
        elapsed = now - self.stage_started
        if self.stage_units > 0 and elapsed >= ETA_WARMUP_S:
            self.estimate = ((self.total - self.done) * elapsed / self.stage_units, now)
        if self.estimate is None:
            return None
        return max(self.estimate[0] - (now - self.estimate[1]), 0.0)

    def advance(self, units: float, message: str, force: bool = False, **fields) -> None:
        """Count work done; update status.json at most a few times a second."""
        self.done = min(self.done + units, self.total)
        now = self.clock()
        eta = self.eta(units, message, now)
        if force or now - self.last_write > 0.5:
            runs.write_status(self.run_id, progress=round(self.done / self.total, 4), eta_seconds=eta,
                              message=message, **fields)
            self.last_write = now

    def metric(self, record: dict) -> None:
        runs.append_metrics(self.run_id, record)
        if record.get("kind") == "epoch":
            shown = {k: round(v, 4) for k, v in record.items() if isinstance(v, float)}
            self.echo(f"epoch {record.get('epoch')} {record.get('stage', '')}: {shown}")


def prepare_run(config: TrainConfig) -> str:
    """Check the dataset, resolve defaults and create the run folder (queued); return its id."""
    cfg = config.resolved()
    with workspace.dataset_lock(cfg.dataset):  # the rows and their version read as one state
        full = workspace.read_manifest(cfg.dataset)
        version = versions.dataset_version(cfg.dataset, full)
    df = versions.canonical_rows(full)
    notes = check_dataset(df)
    dcfg = data_config(cfg.backbone)
    img_size = cfg.img_size or int(dcfg["input_size"][-1])
    pipeline = build_pipeline(resolve_augment(cfg.augment, cfg.dataset), img_size)
    run_id = runs.new_run_id(cfg.dataset, cfg.strategy if cfg.task == "train" else "lr-find")
    folder = runs.run_dir(run_id)
    folder.mkdir(parents=True)
    try:
        # the run's own copy of its rows: it trains on exactly this version even if the dataset is edited
        # before it starts, and is evaluated and reproduced on it afterwards
        versions.save_run_rows(run_id, df)
        saved = dataclasses.asdict(cfg) | {
            "name": runnames.new_run_name(cfg.dataset, cfg.strategy, cfg.task),  # readable; the id is the key
            "img_size": img_size, "classes": sorted(df["label"].unique()), "data_config": dcfg,
            "augment_pipeline": pipeline_to_dict(pipeline), "weights": _weights_id(cfg),
            "notes": notes, "images": {s: int((df["split"] == s).sum()) for s in workspace.SPLITS},
            "dataset_version": version,
        }
        workspace.atomic_write_json(folder / "config.json", saved)
        runs.write_status(run_id, state="queued", created=time.time(), device=cfg.device, progress=0.0,
                          message="Waiting to start")
    except BaseException as exc:  # a full disk, most likely: no half-made run is left behind
        shutil.rmtree(folder, ignore_errors=True)
        if workspace.is_disk_full(exc):
            raise workspace.DiskFull(f"the new run of '{cfg.dataset}'") from exc
        raise
    return run_id


def _weights_id(cfg: TrainConfig) -> str:
    if cfg.strategy == "scratch":
        return "random"
    return os.path.basename(bundled_weights_path()) if cfg.backbone == DEFAULT_BACKBONE else f"timm:{cfg.backbone}"


def run(run_id: str, echo: Callable[[str], None] = print, resume: bool = False) -> dict:
    """Execute a prepared run in this process: wait for the device, train, write the results."""
    config = runs.read_config(run_id)
    device = config["device"]
    runs.write_status(run_id, pid=os.getpid())
    _STOP["requested"] = False
    signal.signal(signal.SIGTERM, _on_term)
    # under torchrun only rank 0 queues for the device; the others follow it through collectives
    lock = jobs.device_lock(device, on_wait=lambda: runs.write_status(run_id, state="queued",
                                                                     message="Waiting for the device")) \
        if dist.is_main() else contextlib.nullcontext()
    try:
        with lock:
            runs.write_status(run_id, state="running", started=time.time(), message="Starting")
            result = _execute(run_id, config, echo, resume)
            if config.get("task", "train") == "train" and dist.is_main():  # saved now, read by the Evaluate page
                runs.write_status(run_id, message="Scoring the validation images with the model kept, "
                                                          "and preparing the unfamiliar-image check")
                evaluate_quietly(run_id, dist.local_device(device), echo)
    except BaseException as exc:
        # a stop request can also surface as another error (a DataLoader worker ended by the signal)
        state = "cancelled" if type(exc).__name__ == "Cancelled" or _STOP["requested"] else "failed"
        message = ("Stopped by the user; the best model so far is kept." if state == "cancelled"
                   else _plain_error(exc))
        runs.write_status(run_id, state=state, message=message, finished=time.time())
        raise
    runs.write_status(run_id, state="done", progress=1.0, eta_seconds=0, finished=time.time(),
                      message="Finished", result=result)
    return result


def _plain_error(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return "The device ran out of memory: try a smaller batch size or image size."
    return text


def _execute(run_id: str, config: dict, echo, resume: bool) -> dict:
    config = dict(config, device=dist.local_device(config["device"]))
    with reproducible(config["seed"], config["device"], config.get("threads")):
        return _train(run_id, config, echo, resume)


def _train(run_id: str, config: dict, echo, resume: bool) -> dict:
    start = time.time()
    df = versions.run_rows(run_id)  # the version saved when the run was prepared, in its canonical order
    df = df[df["split"].isin(["train", "val"])].reset_index(drop=True)
    classes = config["classes"]
    labels = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    dcfg = config["data_config"]
    side = imgcache.cache_size(config["img_size"], dcfg["crop_pct"])
    total = _plan_units(config, df)
    rep = Reporter(run_id, total, echo)
    images = imgcache.load_images(workspace.dataset_dir(config["dataset"]), df["path"].tolist(),
                                  df["hash"].tolist(), side, dcfg["interpolation"],
                                  progress=rep.track(len(df)))
    split = df["split"].to_numpy()
    data = {"images": images, "labels": labels, "hashes": df["hash"].tolist(), "split": split}
    model = create_model(config["backbone"], len(classes), pretrained=config["strategy"] != "scratch")
    resuming = resume and (runs.run_dir(run_id) / "last.pt").exists()
    head = None
    if config.get("task") == "lr_find":
        result = find_lr(model, data, config, run_id, rep)
    elif config["strategy"] in ("linear", "finetune") and not resuming:  # a resumed finetune has its head
        result = head = fit_head(model, data, config, run_id, rep)
    if config.get("task") != "lr_find" and config["strategy"] != "linear":
        result = fit_network(model, data, config, run_id, rep, resume=resuming, start_from=head)
    result.update(run=run_id, seconds=round(time.time() - start, 2), device=config["device"])
    if dist.active():  # each process records a checksum of its weights: they must all agree
        workspace.atomic_write_json(runs.run_dir(run_id) / f"ddp-rank{dist.rank()}.json",
                                    {"rank": dist.rank(), "weights_sha256": dist.weights_digest(model)})
        result["processes"] = dist.world_size()
    return result


def find_lr(model, data: dict, config: dict, run_id: str, rep) -> dict:
    """The learning-rate finder as a job of its own: linear sweeps the head, the others the network."""
    if config["strategy"] == "linear":
        found = head_lr_find_run(model, data, config, rep)
    else:
        found = network_lr_find_run(model, data, config, run_id)
    workspace.atomic_write_json(runs.run_dir(run_id) / "lr_find.json", found)
    return {"suggestion": found["suggestion"], "points": len(found["lrs"])}


def _plan_units(config: dict, df) -> float:
    """Work measured in training images seen, for progress and ETA (features count once)."""
    n_train = int((df["split"] == "train").sum())
    units = len(df)  # decoding
    if config["strategy"] in ("linear", "finetune") or config.get("task") == "lr_find":
        units += len(df) + n_train * HEAD_UNIT * config["head_epochs" if config["strategy"] != "linear" else "epochs"]
    if config.get("task") == "lr_find":
        return float(units)
    if config["strategy"] != "linear":
        units += n_train * config["epochs"] * 3  # a backward pass costs about twice a forward
    return float(units)
