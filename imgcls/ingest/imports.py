"""Importing images into a dataset: ZIPs, folders, uploads, CSV labels and built-in samples."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
import zipfile
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import pandas as pd

from imgcls.ingest import archive, samples
from imgcls.ingest.images import ImageProblem, inspect, is_image_name
from imgcls.ingest.layout import Target, place_by_csv, place_by_folders, target_for
from imgcls.ingest.sources import (Entry, ImportLimits, Listing, SourceError, list_folder, list_memory, list_zip,
                                   open_zip, read_label_csv)
from imgcls.ingest.splits import DEFAULT_RATIOS, assign_splits
from imgcls.ingest.trailing import without_trailing
from imgcls.store import access, leftovers, names, quotas, workspace
from imgcls.store.leftovers import CleanupReport, clean_leftovers  # noqa: F401 - data.clean_leftovers() for the app

Progress = Callable[[float, str], None]
EXTENSION_FOR = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "DIB": ".bmp",
                 "GIF": ".gif", "TIFF": ".tif"}
SUPPORTED = "JPEG, PNG, WebP, BMP, GIF and TIFF"


class ImportFailed(Exception):
    """An import that could not go ahead; the workspace is left as it was."""

    def __init__(self, message: str, report: "ImportReport | None" = None):
        super().__init__(message)
        self.report = report


@dataclass
class ImportReport:
    """What an import did: images kept, files skipped with reasons, warnings."""

    name: str
    source: str
    images: int = 0
    class_counts: dict = field(default_factory=dict)
    splits: dict = field(default_factory=dict)
    skipped_files: list = field(default_factory=list)
    ignored: int = 0
    warnings: list = field(default_factory=list)
    seconds: float = 0.0
    # how to repeat the import (the Learn page's script export): the call and its file on this machine
    repeat: dict = field(default_factory=dict)

    @property
    def classes(self) -> int:
        """Number of classes in the dataset after the import."""
        return len(self.class_counts)

    def to_json(self) -> dict:
        """The report as the CLI prints it with --json."""
        out = asdict(self)
        out["classes"] = self.classes
        out["skipped"] = dict(Counter(s["reason"] for s in self.skipped_files))
        return out


def _why_not_image(name: str) -> tuple[str, str]:
    ext = Path(name).suffix.lower() or "(no extension)"
    if ext in (".heic", ".heif"):
        return "unsupported format", "HEIC photos are not supported: export them as JPEG first"
    return "unsupported format", f"'{ext}' files are not images we can read (we read {SUPPORTED})"


def _read(entry: Entry) -> bytes:
    try:
        return entry.read()
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise ImageProblem("corrupt archive member", f"could not be unpacked from the archive ({exc})")
    except OSError as exc:
        raise ImageProblem("unreadable file", f"could not be read ({exc.strerror or exc})")


class _Importer:
    """Reads, checks, deduplicates and stores images for one import."""

    def __init__(self, folder: Path, report: ImportReport, limits: ImportLimits, known: dict[str, str]):
        self.folder, self.report, self.limits = folder, report, limits
        self.seen = dict(known)  # content hash → (first file with that content, its label)
        self.rows: list[dict] = []
        self.written: list[Path] = []  # files this import created, removed again if it fails

    def skip(self, name: str, reason: str, detail: str) -> None:
        self.report.skipped_files.append({"file": name, "reason": reason, "detail": detail})

    def add(self, entry: Entry, target: Target) -> None:
        if target.reason:
            return self.skip(entry.name, target.reason, target.detail)
        if not is_image_name(entry.name):
            return self.skip(entry.name, *_why_not_image(entry.name))
        try:
            # what is stored, hashed and exported ends where the image does: a ZIP appended to a JPEG
            # is not kept (trailing.py says how each format's end is found)
            data = without_trailing(_read(entry))
            digest = hashlib.sha256(data).hexdigest()
            if digest in self.seen:
                first, first_label = self.seen[digest]
                clash = f", but labelled '{first_label}' there and '{target.label}' here" \
                    if first_label != target.label else ""
                return self.skip(entry.name, "duplicate", f"same content as {first}{clash}; kept once")
            info, _ = inspect(data, self.limits.max_pixels)
        except ImageProblem as problem:
            return self.skip(entry.name, problem.reason, str(problem))
        self.seen[digest] = (entry.name, target.label)
        rel = f"images/{digest[:20]}{EXTENSION_FOR.get(info.format, '.img')}"
        dest = self.folder / rel
        if not dest.exists():
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(data)
            self.written.append(dest)
        self.rows.append({"path": rel, "label": target.label, "split": target.split, "hash": digest,
                          "width": info.width, "height": info.height, "excluded": bool(target.excluded),
                          "source": target.source or entry.name, "format": info.format, "bytes": len(data),
                          "note": target.note or ""})


def _finish_rows(rows: list[dict], old: pd.DataFrame | None, seed: int, ratios) -> tuple[pd.DataFrame, list]:
    """Give unsplit rows a split (topping up existing classes) and join them to the old manifest."""
    existing = {}
    if old is not None and len(old):
        for (label, split), n in old.groupby(["label", "split"]).size().items():
            existing.setdefault(label, Counter())[split] = int(n)
    todo = [i for i, r in enumerate(rows) if not r["split"]]
    splits, warnings = assign_splits([rows[i]["label"] for i in todo], [rows[i]["hash"] for i in todo],
                                     seed, ratios, existing)
    for i, split in zip(todo, splits):
        rows[i]["split"] = split
    new = pd.DataFrame(rows, columns=workspace.MANIFEST_COLUMNS)
    df = new if old is None else pd.concat([old, new], ignore_index=True)
    return df, warnings


def _summarise(report: ImportReport, df: pd.DataFrame, warnings: list, started: float) -> None:
    kept = df[~df["excluded"].astype(bool)]
    report.class_counts = {k: int(v) for k, v in sorted(kept["label"].value_counts().items())}
    report.splits = {s: int((kept["split"] == s).sum()) for s in workspace.SPLITS}
    report.warnings = list(warnings)
    if report.classes == 1:
        report.warnings.append("This dataset has a single class: training needs at least two, so add another class.")
    report.seconds = round(time.perf_counter() - started, 3)


def _record(folder: Path, report: ImportReport) -> None:
    """Append this import's report to the dataset's import history."""
    path = folder / "imports.jsonl"
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    workspace.atomic_write_text(path, old + json.dumps(report.to_json(), ensure_ascii=False) + "\n")


def import_listing(listing: Listing, name: str, source: str, *, places: dict[str, Target] | None = None,
                   label: str | None = None, add: bool = False, seed: int = 0, ratios=DEFAULT_RATIOS,
                   limits: ImportLimits = ImportLimits(), progress: Progress | None = None,
                   repeat: dict | None = None) -> ImportReport:
    """Import listed files into a new dataset (or add them to an existing one when add=True)."""
    started = time.perf_counter()
    try:
        name = workspace.check_name(name)
    except workspace.WorkspaceError as exc:
        raise ImportFailed(str(exc))
    leftovers.clean_before_import()  # what an interrupted import left goes first
    with workspace.dataset_lock(name):  # two imports into one dataset never overwrite each other's rows
        return _import_locked(listing, name, source, places, label, add, seed, ratios, limits, progress,
                              started, repeat or {})


def _import_locked(listing, name, source, places, label, add, seed, ratios, limits, progress, started, repeat):
    final = workspace.dataset_dir(name)
    exists = workspace.dataset_exists(name)
    if exists and not add:
        raise ImportFailed(f"A dataset named '{name}' already exists: choose another name, or add to it.")
    old = workspace.read_manifest(final) if exists else None
    places = places if places is not None else place_by_folders([e.name for e in listing.entries])
    targets = [target_for(label, "") if label else places.get(entry.name, Target(
        reason="unsupported format", detail=_why_not_image(entry.name)[1])) for entry in listing.entries]
    # every placed image file counts: duplicates and unreadable files are only found by reading them
    quotas.check_import(name, not exists, [e.size for e, t in zip(listing.entries, targets)
                                           if not t.reason and is_image_name(e.name)])
    claim = leftovers.claim_import(name, adding=exists)  # held while this runs: a cleanup leaves its files be
    folder = final if exists else claim.folder
    report = ImportReport(name=name, source=source, ignored=listing.ignored, skipped_files=list(listing.skipped),
                          repeat={**repeat, "seed": seed, "ratios": list(ratios),
                                                "time": workspace.now()} if repeat else {})
    known = {} if old is None else {h: (s, lb) for h, s, lb in zip(old["hash"], old["source"], old["label"])}
    importer = _Importer(folder, report, limits, known)
    total = max(len(listing.entries), 1)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for i, (entry, target) in enumerate(zip(listing.entries, targets)):
            importer.add(entry, target)
            if progress and (i % 8 == 0 or i + 1 == total):
                progress((i + 1) / total, f"Reading {entry.name}")
        if not importer.rows:
            raise ImportFailed(f"No usable images found in {source}.", report)
        df, warnings = _finish_rows(importer.rows, old, seed, ratios)
        _summarise(report, df, warnings, started)
        report.images = len(importer.rows)
        workspace.write_manifest(folder, df)
        _record(folder, report)
        if not exists:
            if workspace.dataset_exists(name):
                raise ImportFailed(f"A dataset named '{name}' appeared while importing; nothing was changed.")
            folder.rename(final)
    except BaseException:
        if not exists:
            shutil.rmtree(folder, ignore_errors=True)
        for path in importer.written:
            path.unlink(missing_ok=True)
        raise
    finally:
        claim.release()
    quotas.forget()  # the workspace grew: the next disk check measures it again
    return report


def _repeat(call: str, src, label_csv: bytes | None) -> dict:
    """A ZIP or folder on disk can be imported again; an upload held in memory, or a label CSV, cannot."""
    if not isinstance(src, (str, Path)) or label_csv is not None:
        return {}
    return {"call": call, "arg": str(Path(src).expanduser().resolve())}


def import_zip(src, name: str, *, label_csv: bytes | None = None, source: str | None = None,
               limits: ImportLimits = ImportLimits(), **kw) -> ImportReport:
    """Import a ZIP of class folders (optionally in split folders), or of images labelled by a CSV."""
    source = source or (Path(src).name if isinstance(src, (str, Path)) else "the uploaded file")
    try:
        with open_zip(src, source) as zf:
            listing = list_zip(zf, limits, source)
            places = place_by_csv([e.name for e in listing.entries], read_label_csv(label_csv)) \
                if label_csv is not None else archive.place_exported(listing)  # an export imports back as it was
            return import_listing(listing, name, source, places=places, limits=limits,
                                  repeat=_repeat("import_zip", src, label_csv), **kw)
    except SourceError as exc:
        raise ImportFailed(str(exc))


def import_folder(path, name: str, *, label_csv: bytes | None = None, limits: ImportLimits = ImportLimits(),
                  signed_in: bool = False, **kw) -> ImportReport:
    """Import a folder on the server laid out as class folders (optionally inside split folders),
    or of images labelled by a CSV; only from the folders the operator allows (signed_in: the caller is a
    signed-in user of a shared server, not the one person on their own machine)."""
    try:
        folder = access.check_import_folder(path, signed_in)  # before anything in it is read
        listing = list_folder(folder, limits)
        places = place_by_csv([e.name for e in listing.entries], read_label_csv(label_csv)) \
            if label_csv is not None else archive.place_exported(listing)  # an export imports back as it was
    except (SourceError, workspace.WorkspaceError) as exc:
        raise ImportFailed(str(exc))
    return import_listing(listing, name, str(path), places=places, limits=limits,
                          repeat=_repeat("import_folder", path, label_csv), **kw)


def import_files(files: Iterable[tuple[str, bytes]], name: str, label: str, **kw) -> ImportReport:
    """Add loose images (uploads or webcam shots) to one class, creating the dataset if needed."""
    try:
        label = names.check_class_name(label)
    except names.NameRefused as exc:
        raise ImportFailed(str(exc))
    add = workspace.dataset_exists(name)
    return import_listing(list_memory(files), name, f"uploads to '{label}'", label=label, add=add, **kw)


def import_sample(sample: str, name: str | None = None, **kw) -> ImportReport:
    """Import a built-in sample dataset ('shapes' or 'digits')."""
    try:
        total = samples.count_sample(sample)
        files = samples.iter_sample(sample)
    except ValueError as exc:
        raise ImportFailed(str(exc))
    progress = kw.pop("progress", None)
    drawn = []
    for i, item in enumerate(files):  # drawing the images is half the work: show it on the bar
        drawn.append(item)
        if progress and (i % 16 == 0 or i + 1 == total):
            progress(0.5 * (i + 1) / total, f"Drawing {item[0]}")
    scaled = (lambda f, text: progress(0.5 + 0.5 * f, text)) if progress else None
    return import_listing(list_memory(drawn), name or sample, f"sample:{sample}", progress=scaled,
                          repeat={"call": "import_sample", "arg": sample}, **kw)


def import_source(src: str, name: str | None = None, labels: str | None = None, **kw) -> ImportReport:
    """Import from a CLI-style source: 'sample:NAME', a ZIP file or a folder."""
    if src.startswith("sample:"):
        return import_sample(src.split(":", 1)[1], name, **kw)
    path = Path(src).expanduser()
    name = name or workspace.suggest_name(path.stem)
    if not path.exists():
        raise ImportFailed(f"{src} does not exist.")
    try:
        csv_bytes = Path(labels).expanduser().read_bytes() if labels else None
    except OSError as exc:
        raise ImportFailed(f"The labels file {labels} cannot be read ({exc.strerror or exc}).")
    if path.is_dir():
        return import_folder(path, name, label_csv=csv_bytes, **kw)
    return import_zip(path, name, label_csv=csv_bytes, **kw)


def last_report(name: str) -> dict | None:
    """The most recent import report of a dataset, if any."""
    path = workspace.dataset_dir(name) / "imports.jsonl"
    if not path.exists():
        return None
    lines = [ln for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return json.loads(lines[-1]) if lines else None
