"""Where images come from: ZIP archives, server folders and in-memory uploads, read safely."""

from __future__ import annotations

import csv
import importlib
import io
import os
import re
import stat
import unicodedata
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from imgcls.ingest import parsing, zipread
from imgcls.ingest.images import DEFAULT_MAX_PIXELS

ARCHIVE_SUFFIXES = {".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar"}
FILE_COLUMNS = ("filename", "file", "path", "image")  # a header row starts with one of these
SYSTEM_FILES = {"thumbs.db", "desktop.ini", "ehthumbs.db", "icon\r"}
# Below this size a member cannot hurt whatever it compresses to; flat BMP/TIFF images deflate
# hundreds of times, so the ratio cap only applies to members bigger than this.
RATIO_FLOOR_BYTES = 1024**2
# Compression methods other tools write that Python's zipfile cannot unpack (it raises NotImplementedError).
METHOD_NAMES = {1: "Shrink", 6: "Implode", 9: "Deflate64", 18: "IBM TERSE", 19: "IBM LZ77", 93: "Zstandard",
                95: "XZ", 96: "JPEG", 97: "WavPack", 98: "PPMd", 99: "AES encryption"}


@dataclass(frozen=True)
class ImportLimits:
    """Caps that protect the server from hostile or accidental huge uploads."""

    max_total_bytes: int = 4 * 1024**3  # uncompressed size of everything imported at once
    max_files: int = 200_000
    max_ratio: float = 200.0  # photos barely compress; a member that shrinks 200× is a bomb
    max_file_bytes: int = 200 * 1024**2
    max_pixels: int = DEFAULT_MAX_PIXELS


class SourceError(Exception):
    """A source that cannot be imported at all (not a ZIP, a bomb, missing, …)."""


@dataclass
class Entry:
    """One candidate file: its path inside the source and a way to read its bytes."""

    name: str
    size: int
    read: Callable[[], bytes]


@dataclass
class Listing:
    """The files of a source, and those set aside before reading (with reasons)."""

    entries: list[Entry] = field(default_factory=list)
    skipped: list[dict] = field(default_factory=list)
    ignored: int = 0  # hidden and system files, dropped without comment

    def skip(self, name: str, reason: str, detail: str) -> None:
        """Record a file set aside."""
        self.skipped.append({"file": name, "reason": reason, "detail": detail})


def clean_parts(name: str) -> list[str]:
    """Split an archive path into NFC-normalised parts (backslashes count as separators)."""
    return [unicodedata.normalize("NFC", p) for p in name.replace("\\", "/").split("/") if p not in ("", ".")]


def is_hidden(parts: Iterable[str]) -> bool:
    """macOS resource forks, dot-files and Windows thumbnail databases."""
    return any(p.startswith(".") or p == "__MACOSX" or p.lower() in SYSTEM_FILES for p in parts)


def _unsafe(name: str) -> bool:
    """Absolute paths, drive letters and '..' would escape the folder if extracted."""
    norm = name.replace("\\", "/")
    return norm.startswith("/") or bool(re.match(r"^[A-Za-z]:", norm)) or ".." in norm.split("/")


def _readable_methods() -> set[int]:
    """The compression methods zipfile can unpack here (bz2, lzma and zstd are optional modules)."""
    methods = {zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED}
    optional = [(zipfile.ZIP_BZIP2, "bz2"), (zipfile.ZIP_LZMA, "lzma")]
    if hasattr(zipfile, "ZIP_ZSTANDARD"):  # Python 3.14+
        optional.append((zipfile.ZIP_ZSTANDARD, "compression.zstd"))
    for method, module in optional:
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        methods.add(method)
    return methods


READABLE_METHODS = _readable_methods()


