"""The Learn lab's experiments: run in this process, or as background jobs with a folder of their own.

experiments/<id>/ config.json, status.json (state, progress, message, pid), result.json, log.txt
Quick mode trains linear probes on cached backbone features (a minute or two on a CPU); thorough mode
fine-tunes real training runs, which appear in the runs list like any other.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import sys
import time
import traceback
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from . import quotas, workspace  # light imports only: torch loads when an experiment runs, not when a page lists them

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
STATES = ("queued", "running", "done", "failed", "cancelled")
ROOT = Path(__file__).resolve().parents[1]


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
        from .models import DEFAULT_BACKBONE

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
    from . import exp_data, exp_quick, exp_scaling, exp_thorough

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
    from .exp_charts import figure as draw

    return draw(result)


# --- background jobs ------------------------------------------------------------------------------


def experiments_dir() -> Path:
    """Folder holding one subfolder per experiment."""
    path = workspace.home() / "experiments"
    path.mkdir(parents=True, exist_ok=True)
    return path


def exp_dir(exp_id: str) -> Path:
    """Folder of one experiment; refuses ids that would leave the experiments folder."""
    if not exp_id or "/" in exp_id or "\\" in exp_id or exp_id.startswith("."):
        raise workspace.WorkspaceError(f"'{exp_id}' is not an experiment id.")
    return experiments_dir() / exp_id


def new_id(config: ExperimentConfig) -> str:
    """A sortable, readable, unique id such as 20261127-140203-shapes-transfer-3f2a."""
    slug = workspace.suggest_name(f"{config.dataset}-{config.kind}").replace(" ", "_")
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{slug}-{uuid.uuid4().hex[:4]}"


def _write_status(exp_id: str, **fields) -> dict:
    path = exp_dir(exp_id) / "status.json"
    status = workspace.read_json(path, {}) or {}
    status.update(fields, updated=time.time())
    workspace.atomic_write_json(path, status)
    return status


def prepare(config: ExperimentConfig, exp_id: str | None = None) -> str:
    """Check the config, create the experiment's folder (queued) and return its id."""
    cfg = config.resolved()
    workspace.read_manifest(cfg.dataset)  # a missing dataset fails here, not in the background
    exp_id = exp_id or new_id(cfg)
    exp_dir(exp_id).mkdir(parents=True, exist_ok=True)
    workspace.atomic_write_json(exp_dir(exp_id) / "config.json", dataclasses.asdict(cfg))
    _write_status(exp_id, state="queued", progress=0.0, message="Waiting to start", pid=None, created=time.time())
    return exp_id


def start(config: ExperimentConfig) -> str:
    """Start the experiment as a background process (`python -m imgcls experiment … --id ID`); return its id.
    A QuotaError, before anything is made, when the workspace runs the most jobs allowed or is full."""
    with quotas.job_slot():
        exp_id = prepare(config)
    cfg = config.resolved()
    log = open(exp_dir(exp_id) / "log.txt", "ab")
    proc = subprocess.Popen(
        [sys.executable, "-m", "imgcls", "experiment", cfg.kind, "--dataset", cfg.dataset, "--mode", cfg.mode,
         "--seed", str(cfg.seed), "--id", exp_id],
        cwd=ROOT, env=workspace.job_env(),
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: a server restart does not take it down
    )
    log.close()
    _write_status(exp_id, pid=proc.pid)
    return exp_id


class Stopped(Exception):
    """The experiment was asked to stop."""


def _on_term(*_) -> None:
    raise Stopped()


