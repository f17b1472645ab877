"""Training runs: configuration, data checks, the four strategies, and the run folder they fill."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import shutil
import time
from typing import Callable

from imgcls import jobs
from imgcls.augment.pipeline import build_pipeline, pipeline_to_dict, resolve_augment
from imgcls.evaluate.evaluation import evaluate_quietly
from imgcls.jobs import dist
from imgcls.store import runnames, runs, versions, workspace
# defined beside the command line's options, torch-free; imported from here as before
from imgcls.train.config import DEFAULTS, STRATEGIES, RunConfig, TrainConfig, TrainError, resolve_device  # noqa: F401
from imgcls.train.heads import HEAD_UNIT, fit_head, head_lr_find_run
from imgcls.train.loops import reproducible
from imgcls.train.netfit import fit_network, network_lr_find_run
from imgcls.train.strategies import strategy
from imgcls.vision import imgcache
from imgcls.vision.models import create_model, data_config, fixed_input_size
from imgcls.vision.preprocess import weights_id

IMBALANCE_LIMIT = 3.0  # past 3:1 between the largest and smallest class, the loss is reweighted


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


class Reporter:
    """Writes progress to status.json and metrics.jsonl, and watches for a stop request.

    The time left is the work left divided by the throughput measured in the current stage (decoding,
    features, last-layer epochs, network epochs), not since the start: the stages run at very different
    speeds per unit of work, so a whole-run average drifts with every stage change."""

    def __init__(self, run_id: str, total_units: float, echo: Callable[[str], None],
                 clock: Callable[[], float] = time.time, token: jobs.StopToken | None = None):
        self.run_id, self.total, self.echo, self.clock = run_id, max(total_units, 1e-9), echo, clock
        self.token = token or jobs.current_token()  # set by Stop (SIGTERM); loops look between steps
        self.done, self.started, self.last_write = 0.0, clock(), 0.0
        self.last_call, self.stage, self.stage_started, self.stage_units = self.started, None, self.started, 0.0
        self.estimate: tuple[float, float] | None = None  # (seconds left, when estimated)

    def should_stop(self) -> bool:
        return self.token.requested

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
    if fixed_input_size(cfg.backbone) and img_size != int(dcfg["input_size"][-1]):
        raise TrainError(f"{cfg.backbone} takes {dcfg['input_size'][-1]} px images only, not {img_size} px: "
                         "leave the image size at its default for this backbone.")
    classes = sorted(df["label"].unique())
    pipeline = build_pipeline(resolve_augment(cfg.augment, cfg.dataset), img_size, classes=classes)
    run_id = runs.new_run_id(cfg.dataset, cfg.strategy if cfg.task == "train" else "lr-find")
    folder = runs.run_dir(run_id)
    folder.mkdir(parents=True)
    try:
        # the run's own copy of its rows: it trains on exactly this version even if the dataset is edited
        # before it starts, and is evaluated and reproduced on it afterwards
        versions.save_run_rows(run_id, df)
        saved = dataclasses.asdict(cfg) | {
            "name": runnames.new_run_name(cfg.dataset, cfg.strategy, cfg.task),  # readable; the id is the key
            "img_size": img_size, "classes": classes, "data_config": dcfg,
            "augment_pipeline": pipeline_to_dict(pipeline),
            "weights": weights_id(cfg.backbone, strategy(cfg.strategy).pretrained),
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


@dataclasses.dataclass(frozen=True)
class Changes:
    """What an experiment changes in a run's data: training images left out, labels changed (path → label)."""

    drop: frozenset = frozenset()
    relabel: tuple = ()  # (path, label) pairs

    def apply(self, df):
        """The rows without the dropped training images, with the changed labels."""
        relabel = dict(self.relabel)
        df = df[~df["path"].isin(self.drop)].reset_index(drop=True)
        df["label"] = [relabel.get(p, label) for p, label in zip(df["path"], df["label"])]
        check_dataset(df)
        return df


KEPT = "Stopped by the user; the best model so far is kept."


