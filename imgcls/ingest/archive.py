"""A dataset as a ZIP of split and class folders, ready for any other tool, with its manifest."""

from __future__ import annotations

import io
import posixpath
import re
import zipfile
import zlib
from pathlib import PurePosixPath

import pandas as pd

from imgcls.ingest.images import ImageProblem
from imgcls.ingest.layout import Target, place_by_csv, place_by_folders
from imgcls.ingest.sources import Listing, SourceError, read_label_csv
from imgcls.store import workspace

MANIFEST, JOURNAL = "manifest.csv", "journal.csv"
# the columns export_dataset writes first: a manifest.csv that starts with them is an export of ours
EXPORT_HEADER = ["file", "label", "split"]

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
    from imgcls.store import journal

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
        zf.writestr(MANIFEST, out[cols].to_csv(index=False), zipfile.ZIP_DEFLATED)
        zf.writestr(JOURNAL, journal.to_csv(name), zipfile.ZIP_DEFLATED)
    return buf.getvalue()


def _export_manifest(listing: Listing):
    """The manifest.csv entry of an exported dataset (at the top, or inside one wrapping folder) and its
    folder prefix, or None when the listing is not an export of ours."""
    found = sorted((e for e in listing.entries if PurePosixPath(e.name).name == MANIFEST),
                   key=lambda e: e.name.count("/"))
    if not found or found[0].name.count("/") > 1 or (len(found) > 1 and found[1].name.count("/") ==
                                                      found[0].name.count("/")):
        return None
    entry = found[0]
    try:
        data = entry.read()
    except (OSError, zipfile.BadZipFile, zlib.error, EOFError, ImageProblem):  # reported as any other file
        return None
    header = data.decode("utf-8-sig", errors="replace").split("\n", 1)[0].strip().split(",")
    if [c.strip().lower() for c in header[:3]] != EXPORT_HEADER:
        return None
    return entry, data, entry.name[: -len(MANIFEST)]


def exported_rows(listing: Listing) -> list[dict] | None:
    """The rows of an exported dataset's manifest.csv (label, split, exclusion, note and original file name
    of each image), with their paths as the listing names them; None for any other source. The export's
    manifest and journal are taken out of the listing: they are what the import reads, not images."""
    found = _export_manifest(listing)
    if found is None:
        return None
    entry, data, prefix = found
    try:
        rows = read_label_csv(data, entry.name)
    except SourceError:
        return None
    names = {e.name for e in listing.entries}
    rows = [{**r, "file": prefix + r["file"]} for r in rows]
    if not any(r["file"] in names for r in rows):  # a manifest of something else: read the folders instead
        return None
    extra = {entry.name, prefix + JOURNAL}
    listing.entries[:] = [e for e in listing.entries if e.name not in extra]
    return rows


def place_exported(listing: Listing) -> dict[str, Target] | None:
    """Where each file of an exported dataset goes, as its manifest.csv says (images added to its folders
    since are placed by folder); None when the listing is not an export of ours."""
    rows = exported_rows(listing)
    if rows is None:
        return None
    names = [e.name for e in listing.entries]
    places = place_by_csv(names, rows)
    added = [n for n, t in places.items() if t.reason == "not in the CSV"]
    return {**places, **place_by_folders(added)} if added else places
