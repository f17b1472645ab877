"""Two runs evaluated on the same images, side by side: their metrics and where their mistakes differ."""

from __future__ import annotations

import numpy as np
import pandas as pd

HEADLINE = [("accuracy", "Accuracy"), ("balanced_accuracy", "Balanced accuracy"), ("macro_f1", "Macro F1"),
            ("ece", "Calibration error (ECE)")]
LOWER_IS_BETTER = {"ece"}


def comparable(first: dict, second: dict) -> bool:
    """Whether two run configs can be compared image for image: same dataset, same classes."""
    return first.get("dataset") == second.get("dataset") and list(first.get("classes", [])) == list(
        second.get("classes", []))


def metrics_table(first: dict, second: dict) -> pd.DataFrame:
    """Headline metrics and per-class F1 of two evaluations, the difference (second − first) and which is
    better on each."""
    rows = [(label, first.get(key), second.get(key), key in LOWER_IS_BETTER) for key, label in HEADLINE]
    rows += [(f"F1 of {c}", first["per_class"][c]["f1"], second["per_class"].get(c, {}).get("f1"), False)
             for c in first["classes"]]
    out = []
    for label, a, b, lower in rows:
        diff = None if a is None or b is None else float(b) - float(a)
        better = "" if diff is None or abs(diff) < 1e-9 else ("second" if (diff < 0) == lower else "first")
        out.append({"metric": label, "first": a, "second": b, "difference": diff, "better": better})
    return pd.DataFrame(out, columns=["metric", "first", "second", "difference", "better"])


def confusion_difference(first: dict, second: dict) -> np.ndarray:
    """Second minus first of the row-normalised confusion matrices (shares of each true class)."""
    return np.asarray(second["confusion_normalised"], dtype=float) - np.asarray(first["confusion_normalised"],
                                                                               dtype=float)