def run(run_id: str, echo: Callable[[str], None] = print, resume: bool = False,
        changes: Changes | None = None) -> dict:
    """Execute a prepared run in this process: wait for a slot of its device, train, write the results.
    `changes` trains on the run's rows with some images left out or relabelled (the Learn page's
    experiments); such a run is not scored afterwards."""
    config = RunConfig.read(run_id)
    device = config.device
    main = dist.is_main()  # under torchrun only rank 0 queues and writes; the others follow its collectives
    waiting = lambda place: runs.write_status(run_id, state="queued", queue=place, message=jobs.WAITING)  # noqa: E731
    slot = jobs.slots.hold(device, on_wait=waiting) if main else contextlib.nullcontext()
    job = jobs.running(runs.status_path(run_id), stopped=KEPT, label=f"run/{run_id}", message="Starting") if main \
        else jobs.runner.stop_token()
    with slot, job as token:
        result = _execute(run_id, config, echo, resume, changes, token)
        if config.task == "train" and main and changes is None:  # read by the Evaluate page
            runs.write_status(run_id, message="Scoring the validation images with the model kept, "
                                              "and preparing the unfamiliar-image check")
            evaluate_quietly(run_id, dist.local_device(device), echo)
        runs.write_status(run_id, eta_seconds=0, result=result)
    return result


def _execute(run_id: str, config: RunConfig, echo, resume: bool, changes: Changes | None, token) -> dict:
    config = dataclasses.replace(config, device=dist.local_device(config.device))
    with reproducible(config.seed, config.device, config.threads):
        return _train(run_id, config, echo, resume, changes, token)


def _train(run_id: str, config: RunConfig, echo, resume: bool, changes: Changes | None, token) -> dict:
    start = time.time()
    df = versions.run_rows(run_id)  # the version saved when the run was prepared, in its canonical order
    df = df[df["split"].isin(["train", "val"])].reset_index(drop=True)
    if changes is not None:
        df = changes.apply(df)
    classes = config.classes
    labels = df["label"].map({c: i for i, c in enumerate(classes)}).to_numpy()
    dcfg = config.data_config
    side = config.preprocess.side
    total = _plan_units(config, df)
    rep = Reporter(run_id, total, echo, token=token)
    images = imgcache.load_images(workspace.dataset_dir(config.dataset), df["path"].tolist(),
                                  df["hash"].tolist(), side, dcfg["interpolation"],
                                  progress=rep.track(len(df)))
    split = df["split"].to_numpy()
    data = {"images": images, "labels": labels, "hashes": df["hash"].tolist(), "split": split}
    plan = config.strategy
    model = create_model(config.backbone, len(classes), pretrained=plan.pretrained)
    resuming = resume and (runs.run_dir(run_id) / "last.pt").exists()
    head = None
    if config.task == "lr_find":
        result = find_lr(model, data, config, run_id, rep)
    elif plan.head_first and not resuming:  # a resumed finetune has its head
        result = head = fit_head(model, data, config, run_id, rep)
    if config.task != "lr_find" and plan.trains_network:
        result = fit_network(model, data, config, run_id, rep, resume=resuming, start_from=head)
    result.update(run=run_id, seconds=round(time.time() - start, 2), device=config.device)
    if dist.active():  # each process records a checksum of its weights: they must all agree
        workspace.atomic_write_json(runs.run_dir(run_id) / f"ddp-rank{dist.rank()}.json",
                                    {"rank": dist.rank(), "weights_sha256": dist.weights_digest(model)})
        result["processes"] = dist.world_size()
    return result


def find_lr(model, data: dict, config: RunConfig, run_id: str, rep) -> dict:
    """The learning-rate finder as a job of its own: linear sweeps the head, the others the network."""
    if not config.strategy.trains_network:
        found = head_lr_find_run(model, data, config, rep)
    else:
        found = network_lr_find_run(model, data, config, run_id)
    workspace.atomic_write_json(runs.run_dir(run_id) / "lr_find.json", found)
    return {"suggestion": found["suggestion"], "points": len(found["lrs"])}


def _plan_units(config: RunConfig, df) -> float:
    """Work measured in training images seen, for progress and ETA (features count once)."""
    n_train = int((df["split"] == "train").sum())
    plan = config.strategy
    units = len(df)  # decoding
    if plan.head_first or config.task == "lr_find":  # features, then the last-layer epochs
        units += len(df) + n_train * HEAD_UNIT * getattr(config, plan.head_epochs_field or "head_epochs")
    if config.task == "lr_find":
        return float(units)
    if plan.trains_network:
        units += n_train * config.epochs * 3  # a backward pass costs about twice a forward
    return float(units)