def _check_member(info: zipfile.ZipInfo, limits: ImportLimits) -> tuple[str, str] | None:
    """Why a ZIP member must not be read, or None when it is fine."""
    mode = info.external_attr >> 16
    if _unsafe(info.filename):
        return "unsafe path", "the path points outside the archive folder ('..' or absolute)"
    if stat.S_ISLNK(mode):
        return "symlink", "symbolic links are not followed"
    if Path(info.filename).suffix.lower() in ARCHIVE_SUFFIXES:
        return "nested archive", "archives inside the archive are not opened; upload it separately"
    if info.flag_bits & 0x1:
        return "encrypted", "the file is password-protected"
    patched = info.flag_bits & 0x20  # PKWARE patch data: zipfile refuses it whatever the method
    if patched or info.compress_type not in READABLE_METHODS:
        method = "patch data" if patched else METHOD_NAMES.get(info.compress_type, f"method {info.compress_type}")
        return "unsupported compression", (f"compressed with a method this app cannot read ({method}); "
                                           "re-zip with standard compression")
    if info.file_size > limits.max_file_bytes:
        return "too large", f"{info.file_size:,} bytes is over the per-file limit of {limits.max_file_bytes:,}"
    if (info.file_size > RATIO_FLOOR_BYTES and info.compress_size
            and info.file_size / info.compress_size > limits.max_ratio):
        ratio = info.file_size / info.compress_size
        return "zip bomb", f"compresses {ratio:,.0f}:1, over the limit of {limits.max_ratio:,.0f}:1"
    return None


def _zip_reader(reader: zipread.MemberReader, info: zipfile.ZipInfo) -> Callable[[], bytes]:
    """Inflate the member in chunks, counted by the bytes it really gives (not what the directory says)."""
    def read() -> bytes:
        try:
            return reader.read(info)
        except zipread.ArchiveRefused as exc:  # over the budget of the whole import
            raise SourceError(str(exc)) from None
    return read


def list_zip(zf: zipfile.ZipFile, limits: ImportLimits, label: str = "archive") -> Listing:
    """List the usable members of an open ZIP, refusing archives over the caps."""
    infos = [i for i in zf.infolist() if not i.is_dir()]
    if len(infos) > limits.max_files:
        raise SourceError(f"{label} holds {len(infos):,} files, over the limit of {limits.max_files:,}.")
    try:
        reader = zipread.MemberReader(zf, limits, label, zipread.data_starts(zf, label), RATIO_FLOOR_BYTES)
    except zipread.ArchiveRefused as exc:
        raise SourceError(str(exc)) from None
    listing = Listing()
    total = 0
    for info in infos:
        parts = clean_parts(info.filename)
        if is_hidden(parts) and not _unsafe(info.filename):  # '..' starts with a dot: report it, never ignore it
            listing.ignored += 1
            continue
        problem = _check_member(info, limits)
        if problem:
            listing.skip(info.filename, *problem)
            continue
        total += info.file_size
        listing.entries.append(Entry("/".join(parts), info.file_size, _zip_reader(reader, info)))
    if total > limits.max_total_bytes:
        raise SourceError(
            f"{label} would unpack to {total:,} bytes, over the limit of {limits.max_total_bytes:,} "
            "(a ZIP bomb, or simply too big to import at once)."
        )
    return listing


def open_zip(src, label: str) -> zipfile.ZipFile:
    """Open a ZIP from a path, bytes or file object, with a plain error when it is not one."""
    if isinstance(src, (bytes, bytearray)):
        src = io.BytesIO(src)
    try:
        return zipfile.ZipFile(src)
    except zipfile.BadZipFile:
        raise SourceError(f"{label} is not a ZIP archive (or it is damaged).")
    except FileNotFoundError:
        raise SourceError(f"{label} does not exist.")


