"""The allowed range of every number a person sets, with the one sentence that refuses a value outside it.

The command line checks its options with these (argparse `type=` functions, so a refused command creates
nothing), and `TrainConfig` checks itself with the same ranges, so the app, the engine and the command line
refuse the same values in the same words. Plain Python: the command line checks before importing torch.
"""

from __future__ import annotations

import argparse
import math
import numbers
from dataclasses import dataclass


class OutOfRange(ValueError):
    """A number outside its allowed range; the message names the setting, the range and the value."""


@dataclass(frozen=True)
class Range:
    """A setting's allowed values: whole numbers or not, its bounds, and why the bounds are there."""

    label: str  # how the sentence names the setting ("Epochs")
    low: float
    high: float | None = None  # None: no upper bound
    whole: bool = True
    low_open: bool = False  # the low bound itself is not allowed ("above 0")
    high_open: bool = False
    why: str = ""  # a short reason, said after the range

    def describe(self) -> str:
        """The range in words: 'a whole number from 1 to 1,000'."""
        kind = "a whole number" if self.whole else "a number"
        if self.high is None:
            return f"{kind} {'above' if self.low_open else 'of at least'} {_num(self.low)}"
        if not self.low_open and not self.high_open:
            return f"{kind} from {_num(self.low)} to {_num(self.high)}"
        low = f"above {_num(self.low)}" if self.low_open else f"of at least {_num(self.low)}"
        high = f"below {_num(self.high)}" if self.high_open else f"at most {_num(self.high)}"
        return f"{kind} {low} and {high}"

    def refusal(self, value) -> str:
        """The sentence that refuses `value` (a number, or the text that was typed)."""
        why = f" ({self.why})" if self.why else ""
        shown = repr(value[:40]) if isinstance(value, str) else f"{value:g}" if isinstance(value, float) \
            else value
        return f"{self.label} must be {self.describe()}{why}; {shown} is not."

    def check(self, value):
        """`value` as an int (whole) or float, or OutOfRange with the sentence."""
        number = _as_number(value, self.whole)
        if number is None or not self._inside(number):
            raise OutOfRange(self.refusal(value))
        return number

    def parse(self, text: str):
        """A command-line value: checked, or argparse's own error with the sentence (exit code 2)."""
        value = _from_text(text, self.whole)
        try:
            return self.check(value)
        except OutOfRange:
            raise argparse.ArgumentTypeError(self.refusal(value)) from None

    def _inside(self, number) -> bool:
        above = number > self.low if self.low_open else number >= self.low
        if self.high is None:
            return math.isfinite(number) and above
        below = number < self.high if self.high_open else number <= self.high
        return math.isfinite(number) and above and below


def _num(x: float) -> str:
    return f"{int(x):,}" if float(x).is_integer() else f"{x:g}"


def _as_number(value, whole: bool):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if whole:
        if isinstance(value, numbers.Integral):
            return int(value)
        return int(value) if math.isfinite(value) and float(value).is_integer() else None
    return float(value)


def _from_text(text: str, whole: bool):
    try:
        return int(text) if whole else float(text)
    except (TypeError, ValueError):
        return text  # refused by check() with the sentence naming what was typed


SEED_MAX = 2**32 - 1  # numpy's generators take seeds from 0 to 2**32 - 1

# TrainConfig's numeric fields; the Train page's widgets stay inside these.
TRAIN = {
    "epochs": Range("Epochs", 1, 1000),
    "batch_size": Range("Batch size", 1, 4096),
    # 32 px is the smallest every backbone on offer accepts (ConvNeXt's stem and downsampling need it)
    "img_size": Range("Image size", 32, 1024, why="in pixels; smaller images are too small for the "
                                                  "backbones, larger ones do not fit in memory"),
    "lr": Range("Learning rate", 0, 10, whole=False, low_open=True, high_open=True),
    "seed": Range("Seed", 0, SEED_MAX),
    "weight_decay": Range("Weight decay", 0, 1, whole=False),
    "label_smoothing": Range("Label smoothing", 0, 1, whole=False, high_open=True,
                             why="at 1 every answer would be taught as equally likely"),
    "warmup_epochs": Range("Warm-up epochs", 0, 1000, whole=False),
    "patience": Range("Patience", 1, 10_000, why="epochs without a better validation loss"),
    "layer_decay": Range("Layer decay", 0, 1, whole=False, low_open=True),
    "unfreeze": Range("Layers to unfreeze", 1, 100),
    "head_epochs": Range("Last-layer epochs", 1, 1000),
    "workers": Range("Workers", 0, 256, why="DataLoader worker processes; 0 loads in the training process"),
    "threads": Range("Threads", 1, 1024),
}

IMPORT = {
    "max_total_mb": Range("The size cap (--max-total-mb)", 1, why="in megabytes"),
    "max_files": Range("The file-count cap (--max-files)", 1),
    # a stored (uncompressed) member already has ratio 1, so a cap below 1 would refuse every file
    "max_ratio": Range("The compression-ratio cap (--max-ratio)", 1, whole=False),
    "max_pixels": Range("The pixel cap (--max-pixels)", 1, why="pixels per image"),
}

PREDICT = {
    "top_k": Range("The number of classes each answer lists (--top-k)", 1, 1000),
    "min_confidence": Range("The minimum confidence", 0, 1, whole=False),
}

EXPIRES = Range("The expiry", 0, 3650, whole=False, low_open=True, why="in days; ten years at most")
PORT = Range("The port", 1, 65535)


def lr_arg(text: str) -> float | str:
    """--lr: 'auto' (the learning-rate finder) or a learning rate."""
    if text.strip().lower() == "auto":
        return "auto"
    try:
        return TRAIN["lr"].parse(text)
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{exc} Or say 'auto' to find one.") from None
