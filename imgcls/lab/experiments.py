"""The Learn lab's experiments: run in this process, or as background jobs with a folder of their own.

experiments/<id>/ config.json, status.json (state, progress, message, pid), result.json, log.txt
Quick mode trains linear probes on cached backbone features (a minute or two on a CPU); thorough mode
fine-tunes real training runs, which appear in the runs list like any other.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from imgcls import jobs
from imgcls.store import quotas  # light imports only: torch loads when an experiment runs, not when a page lists them
from imgcls.store import workspace

KINDS = {
    "transfer": "Pretrained against random starting weights, with the same training budget: curves and accuracy.",
    "augmentation": "With and without the saved augmentation pipeline: the train/validation gap and accuracy.",
    "data-size": "Accuracy against training images per class, with a fitted curve and what twice the data would give.",
    "variability": "Accuracy on validation images rotated, shrunk, darkened and blurred, with and without "
                   "augmentation.",
    "label-noise": "Accuracy after flipping a share of training labels, and how many flips the label-error ranking "
                   "finds.",
}
MODES = ("quick", "thorough")


@dataclass
class ExperimentConfig:
    """Everything that decides an experiment; saved as config.json next to its result."""

    kind: str
    dataset: str
    mode: str = "quick"
    seed: int = 0
    backbone: str | None = None  # None: the default backbone (EfficientNet-Lite0, offline weights)
    img_size: int | None = None  # None: the backbone's own input size (quick), the strategy's (thorough)
    epochs: int | None = None  # None: 30 epochs of the last layer (quick), 3 of fine-tuning (thorough)
    max_train_per_class: int | None = 100  # keeps quick mode quick on large datasets
    max_val_per_class: int | None = 50
    copies: int = 2  # augmented copies of each training image (augmentation, variability)
    fractions: tuple | None = None  # data-size; None: 5, 10, 25, 50, 100% (quick) or 25, 50, 100% (thorough)
    repeats: int = 3  # data-size: random draws per fraction
    noise_levels: tuple | None = None  # label-noise; None: 0, 10, 20, 40% (quick) or 0, 20, 40% (thorough)
    strengths: int = 5  # variability: strengths per change, the first being no change
    changed_val_per_class: int | None = 10  # variability: validation images per class changed and re-embedded

    def resolved(self) -> "ExperimentConfig":
        """A checked copy with the mode's defaults filled in."""
        if self.kind not in KINDS:
            raise ValueError(f"Unknown experiment '{self.kind}': choose {', '.join(KINDS)}.")
        if self.mode not in MODES:
            raise ValueError(f"Unknown mode '{self.mode}': choose quick or thorough.")
        quick = self.mode == "quick"
        fractions = tuple(self.fractions or ((0.05, 0.1, 0.25, 0.5, 1.0) if quick else (0.25, 0.5, 1.0)))
        levels = tuple(self.noise_levels or ((0.0, 0.1, 0.2, 0.4) if quick else (0.0, 0.2, 0.4)))
        if not all(0 < f <= 1 for f in fractions) or not all(0 <= v < 1 for v in levels):
            raise ValueError("Fractions must lie in (0, 1] and label-noise levels in [0, 1).")
        from imgcls.vision.models import DEFAULT_BACKBONE

        return dataclasses.replace(self, fractions=tuple(sorted(fractions)), noise_levels=tuple(sorted(levels)),
                                   copies=max(1, int(self.copies)), repeats=max(1, int(self.repeats)),
                                   backbone=self.backbone or DEFAULT_BACKBONE)

    def epochs_or(self, default: int) -> int:
        """The configured number of epochs, else the recipe's own default."""
        return int(self.epochs or default)

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentConfig":
        """Rebuild a config from config.json (unknown keys are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


def run_experiment(config: ExperimentConfig, progress: Callable[[float, str], None] | None = None) -> dict:
    """Run one experiment in this process and return its result (series, table, numbers, conclusion)."""
    from imgcls.lab import data as exp_data, quick as exp_quick, scaling as exp_scaling, thorough as exp_thorough

    cfg, started = config.resolved(), time.time()
    say = progress or (lambda f, m: None)
    if cfg.mode == "thorough":
        out = exp_thorough.run(cfg, say)
    else:
        recipe = {"transfer": exp_quick.transfer, "augmentation": exp_quick.augmentation,
                  "variability": exp_quick.variability, "data-size": exp_scaling.data_size,
                  "label-noise": exp_scaling.label_noise}[cfg.kind]
        say(0.0, "Reading images")
        lab = exp_data.load(cfg.dataset, cfg.backbone, cfg.img_size, cfg.seed, cfg.max_train_per_class,
                            cfg.max_val_per_class, progress=lambda f, m: say(0.05 * f, m))
        out = recipe(lab, cfg, say)
    say(1.0, "Done")
    return _plain({"kind": cfg.kind, "dataset": cfg.dataset, "mode": cfg.mode, "seed": cfg.seed,
                   "seconds": round(time.time() - started, 1), **out, "config": dataclasses.asdict(cfg)})


def _plain(value):
    """JSON-ready: numpy numbers become Python ones, NaN becomes None (strict JSON has no NaN)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    return None if isinstance(value, float) and value != value else value


