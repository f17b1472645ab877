"""What the Data and Review pages draw from a dataset, read from its store without loading the whole table:
counts, class names, the overview's charts (cached per change of the dataset) and single pages of rows."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from imgcls.charts import dataset as charts
from imgcls.store import manifestquery, manifeststore as store, workspace


def stamp(name: str) -> tuple[str, str, int]:
    """The dataset's folder, store and change counter: any edit or import gives a new key."""
    return store.stamp(name)


# The stamp's parts are only there to key the cache: every change of the dataset gives a new entry. The
# folder is absolute, under the current workspace's root, so two people's datasets never share one.
@st.cache_data(max_entries=16, show_spinner=False)
def _figures(folder: str, store_id: str, changes: int):
    counts = pd.DataFrame(manifestquery.class_counts(Path(folder)), columns=["label", "split", "excluded", "n"])
    counts = counts[~counts["excluded"]]
    sizes = pd.DataFrame(manifestquery.size_counts(Path(folder)), columns=["width", "height", "n"])
    # the charts count rows: one per image, made from the counts (two short columns, not the table)
    per_class = pd.DataFrame({"label": np.repeat(counts["label"].to_numpy(), counts["n"]),
                              "split": np.repeat(counts["split"].to_numpy(), counts["n"]), "excluded": False})
    per_size = pd.DataFrame({"width": np.repeat(sizes["width"].to_numpy(), sizes["n"]),
                             "height": np.repeat(sizes["height"].to_numpy(), sizes["n"]), "excluded": False})
    return charts.class_split_counts(per_class), charts.image_sizes(per_size)


def class_counts(name: str) -> list[tuple[str, str, bool, int]]:
    """(label, split, excluded, images) of the dataset, read once per change."""
    return _cached_counts(*stamp(name))


@st.cache_data(max_entries=32, show_spinner=False)
def _cached_counts(folder: str, store_id: str, changes: int) -> list[tuple[str, str, bool, int]]:
    return manifestquery.class_counts(Path(folder))


def summary(name: str) -> dict:
    """Counts shown on the overview: images, classes, images per split and per class (as cached.summary)."""
    kept: dict = {}
    splits = dict.fromkeys(workspace.SPLITS, 0)
    excluded = 0
    for label, split, out, n in class_counts(name):
        if out:
            excluded += n
            continue
        kept[label] = kept.get(label, 0) + n
        if split in splits:
            splits[split] += n
    return {"images": sum(kept.values()), "classes": len(kept), "excluded": excluded, "splits": splits,
            "per_class": dict(sorted(kept.items()))}


def label_counts(name: str) -> dict[str, int]:
    """Images per class name, excluded ones too."""
    out: dict[str, int] = {}
    for label, _, _, n in class_counts(name):
        out[label] = out.get(label, 0) + n
    return dict(sorted(out.items()))


def labels(name: str) -> list[str]:
    """Every class name of the dataset, sorted."""
    return list(label_counts(name))


def figures(name: str):
    """The class/split bar chart and the image-size chart, built once per change."""
    return _figures(*stamp(name))
