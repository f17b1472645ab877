"""Seeded, stratified train/val/test splits that cope with tiny classes."""

from __future__ import annotations

import random
from collections import Counter

from imgcls.store.workspace import SPLITS

DEFAULT_RATIOS = (0.70, 0.15, 0.15)
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val",
                 "validation": "val", "test": "test", "testing": "test"}


def normalise_split(name: str) -> str | None:
    """'valid', 'Validation' … → 'val'; None for anything that is not a split name."""
    return SPLIT_ALIASES.get((name or "").strip().lower())


def plan_counts(n: int, ratios=DEFAULT_RATIOS) -> dict[str, int]:
    """How many of a class's n images go to each split; every split with a share gets one when n ≥ 3."""
    train_r, val_r, test_r = ratios
    if n <= 0:
        return {s: 0 for s in SPLITS}
    if n == 1:
        return {"train": 1, "val": 0, "test": 0}
    if n == 2:
        counts = {"train": 1, "val": 0, "test": 0}
        counts["val" if val_r > 0 else "test" if test_r > 0 else "train"] += 1
        return counts
    total = sum(ratios)
    val = round(n * val_r / total)
    test = round(n * test_r / total)
    val = max(val, 1) if val_r > 0 else 0
    test = max(test, 1) if test_r > 0 else 0
    while n - val - test < 1:  # training always keeps at least one image
        if val >= test and val > 0:
            val -= 1
        else:
            test -= 1
    return {"train": n - val - test, "val": val, "test": test}


def assign_splits(labels: list[str], keys: list[str], seed: int = 0, ratios=DEFAULT_RATIOS,
                  existing: dict[str, Counter] | None = None) -> tuple[list[str], list[str]]:
    """Give each new image a split; existing per-class counts are topped up, never moved.

    Returns the splits (aligned with labels) and plain warnings about tiny classes.
    """
    existing = existing or {}
    by_class: dict[str, list[int]] = {}
    for i, label in enumerate(labels):
        by_class.setdefault(label, []).append(i)
    out = [""] * len(labels)
    warnings = []
    for label, idx in sorted(by_class.items()):
        have = existing.get(label, Counter())
        n = len(idx) + sum(have.values())
        target = plan_counts(n, ratios)
        need = {s: max(target[s] - have.get(s, 0), 0) for s in SPLITS}
        # sort by content key first, so the split does not depend on the order files arrived in
        order = sorted(idx, key=lambda i: keys[i])
        random.Random(f"{seed}:{label}").shuffle(order)
        pool = [s for s in ("val", "test", "train") for _ in range(need[s])]
        for pos, i in enumerate(order):
            out[i] = pool[pos] if pos < len(pool) else "train"
        if n < 3:
            where = "only in the training split" if n == 1 else "without a test image"
            warnings.append(f"Class '{label}' has only {n} image{'s' if n > 1 else ''}: it is {where}. "
                            "Add more images for a fair evaluation.")
    return out, warnings