def figure(result: dict):
    """The result's series as a plotly figure, one panel per part of the question."""
    from imgcls.charts.lab import figure as draw

    return draw(result)


# --- background jobs ------------------------------------------------------------------------------


def experiments_dir() -> Path:
    """Folder holding one subfolder per experiment."""
    return workspace.folder("experiments")


def exp_dir(exp_id: str) -> Path:
    """Folder of one experiment; refuses ids that would leave the experiments folder."""
    return workspace.keyed_dir("experiments", exp_id, "an experiment id")


def new_id(config: ExperimentConfig) -> str:
    """A sortable, readable, unique id such as 20261127-140203-shapes-transfer-3f2a."""
    slug = workspace.suggest_name(f"{config.dataset}-{config.kind}").replace(" ", "_")
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{uuid.uuid4().hex[:4]}"


def status_path(exp_id: str) -> Path:
    """The experiment's status file (the job system's format)."""
    return exp_dir(exp_id) / "status.json"


def prepare(config: ExperimentConfig, exp_id: str | None = None) -> str:
    """Check the config, create the experiment's folder (queued) and return its id."""
    cfg = config.resolved()
    workspace.read_manifest(cfg.dataset)  # a missing dataset fails here, not in the background
    exp_id = exp_id or new_id(cfg)
    exp_dir(exp_id).mkdir(parents=True, exist_ok=True)
    workspace.atomic_write_json(exp_dir(exp_id) / "config.json", dataclasses.asdict(cfg))
    jobs.write_status(status_path(exp_id), state="queued", progress=0.0, message="Waiting to start", pid=None,
                      created=time.time())
    return exp_id


def start(config: ExperimentConfig) -> str:
    """Queue the experiment as a background job (`python -m imgcls experiment … --id ID`); its id.
    A QuotaError, before anything is made, when the workspace runs the most jobs allowed or is full."""
    cfg = config.resolved()
    with quotas.job_slot():
        exp_id = prepare(cfg)
        jobs.submit(status_path(exp_id), ["experiment", cfg.kind, "--dataset", cfg.dataset, "--mode", cfg.mode,
                                          "--seed", str(cfg.seed), "--id", exp_id],
                    jobs.default_device() if cfg.mode == "thorough" else "cpu", log=exp_dir(exp_id) / "log.txt",
                    label=f"experiment/{exp_id}")
    return exp_id


def run_job(exp_id: str, config: ExperimentConfig | None = None,
            echo: Callable[[float, str], None] | None = None) -> dict:
    """Run an experiment under an id in this process, keeping its status.json and result.json up to date;
    a stop request ends it at its next progress step."""
    saved = read_config(exp_id)
    if saved:  # prepared by start(): its config.json is the whole truth
        config = ExperimentConfig.from_dict(saved)
    elif config is None:
        raise workspace.WorkspaceError(f"There is no experiment '{exp_id}'.")
    else:
        prepare(config, exp_id)
    path = status_path(exp_id)
    device = jobs.default_device() if config.mode == "thorough" else "cpu"
    with jobs.slots.hold(device), jobs.running(path, label=f"experiment/{exp_id}", what="The experiment", log=exp_dir(exp_id) / "log.txt",
                                               shown_log=f"experiments/{exp_id}/log.txt", message="Starting"):
        result = run_experiment(config, jobs.progress_writer(path, echo, every_s=0.5))
        workspace.atomic_write_json(exp_dir(exp_id) / "result.json", result)
    return result


def status(exp_id: str) -> dict:
    """The experiment's status; one whose process vanished reads as interrupted."""
    return jobs.status(status_path(exp_id))


def result(exp_id: str) -> dict | None:
    """The experiment's result, or None until it is done."""
    return workspace.read_json(exp_dir(exp_id) / "result.json")


def read_config(exp_id: str) -> dict:
    """The saved configuration of an experiment."""
    return workspace.read_json(exp_dir(exp_id) / "config.json", {}) or {}


def stop(exp_id: str, grace_s: float = 2.0) -> dict:
    """Stop a queued or running experiment within a few seconds (its training runs are cancelled too)."""
    before = status(exp_id)
    after = jobs.stop(status_path(exp_id), grace_s)
    if before.get("state") in jobs.ACTIVE:
        _cancel_runs_of(before.get("pid"))
    return after


def _cancel_runs_of(pid) -> None:
    """Training runs the experiment's process was running are cancelled, not left 'interrupted'."""
    from imgcls.store import runs

    for run_id in runs.list_runs():
        raw = jobs.statusfile.read_raw(runs.status_path(run_id))
        if raw.get("pid") == pid and raw.get("state") in jobs.ACTIVE:
            runs.write_status(run_id, state="cancelled", message="Stopped with its experiment.")


def list_experiments(dataset: str | None = None) -> list[dict]:
    """Experiments, newest first: id, kind, dataset, mode, state, progress and message."""
    out = []
    for folder in sorted(experiments_dir().iterdir(), reverse=True):
        config = workspace.read_json(folder / "config.json")
        if not config or (dataset and config.get("dataset") != dataset):
            continue
        st = status(folder.name)
        out.append({"id": folder.name, **{k: config.get(k) for k in ("kind", "dataset", "mode", "seed")},
                    **{k: st.get(k) for k in ("state", "progress", "message", "created")}})
    return out