def run_job(exp_id: str, config: ExperimentConfig | None = None,
            echo: Callable[[float, str], None] | None = None) -> dict:
    """Run an experiment under an id in this process, keeping its status.json and result.json up to date."""
    saved = read_config(exp_id)
    if saved:  # prepared by start(): its config.json is the whole truth
        config = ExperimentConfig.from_dict(saved)
    elif config is None:
        raise workspace.WorkspaceError(f"There is no experiment '{exp_id}'.")
    else:
        prepare(config, exp_id)
    signal.signal(signal.SIGTERM, _on_term)
    last = {"t": 0.0}

    def progress(fraction: float, message: str) -> None:
        if echo:
            echo(fraction, message)
        if time.time() - last["t"] > 0.5 or fraction >= 1:  # a few writes a second at most
            _write_status(exp_id, progress=round(min(max(fraction, 0.0), 1.0), 4), message=message)
            last["t"] = time.time()

    _write_status(exp_id, state="running", pid=os.getpid(), started=time.time(), message="Starting")
    try:
        result = run_experiment(config, progress)
    except BaseException as exc:
        stopped = isinstance(exc, (Stopped, KeyboardInterrupt)) or type(exc).__name__ == "Cancelled"
        _write_status(exp_id, state="cancelled" if stopped else "failed", finished=time.time(),
                      message="Stopped by the user." if stopped else failure_message(exp_id, exc))
        raise
    workspace.atomic_write_json(exp_dir(exp_id) / "result.json", result)
    _write_status(exp_id, state="done", progress=1.0, finished=time.time(), message="Finished")
    return result


def failure_message(exp_id: str, exc: BaseException) -> str:
    """A plain sentence for a failed experiment; the traceback goes to its log.txt, when it has one."""
    try:  # the training's own wording (out of memory → what to change); torch is loaded by now
        from .train import _plain_error
        text = _plain_error(exc)
    except Exception:  # noqa: BLE001 - torch itself failed to load: the bare first line
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    message = f"The experiment stopped with an error: {text}" + ("" if text.endswith((".", "!", "?")) else ".")
    log = exp_dir(exp_id) / "log.txt"  # start() sends the job's output there; a CLI run without --id has none
    if log.exists():
        with contextlib.suppress(OSError), open(log, "a", encoding="utf-8") as fh:
            traceback.print_exception(exc, file=fh)
        message += f" The full details are in experiments/{exp_id}/log.txt."
    return message


def status(exp_id: str) -> dict:
    """The experiment's status; one whose process vanished reads as failed."""
    st = workspace.read_json(exp_dir(exp_id) / "status.json", {}) or {}
    just_made = st.get("pid") is None and time.time() - st.get("created", 0) < 30
    if st.get("state") in ("queued", "running") and not just_made and not _alive(st.get("pid")):
        st = dict(st, state="failed", message="The experiment process stopped unexpectedly (server restart or crash).")
    return st


def result(exp_id: str) -> dict | None:
    """The experiment's result, or None until it is done."""
    return workspace.read_json(exp_dir(exp_id) / "result.json")


def read_config(exp_id: str) -> dict:
    """The saved configuration of an experiment."""
    return workspace.read_json(exp_dir(exp_id) / "config.json", {}) or {}


def stop(exp_id: str, grace_s: float = 2.0) -> dict:
    """Stop a running experiment within a few seconds (its training runs, if any, are cancelled too)."""
    st = status(exp_id)
    pid = st.get("pid")
    if st.get("state") not in ("queued", "running") or not _alive(pid):
        return st
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(pid), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):  # inside a long tensor operation: end it now
        with contextlib.suppress(ProcessLookupError):
            os.killpg(int(pid), signal.SIGKILL)
        deadline = time.monotonic() + 5.0  # a killed process can take a moment to let go of its memory
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        _cancel_runs_of(int(pid))
    if status(exp_id).get("state") not in ("cancelled", "done", "failed"):
        _write_status(exp_id, state="cancelled", message="Stopped by the user.")
    return status(exp_id)


def _alive(pid) -> bool:
    from .runs import pid_alive

    return pid_alive(pid)


def _cancel_runs_of(pid: int) -> None:
    """Training runs the killed experiment process was running are cancelled, not left 'interrupted'."""
    from . import runs

    for run_id in runs.list_runs():
        raw = workspace.read_json(runs.run_dir(run_id) / "status.json", {}) or {}
        if raw.get("pid") == pid and raw.get("state") in runs.ACTIVE_STATES:
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
