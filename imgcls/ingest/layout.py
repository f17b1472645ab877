"""Where each file of an import goes: its label and split, read from folders or from a CSV."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from imgcls.ingest.images import is_image_name
from imgcls.ingest.sources import clean_parts
from imgcls.ingest.splits import normalise_split
from imgcls.store.names import NameRefused, check_class_name


@dataclass
class Target:
    """Where an import is placed: a label and split per entry, or the reason it is skipped."""

    label: str = ""
    split: str = ""
    reason: str = ""
    detail: str = ""
    # from an exported dataset's manifest: kept as they were, so it imports back as it was
    excluded: bool = False
    note: str = ""
    source: str = ""


def target_for(label: str, split: str, **kept) -> Target:
    """The target for a class name, or a skip saying why the name is refused (names.check_class_name)."""
    try:
        return Target(label=check_class_name(label), split=split, **kept)
    except NameRefused as exc:
        return Target(reason="refused class name", detail=str(exc))


def _strip_wrapper(parts: list[list[str]]) -> list[list[str]]:
    """Drop one folder that wraps everything, e.g. 'hymenoptera_data/train/ants/…'.

    It is a wrapper when every image sits under it and most lie two or more folders deeper; a stray
    image directly inside it is then reported as not being in a class folder.
    """
    tops = {p[0] for p in parts}
    deep = sum(len(p) >= 3 for p in parts)
    if len(tops) == 1 and deep > len(parts) / 2 and normalise_split(next(iter(tops))) is None:
        return [p[1:] for p in parts]
    return parts


def place_by_folders(names: list[str]) -> dict[str, Target]:
    """Read labels (and splits, when given) from folder names: [wrapper/][split/]class/…/file."""
    images = [n for n in names if is_image_name(n)]
    stripped = dict(zip(images, _strip_wrapper([clean_parts(n) for n in images])))
    tops = {p[0] for p in stripped.values() if len(p) >= 2}
    by_split = bool(tops) and all(normalise_split(t) for t in tops)
    out = {}
    for name, parts in stripped.items():
        if by_split:
            parts = parts if len(parts) >= 3 else []
            split = normalise_split(parts[0]) if parts else ""
            parts = parts[1:]
        else:
            split = ""
        if len(parts) < 2 or not parts[0].strip():
            out[name] = Target(reason="not in a class folder",
                                detail="put each image in a folder named after its class")
        else:
            out[name] = target_for(parts[0], split or "")
    return out


def place_by_csv(names: list[str], rows: list[dict]) -> dict[str, Target]:
    """Labels from a filename,label[,split] table; files are matched by path, then by file name."""
    by_path = {"/".join(clean_parts(r["file"])): r for r in rows}
    base_counts = Counter(Path(n).name for n in names)
    by_base = {Path(k).name: r for k, r in by_path.items()}
    out = {}
    for name in names:
        row = by_path.get(name) or (by_base.get(Path(name).name) if base_counts[Path(name).name] == 1 else None)
        if row is None:
            out[name] = Target(reason="not in the CSV", detail="the CSV gives no label for this file")
        elif row["split"] and not normalise_split(row["split"]):
            out[name] = Target(reason="unknown split",
                               detail=f"the CSV's split '{row['split']}' is not train, val or test")
        else:
            kept = {k: row[k] for k in ("excluded", "note", "source") if row.get(k)}
            out[name] = target_for(row["label"], normalise_split(row["split"]) or "", **kept)
    return out


