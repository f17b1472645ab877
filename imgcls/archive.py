"""A dataset as a ZIP of split and class folders, ready for any other tool, with its manifest."""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
from pathlib import PurePosixPath

import pandas as pd

from . import workspace

# what Windows, macOS or Linux refuse in a file name; everything else (apostrophes, accents, '!') is kept
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f]+')


def _safe(part: str, fallback: str) -> str:
    """One path component that every unzip tool accepts (no slashes, no leading dots)."""
    cleaned = _UNSAFE.sub("_", str(part)).strip(" .")
    return cleaned[:100] or fallback


def member_names(df: pd.DataFrame) -> list[str]:
    """ZIP paths split/class/file for each row, keeping the user's file names and making clashes unique."""
    taken: set[str] = set()
    names = []
    for row in df.itertuples(index=False):
        stored_ext = PurePosixPath(row.path).suffix
        base = PurePosixPath(str(row.source).replace("\\", "/")).name or PurePosixPath(row.path).name
        stem = _safe(PurePosixPath(base).stem, row.hash[:12])
        folder = posixpath.join(_safe(row.split, "unsplit"), _safe(row.label, "unlabelled"))
        name, n = posixpath.join(folder, stem + stored_ext), 1
        while name.lower() in taken:  # case-insensitive: the archive may be unpacked on Windows or macOS
            n += 1
            name = posixpath.join(folder, f"{stem}-{n}{stored_ext}")
        taken.add(name.lower())
        names.append(name)
    return names


def export_dataset(name: str, include_excluded: bool = False, rows: pd.DataFrame | None = None) -> bytes:
    """The cleaned dataset: <split>/<class>/<file> for every kept image, plus manifest.csv and the journal.

    With `rows` (manifest rows, such as those a run trained on), those instead of the dataset as it is now."""
    from . import journal

    folder = workspace.dataset_dir(name)
    df = workspace.read_manifest(name) if rows is None else rows
    if not include_excluded:
        df = df[~df["excluded"]]
    df = df.sort_values(["split", "label", "source"], kind="stable").reset_index(drop=True)
    names = member_names(df)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:  # images are compressed already
        for rel, member in zip(df["path"], names):
            path = folder / rel
            if path.exists():
                zf.write(path, member)
        out = df.assign(file=names, original_path=df["path"])
        cols = ["file", "label", "split", "source", "hash", "width", "height", "note"]
        if include_excluded:
            cols.append("excluded")
        zf.writestr("manifest.csv", out[cols].to_csv(index=False), zipfile.ZIP_DEFLATED)
        zf.writestr("journal.csv", journal.to_csv(name), zipfile.ZIP_DEFLATED)
    return buf.getvalue()
