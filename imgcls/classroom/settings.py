"""The baseline a class's board compares against, and a run's settings in words: what it changed from it."""

from __future__ import annotations

import dataclasses
import math

from imgcls.classroom.classes import ClassroomError
from imgcls.train.config import DEFAULTS, TrainConfig, TrainError

# the settings that change what a model learns, in the order the board names them
COMPARED = ("strategy", "backbone", "epochs", "lr", "batch_size", "img_size", "augment", "weight_decay",
            "label_smoothing", "warmup_epochs", "patience", "layer_decay", "unfreeze", "head_epochs", "seed")
WORDS = {"backbone": "backbone", "epochs": "epochs", "lr": "learning rate", "batch_size": "batch size",
         "img_size": "image size", "augment": "augmentation", "weight_decay": "weight decay",
         "label_smoothing": "label smoothing", "warmup_epochs": "warm-up epochs", "patience": "patience",
         "layer_decay": "layer decay", "unfreeze": "layer groups fine-tuned", "head_epochs": "last-layer epochs",
         "seed": "seed"}
STRATEGY_WORDS = {"linear": "linear probe", "finetune": "fine-tune", "full": "full training",
                  "scratch": "from scratch"}
# a setting that changes nothing under a strategy is not a difference worth naming there
ONLY_FOR = {"unfreeze": ("finetune",), "head_epochs": ("finetune",), "layer_decay": ("finetune", "full")}


def baseline(given: dict | None = None) -> dict:
    """The baseline settings: TrainConfig's defaults, with `given` laid over them (None: the strategy's own
    default); a ClassroomError for a setting imgcls does not know or a number out of its range."""
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig) if f.name in COMPARED}
    given = dict(given or {})
    unknown = sorted(set(given) - set(COMPARED))
    if unknown:
        raise ClassroomError(f"The baseline has settings imgcls does not compare: {', '.join(unknown)} "
                             f"(known: {', '.join(COMPARED)}).")
    values = {**defaults, **given}
    if values["strategy"] not in DEFAULTS:
        raise ClassroomError(f"The baseline's strategy '{values['strategy']}' is none of {', '.join(DEFAULTS)}.")
    try:
        checked = TrainConfig(dataset="baseline", **values)
    except (TrainError, TypeError, ValueError) as exc:
        raise ClassroomError(f"The baseline cannot be used: {exc}") from None
    return {k: getattr(checked, k) for k in COMPARED}


def _expected(key: str, strategy: str, base: dict, config: dict):
    """What the baseline means for this setting under the run's strategy."""
    value = base.get(key)
    if value is not None:
        return value
    value = DEFAULTS.get(strategy, {}).get(key)
    if key == "img_size" and value is None:  # the backbone's own input size, as the run recorded it
        size = (config.get("data_config") or {}).get("input_size") or [None]
        return size[-1]
    return value


def _same(a, b) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _shown(value) -> str:
    if isinstance(value, dict):
        return "custom"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def describe(config: dict, base: dict | None = None) -> str:
    """The run's settings as their differences from the baseline ("fine-tune (baseline linear probe) ·
    learning rate 0.003 (baseline 0.01)"), or "same as the baseline"."""
    base = base or baseline()
    strategy = str(config.get("strategy", "linear"))
    parts = []
    for key in COMPARED:
        have = config.get(key)
        if key == "strategy":
            if have != base["strategy"]:
                parts.append(f"{STRATEGY_WORDS.get(have, have)} (baseline "
                             f"{STRATEGY_WORDS.get(base['strategy'], base['strategy'])})")
            continue
        if key in ONLY_FOR and strategy not in ONLY_FOR[key]:
            continue
        want = _expected(key, strategy, base, config)
        if have is not None and want is not None and not _same(have, want):
            parts.append(f"{WORDS[key]} {_shown(have)} (baseline {_shown(want)})")
    return " · ".join(parts) or "same as the baseline"
