"""What decides a training run: the strategies, their defaults, and TrainConfig, whose fields the command line
offers as `python -m imgcls train` options. Plain Python: the command line reads it before importing torch."""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field

from imgcls.store import ranges

# models.DEFAULT_BACKBONE, repeated here because models imports timm and torch; a test keeps the two equal
DEFAULT_BACKBONE = "efficientnet_lite0"

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
