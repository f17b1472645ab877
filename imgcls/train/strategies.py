"""The four training strategies as data: what each one trains, in which stages, with which rules and defaults.
Plain Python: the command line and the pages read it before importing torch.

The workspace, vision and evaluation packages stand below training and keep a one-line check of the strategy's
name where they need one of these rules (a linear run's backbone never changes, a scratch run has no pretrained
weights); tests/test_strategies.py holds those checks to the rules here."""

from __future__ import annotations

from dataclasses import asdict, dataclass

HEAD_LR = 3e-3  # the last-layer stage before fine-tuning: AdamW on features, fast and stable on the datasets we tried
FINETUNE_HEAD_PATIENCE = 10  # that stage stops after 10 epochs without a better validation loss


@dataclass(frozen=True)
class Defaults:
    """What a strategy trains with when the run does not say."""

    epochs: int
    lr: float
    patience: int
    batch_size: int
    img_size: int | None  # None: the backbone's own input size


@dataclass(frozen=True)
class Strategy:
    """One way to train: its stages and the rules each stage follows."""

    name: str
    description: str
    defaults: Defaults
    pretrained: bool  # starts from ImageNet weights
    head_first: bool  # a last-layer stage on frozen features runs first
    trains_network: bool  # a stage trains the network's own layers (after the last-layer stage, if any)
    top_layers_only: bool = False  # the network stage trains only the top `unfreeze` layer groups
    layer_decay: bool = True  # earlier layers learn more gently (the run's layer_decay per group)
    head_epochs_field: str | None = None  # the run's field that gives the last-layer stage's epochs
    head_patience: int | None = None  # the last-layer stage's patience; None: the run's own
    head_lr: float | None = None  # the last-layer stage's learning rate; None: the run's own
    # the network stage's BatchNorm layers update their running statistics (False: they keep the pretrained ones)
    batchnorm_stats: bool = True

    @property
    def last_stage(self) -> str:
        """The stage name the run's last epochs are logged under in metrics.jsonl."""
        return self.name if self.trains_network else "head"

    def head_epochs(self, config) -> int:
        """Epochs of the last-layer stage of a run (any object with the run's fields as attributes)."""
        return getattr(config, self.head_epochs_field)

    def head_stage_patience(self, config) -> int:
        """Epochs without a better validation loss before the last-layer stage stops."""
        return config.patience if self.head_patience is None else self.head_patience

    def head_stage_lr(self, config) -> float | str:
        """The last-layer stage's learning rate ('auto': found by the sweep)."""
        return config.lr if self.head_lr is None or config.lr == "auto" else self.head_lr

    def decay(self, config) -> float:
        """The learning-rate factor per layer group, top to bottom (1.0: every layer alike)."""
        return config.layer_decay if self.layer_decay else 1.0


# img_size 288 for the pretrained strategies, past the backbone's native 224: a network trained on random
# crops sees objects larger than a centre crop of the same size shows them, so it classifies best at a larger
# test size (Touvron et al. 2019, "Fixing the train-test resolution discrepancy": about 1.15-1.3x). On
# hymenoptera, `linear` scored 0.941 / 0.948 / 0.954 / 0.961 (median of seeds 0-2) at 224 / 256 / 288 / 320 px;
# 288 costs 1.65x the compute of 224, 320 more than 2x (benchmarks/probe_heads.py, README).
LINEAR = Strategy(
    "linear", "Keep the pretrained network frozen and train only its last layer: done in seconds, "
              "and strong when your photos look like everyday photos.",
    Defaults(epochs=60, lr=3e-3, patience=10, batch_size=64, img_size=288),
    pretrained=True, head_first=True, trains_network=False, head_epochs_field="epochs")
FINETUNE = Strategy(
    "finetune", "Train the last layer first, then let the top of the network adjust too, earlier layers "
                "more gently: usually the most accurate.",
    Defaults(epochs=6, lr=3e-4, patience=3, batch_size=32, img_size=288),
    pretrained=True, head_first=True, trains_network=True, top_layers_only=True, head_epochs_field="head_epochs",
    head_patience=FINETUNE_HEAD_PATIENCE, head_lr=HEAD_LR, batchnorm_stats=False)
FULL = Strategy(
    "full", "Let every layer of the pretrained network learn: slower, and it needs more images to pay off.",
    Defaults(epochs=8, lr=5e-4, patience=3, batch_size=32, img_size=None),
    pretrained=True, head_first=False, trains_network=True)
SCRATCH = Strategy(
    "scratch", "Start from random weights with no pretraining: a comparison that shows what transfer "
               "learning buys you.",
    Defaults(epochs=30, lr=2e-3, patience=6, batch_size=32, img_size=None),
    pretrained=False, head_first=False, trains_network=True, layer_decay=False)

ALL = {s.name: s for s in (LINEAR, FINETUNE, FULL, SCRATCH)}


def strategy(name: str) -> Strategy:
    """The strategy of this name; TrainError for a name that is none of the four."""
    try:
        return ALL[name]
    except (KeyError, TypeError):
        from imgcls.train.config import TrainError  # config imports this module

        raise TrainError(f"Unknown strategy '{name}': choose {', '.join(ALL)}.") from None


def descriptions() -> dict[str, str]:
    """Each strategy's one-paragraph description, by name, in the order they are offered."""
    return {s.name: s.description for s in ALL.values()}


def defaults() -> dict[str, dict]:
    """Each strategy's defaults as plain dicts, by name."""
    return {s.name: asdict(s.defaults) for s in ALL.values()}