def _read_no_follow(path: Path) -> bytes:
    """A file's bytes, refusing it if it was swapped for a symlink after it was listed."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    with os.fdopen(fd, "rb") as fh:
        return fh.read()


def _file_reader(path: Path) -> Callable[[], bytes]:
    return lambda: _read_no_follow(path)


def _subfolders(listing: Listing, root: Path, dirpath: str, dirnames: list[str]) -> list[str]:
    """The subfolders to enter: not hidden, and not symlinks (reported, since one may lead anywhere)."""
    keep = []
    for name in sorted(dirnames):
        if is_hidden([name]):
            continue
        if (Path(dirpath) / name).is_symlink():
            listing.skip((Path(dirpath) / name).relative_to(root).as_posix(), "symlink",
                         "symbolic links are not followed")
            continue
        keep.append(name)
    return keep


def list_folder(root: Path, limits: ImportLimits) -> Listing:
    """List the image candidates in a folder on the server, never following symlinks (files or folders)."""
    root = Path(root)
    if not root.is_dir():
        raise SourceError(f"{root} is not a folder on the server.")
    listing = Listing()
    count = total = 0
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        rel_dir = Path(dirpath).relative_to(root)
        dirnames[:] = _subfolders(listing, root, dirpath, dirnames)
        for fname in sorted(filenames):
            rel = (rel_dir / fname).as_posix()
            path = Path(dirpath) / fname
            if is_hidden(clean_parts(rel)):
                listing.ignored += 1
                continue
            count += 1
            if count > limits.max_files:
                raise SourceError(f"{root} holds more than {limits.max_files:,} files, the limit for one import.")
            if path.is_symlink():
                listing.skip(rel, "symlink", "symbolic links are not followed")
                continue
            if path.suffix.lower() in ARCHIVE_SUFFIXES:
                listing.skip(rel, "nested archive", "archives inside the folder are not opened; import it separately")
                continue
            info = path.lstat()
            if not stat.S_ISREG(info.st_mode):  # a pipe or a device would block or never end when read
                listing.skip(rel, "not a file", "only ordinary files are read (not pipes, sockets or devices)")
                continue
            size = info.st_size
            total += size
            listing.entries.append(Entry("/".join(clean_parts(rel)), size, _file_reader(path)))
    if total > limits.max_total_bytes:
        raise SourceError(f"{root} holds {total:,} bytes, over the limit of {limits.max_total_bytes:,}.")
    return listing


def list_memory(files: Iterable[tuple[str, bytes]]) -> Listing:
    """List uploaded or generated files held in memory."""
    listing = Listing()
    for name, data in files:
        parts = clean_parts(name)
        if is_hidden(parts):
            listing.ignored += 1
            continue
        listing.entries.append(Entry("/".join(parts), len(data), (lambda d=data: d)))
    return listing


def _csv_columns(header: list[str]) -> dict[str, int] | None:
    """Column positions named by a header row, or None when the first row is data (filename,label[,split])."""
    names = [c.strip().lower() for c in header]
    if not names or names[0] not in FILE_COLUMNS:
        return None
    cols = {"file": 0, "label": 1, "split": 2}
    for i, col in enumerate(names):  # a dataset export's manifest.csv also keeps notes, exclusions, sources
        if col in ("label", "split", "excluded", "note", "source"):
            cols[col] = i
    return cols


def _cell(row: list[str], cols: dict[str, int], key: str) -> str:
    i = cols.get(key)
    return row[i] if i is not None and i < len(row) else ""


def _csv_rows(data: bytes, label: str, max_rows: int) -> list[list[str]]:
    """The non-empty rows of CSV bytes, refused over the size and row caps or when the csv module cannot
    read them (a field over its 128 kB limit, a NUL byte)."""
    try:
        text = parsing.read_text(data, label, parsing.MAX_CSV_BYTES, "label CSV")
    except parsing.ParseRefused as exc:
        raise SourceError(str(exc)) from None
    rows = []
    reader = csv.reader(io.StringIO(text))
    try:
        for row in reader:
            if any(c.strip() for c in row):
                rows.append(row)
            if len(rows) > max_rows + 1:  # one more for a header row
                raise SourceError(f"{label} has more than {max_rows:,} rows, the most one import can use.")
    except csv.Error as exc:
        raise SourceError(f"{label}, line {reader.line_num}: not readable as CSV ({exc}).") from None
    return rows


def read_label_csv(data: bytes, label: str = "CSV", max_rows: int = ImportLimits.max_files) -> list[dict]:
    """Rows of filename,label[,split] from CSV bytes; a header row is optional, and with one the columns
    excluded, note and source (as a dataset export writes them) are read too."""
    rows = _csv_rows(data, label, max_rows)
    cols = _csv_columns(rows[0]) if rows else None
    rows = rows[1:] if cols else rows
    cols = cols or {"file": 0, "label": 1, "split": 2}
    out = []
    for number, row in enumerate(rows, start=1):
        # the label is kept as written: the import checks it (names.check_class_name) and skips a refused one
        file, name = _cell(row, cols, "file").strip(), _cell(row, cols, "label")
        if len(row) < 2 or not file or not name.strip():
            raise SourceError(f"{label}, row {number}: expected 'filename,label[,split]', got {row!r}.")
        out.append({"file": file, "label": name, "split": _cell(row, cols, "split").strip(),
                    "excluded": _cell(row, cols, "excluded").strip().lower() in ("true", "1"),
                    "note": _cell(row, cols, "note"), "source": _cell(row, cols, "source")})
    if not out:
        raise SourceError(f"{label} has no rows of filename,label.")
    return out
