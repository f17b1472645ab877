"""Cached reads of a dataset, keyed by its manifest file's mtime so any change is seen at once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from imgcls.charts import dataset as charts
from imgcls.store import workspace


def stamp(name: str) -> tuple[str, int, int]:
    """The manifest's folder, mtime and size: a new write (always atomic) changes the key."""
    path = workspace.dataset_dir(name) / "manifest.csv"
    stat = path.stat()
    return str(path.parent), stat.st_mtime_ns, stat.st_size


# The mtime/size arguments are only there to key the cache; a rewrite of the manifest gives a new entry. The
# folder is absolute, under the current workspace's root, so datasets of the same name in two people's
# workspaces never share an entry.
@st.cache_data(max_entries=16, show_spinner=False)
def _manifest(folder: str, mtime_ns: int, size: int) -> pd.DataFrame:
    return workspace.read_manifest(Path(folder))


@st.cache_data(max_entries=16, show_spinner=False)
def _figures(folder: str, mtime_ns: int, size: int):
    df = _manifest(folder, mtime_ns, size)
    return charts.class_split_counts(df), charts.image_sizes(df)


def manifest(name: str) -> pd.DataFrame:
    """A dataset's manifest, read from disk only when the file has changed."""
    return _manifest(*stamp(name))


def figures(name: str):
    """The class/split bar chart and the image-size chart of a dataset, built once per change."""
    return _figures(*stamp(name))


def summary(name: str) -> dict:
    """Counts shown on the overview: images, classes, images per split and per class."""
    df = manifest(name)
    kept = df[~df["excluded"]]
    return {
        "images": len(kept),
        "classes": int(kept["label"].nunique()),
        "excluded": int(df["excluded"].sum()),
        "splits": {s: int((kept["split"] == s).sum()) for s in workspace.SPLITS},
        "per_class": {str(k): int(v) for k, v in sorted(kept["label"].value_counts().items())},
    }
