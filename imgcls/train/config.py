"""What decides a training run: the strategies, their defaults, and TrainConfig, whose fields the command line
offers as `python -m imgcls train` options. Plain Python: the command line reads it before importing torch."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from dataclasses import dataclass, field

from imgcls.store import ranges
from imgcls.train import strategies

# models.DEFAULT_BACKBONE, repeated here because models imports timm and torch; a test keeps the two equal
DEFAULT_BACKBONE = "efficientnet_lite0"

# the strategies' descriptions and defaults by name, as the command line and the pages read them
STRATEGIES = strategies.descriptions()
DEFAULTS = strategies.defaults()


class TrainError(Exception):
    """A run that cannot start or cannot go on, with a plain explanation."""


def option(help: str | None = None, **form) -> dict:
    """A field's metadata for the command line: its help line and, where the plain `--name VALUE` does not fit,
    `parse` (the function that reads the typed text), `choices`, `flag=(option, value)` for a switch that sets
    the field to value, or `cli=False` to leave the field out. Numbers are read with their range in ranges.TRAIN."""
    return {"help": help, **form}


@dataclass
class TrainConfig:
    """Everything that decides a run; saved as config.json so the run can be reproduced."""

    dataset: str = field(metadata=option("dataset name"))
    backbone: str = field(default=DEFAULT_BACKBONE, metadata=option())
    strategy: str = field(default="linear", metadata=option(choices=tuple(STRATEGIES)))
    epochs: int | None = field(default=None, metadata=option())
    # None: the strategy's default; "auto": the learning-rate finder
    lr: float | str | None = field(default=None, metadata=option(
        "learning rate, or 'auto' for the learning-rate finder", parse=ranges.lr_arg))
    batch_size: int | None = field(default=None, metadata=option())
    img_size: int | None = field(default=None, metadata=option())
    augment: str | dict = field(default="saved", metadata=option(
        "saved (the dataset's pipeline, else light), none, light, medium, heavy, or a JSON/YAML file"))
    seed: int = field(default=0, metadata=option())
    device: str = field(default="auto", metadata=option("auto, cpu, cuda or mps"))
    weight_decay: float = field(default=0.05, metadata=option())
    label_smoothing: float = field(default=0.1, metadata=option())
    warmup_epochs: float = field(default=1.0, metadata=option())
    patience: int | None = field(default=None, metadata=option(
        "early stopping: epochs without a better validation loss"))
    layer_decay: float = field(default=0.7, metadata=option("learning-rate factor per layer, top to bottom"))
    unfreeze: int = field(default=8, metadata=option("finetune: how many top layer groups learn"))
    head_epochs: int = field(default=30, metadata=option("finetune: epochs of the head-only stage"))
    compile: bool = field(default=False, metadata=option("torch.compile the model (CUDA)"))
    workers: int | None = field(default=None, metadata=option("DataLoader worker processes (default: automatic)"))
    threads: int | None = field(default=None, metadata=option(
        "CPU threads (default: every core this process may use); results depend on it"))
    task: str = field(default="train", metadata=option(  # or "lr_find": only sweep the learning rate, suggest one
        "only run the learning-rate finder", flag=("--lr-find", "lr_find")))

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
        from imgcls.train.loops import default_threads  # loops imports torch
        from imgcls.vision.models import fixed_input_size

        d = strategies.strategy(self.strategy).defaults
        lr = self.lr if self.lr not in (None, "") else d.lr
        if lr != "auto":
            lr = float(lr)
        return dataclasses.replace(
            self, epochs=self.epochs or d.epochs, lr=lr, batch_size=self.batch_size or d.batch_size,
            # a strategy's larger default size is for backbones that take any size
            img_size=self.img_size or (None if fixed_input_size(self.backbone) else d.img_size),
            patience=self.patience or d.patience, device=resolve_device(self.device),
            threads=self.threads or default_threads(),
        )


def resolve_device(name: str) -> str:
    """'auto' becomes cuda, mps or cpu, whichever this machine has."""
    import torch  # here, not above: the command line reads this module before it may load torch

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


# config.json's keys beyond TrainConfig's fields: what prepare_run adds, then what an experiment's run adds
RUN_KEYS = ("name", "img_size", "classes", "data_config", "augment_pipeline", "weights", "notes", "images",
            "dataset_version", "experiment")
_KEY_OF = {"strategy_name": "strategy"}  # field → key: `strategy` is the Strategy itself, the field its name


@dataclass(frozen=True)
class RunConfig:
    """A prepared run's config.json, typed: TrainConfig's fields resolved, and what preparing the run added.

    `from_dict` reads any run's file: a key it lacks gets the default (and is left out again by `to_dict`), a
    key it does not know is kept in `extra` and written back unchanged."""

    dataset: str = ""
    backbone: str = DEFAULT_BACKBONE
    strategy_name: str = "linear"
    epochs: int | None = None
    lr: float | str | None = None
    batch_size: int | None = None
    img_size: int | None = None
    augment: str | dict = "saved"
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
    threads: int | None = None
    task: str = "train"
    name: str = ""
    classes: tuple = ()
    data_config: dict = field(default_factory=dict)
    augment_pipeline: dict | None = None
    weights: str = ""
    notes: tuple = ()
    images: dict = field(default_factory=dict)
    dataset_version: dict = field(default_factory=dict)
    experiment: dict | None = None  # set on the Learn page's runs: which experiment, which variant
    extra: dict = field(default_factory=dict, compare=False)  # keys this version does not know
    defaulted: frozenset = field(default=frozenset(), compare=False, repr=False)  # keys the file lacked

    @classmethod
    def from_dict(cls, d: dict) -> "RunConfig":
        """The run config of a config.json's contents, from this version or an older one."""
        names = {_KEY_OF.get(f.name, f.name): f.name for f in dataclasses.fields(cls)
                 if f.name not in ("extra", "defaulted")}
        known = {names[k]: v for k, v in d.items() if k in names}
        known["classes"] = tuple(known.get("classes", ()))
        known["notes"] = tuple(known.get("notes", ()))
        missing = frozenset(k for k in names if k not in d)
        return cls(**known, extra={k: v for k, v in d.items() if k not in names}, defaulted=missing)

    @classmethod
    def read(cls, run_id: str) -> "RunConfig":
        """The run's config.json, typed (WorkspaceError when there is no such run)."""
        from imgcls.store import runs

        return cls.from_dict(runs.read_config(run_id))

    def to_dict(self) -> dict:
        """config.json's contents: the keys it was read with, in the order prepare_run writes them."""
        out = {}
        for f in dataclasses.fields(self):
            key = _KEY_OF.get(f.name, f.name)
            if f.name in ("extra", "defaulted") or key in self.defaulted:
                continue
            if key == "experiment" and self.experiment is None:
                continue  # only an experiment's runs have one
            value = getattr(self, f.name)
            out[key] = list(value) if key in ("classes", "notes") else copy.deepcopy(value)
        return out | copy.deepcopy(self.extra)

    @property
    def strategy(self) -> strategies.Strategy:
        """The run's strategy, with its stages and rules (TrainError for an unknown name)."""
        return strategies.strategy(self.strategy_name)

    @property
    def preprocess(self):
        """The preprocessing the run trains and predicts with (a vision.preprocess.Preprocess)."""
        from imgcls.vision.preprocess import Preprocess  # vision loads its caches' code; this module stays light

        return Preprocess.for_run({"backbone": self.backbone, "strategy": self.strategy_name, "weights": self.weights,
                                   "img_size": self.img_size, "data_config": self.data_config})
