"""Dataset versions: which state of a dataset a run trained on, a report describes or an evaluation saw.

A version is the journal position (the id of the last edit, undo or redo applied), the number of imports
so far, and a digest of what training reads from the manifest (each image's path, content hash, label,
split and whether it is excluded). Two states with the same digest train the same model; the journal
position says how to rebuild a state: replay the imports, then the journal up to that entry.

A run keeps its own copy of the rows it uses (runs/<id>/manifest.csv), so it trains, resumes and is
evaluated on exactly its version even when the dataset is edited meanwhile.
"""

from __future__ import annotations

import hashlib

import pandas as pd

from imgcls.store import manifeststore, rowdigest, runs, workspace

DIGEST_COLUMNS = ["path", "hash", "label", "split", "excluded"]


def manifest_digest(df: pd.DataFrame) -> str:
    """SHA-256 of the manifest columns that decide training, independent of row order."""
    rows = df[DIGEST_COLUMNS].astype(str).sort_values("path")
    text = "\n".join("\t".join(r) for r in rows.itertuples(index=False, name=None))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def kept_digest(df: pd.DataFrame) -> str:
    """Digest of the kept (not excluded) rows only: equal for a dataset and a copy rebuilt from its export."""
    return manifest_digest(df[~df["excluded"].astype(bool)])


def dataset_version(name: str, df: pd.DataFrame | None = None) -> dict:
    """The dataset's version as it stands now (pass the manifest if already read, to save a read)."""
    folder = workspace.dataset_dir(name)
    df = workspace.read_manifest(name) if df is None else df
    imports = workspace.read_jsonl(folder / "imports.jsonl")
    position = manifeststore.last_entry_id(name)
    digest = manifest_digest(df)
    return {"journal": position, "imports": len(imports), "digest": digest, "kept": kept_digest(df),
            "images": int((~df["excluded"]).sum()), "label": describe_version(position, digest)}


def describe_version(position: int, digest: str) -> str:
    """Short readable name of a version, such as 'edit 12 · 3f2a9c1b'."""
    return f"edit {position} · {digest[:8]}" if position else f"as imported · {digest[:8]}"


def current_digest(name: str) -> str:
    """The digest of the dataset's rows as they stand now (hashed once per change, kept in its store)."""
    return rowdigest.digest(name)


def is_current(name: str, version: dict | None) -> bool:
    """Whether the dataset still holds exactly the data of `version` (False when unknown)."""
    if not version or not workspace.dataset_exists(name):
        return False
    return current_digest(name) == version.get("digest")


def canonical_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The kept rows in a fixed order (by stored path, itself named by content hash).

    Training shuffles row indices with a seeded generator, so the row order decides every batch: a copy
    rebuilt elsewhere (replayed, or imported from an exported ZIP in another order) trains identically
    only when both sort their rows the same way."""
    kept = df[~df["excluded"].astype(bool)]
    return kept.sort_values(["path", "hash"], kind="stable").reset_index(drop=True)


def save_run_rows(run_id: str, df: pd.DataFrame) -> None:
    """Keep the run's own copy of the rows it trains and is evaluated on, in their canonical order."""
    workspace.write_manifest(runs.run_dir(run_id), canonical_rows(df))


def run_rows(run_id: str) -> pd.DataFrame:
    """The rows a run trained on: its own copy, or for runs made before copies were kept, the dataset's
    kept rows as they are now."""
    folder = runs.run_dir(run_id)
    if (folder / "manifest.csv").exists():
        return workspace.read_manifest(folder)
    return canonical_rows(workspace.read_manifest(runs.read_config(run_id)["dataset"]))


def run_version(run_id: str) -> dict | None:
    """The dataset version a run trained on, or None for runs made before versions were recorded."""
    return runs.read_config(run_id).get("dataset_version")
