"""Parts of the kill-anywhere test: tiny images, the worker each trial forks, and what it logs.

The worker runs a seeded sequence of dataset operations (edits, undo, redo, imports, thumbnails,
decoded images) and writes one line to an append-only log around each: 'begin I KIND {json}' before it
starts and 'ack I KIND {json}' once the engine has returned. Each line goes out in one write() to a file
opened with O_APPEND: once write() returns the line is in the kernel, and a SIGKILL of the worker cannot
take it back (the machine itself does not crash in this test, so the lines need no fsync). After the
kill the parent knows every acknowledged operation, and the one operation, if any, that was cut short.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import time
import traceback
from dataclasses import dataclass

import numpy as np
from PIL import Image

from imgcls.ingest import imports as data
from imgcls.vision import cachestore, imgcache, thumbs
from imgcls.store import journal, workspace
from imgcls.ingest.sources import list_memory

MAIN = "main"
POOL_SIZE = 400
TEMPLATE_SIZE = 150  # pool images 0..149 make up the main dataset of a fresh workspace
CLASSES = ("cat", "dog", "fox")
EDIT_LABELS = ("cat", "dog", "fox", "owl")
DECODE_SIDE = 16
EDITS = ("relabel", "exclude", "restore", "move", "note")
IMPORTS = ("add", "new")
# how often each operation is drawn: edits and undo/redo most, since their two writes are the risky part
OPS = {"relabel": 14, "exclude": 7, "restore": 6, "move": 7, "note": 5, "undo": 12, "redo": 8,
       "add": 7, "new": 3, "thumb": 4, "decode": 2}
MAX_OPS = 400  # far more than fit in the longest delay; then the worker waits to be killed


@dataclass(frozen=True)
class Picture:
    """One tiny PNG of the pool, and where an import of its entry name places it."""

    index: int
    name: str  # split/label/file, as a folder or ZIP import lists it
    data: bytes
    digest: str
    label: str
    split: str

    def row(self) -> dict:
        """The manifest fields this image has right after it is imported."""
        return {"label": self.label, "split": self.split, "excluded": False, "note": "", "source": self.name}


def make_pool(n: int = POOL_SIZE) -> list[Picture]:
    """n distinct 8×8 noise PNGs spread over three classes and the three splits."""
    pool = []
    for i in range(n):
        arr = np.random.default_rng(i).integers(0, 256, (8, 8, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr, "RGB").save(buf, format="PNG")
        label, split = CLASSES[i % 3], workspace.SPLITS[(i // 3) % 3]
        raw = buf.getvalue()
        pool.append(Picture(i, f"{split}/{label}/img{i:04d}.png", raw, hashlib.sha256(raw).hexdigest(),
                            label, split))
    assert len({p.digest for p in pool}) == n, "the pool's images must all differ"
    return pool


def import_pictures(pool: list[Picture], indices, name: str, source: str, add: bool):
    """Import these pool images into a dataset, placed by their split/class folders."""
    files = [(pool[i].name, pool[i].data) for i in indices]
    return data.import_listing(list_memory(files), name, source, add=add)


# --- the worker (runs in the forked child) ------------------------------------------------------------


def child_main(fd: int, seed: int, trial: int, pool: list[Picture], unused: list[int]) -> None:
    """Entry point of the forked worker: never returns, never runs the parent's cleanup."""
    try:
        null = os.open(os.devnull, os.O_RDWR)
        for std in (0, 1, 2):
            os.dup2(null, std)
        run_worker(fd, seed, trial, pool, unused)
        time.sleep(60)  # out of operations: wait for the kill
    except BaseException:
        _log(fd, "error", -1, "worker", {"traceback": traceback.format_exc()[-2000:]})
    finally:
        os._exit(70)


def run_worker(fd: int, seed: int, trial: int, pool: list[Picture], unused: list[int]) -> None:
    """The seeded operations of one trial, each logged before and after."""
    rng = random.Random(f"{seed}/{trial}")
    unused = list(unused)
    for i in range(MAX_OPS):
        kind = rng.choices(list(OPS), weights=list(OPS.values()))[0]
        if kind == "add" and len(unused) < 3:
            kind = "relabel"
        params = plan(kind, rng, unused, len(pool), f"kill trial {trial} op {i}", f"n{trial}-{i}")
        _log(fd, "begin", i, kind, params)
        try:
            out = perform(kind, params, pool)
        except (workspace.WorkspaceError, data.ImportFailed) as exc:
            out = {"refused": str(exc)}
        _log(fd, "ack", i, kind, out)


def plan(kind: str, rng: random.Random, unused: list[int], pool_size: int, source: str, new_name: str) -> dict:
    """What one operation will do, drawn from the workspace as the worker sees it now."""
    if kind in EDITS or kind in ("thumb", "decode"):
        df = workspace.read_manifest(MAIN)
        rows = rng.sample(range(len(df)), k=min(len(df), rng.randint(1, 4)))
        params = {"paths": [df["path"][r] for r in rows], "hashes": [df["hash"][r] for r in rows]}
        value = {"relabel": lambda: rng.choice(EDIT_LABELS), "move": lambda: rng.choice(workspace.SPLITS),
                 "note": lambda: f"note {rng.randint(0, 999)}", "thumb": lambda: rng.choice((32, 48))}.get(kind)
        return {**params, "value": value() if value else None}
    if kind in ("undo", "redo"):
        entry = journal.pending(MAIN)[kind]
        return {"target": entry["id"] if entry else None}
    if kind == "add":
        picks = [unused.pop(rng.randrange(len(unused))) for _ in range(min(len(unused), rng.randint(3, 8)))]
        if rng.random() < 0.3:  # one image the dataset has already: skipped as a duplicate
            picks.append(rng.randrange(TEMPLATE_SIZE))
        return {"dataset": MAIN, "pool": picks, "source": source}
    return {"dataset": new_name, "pool": rng.sample(range(pool_size), rng.randint(3, 8)), "source": source}


def perform(kind: str, params: dict, pool: list[Picture]) -> dict:
    """Do one planned operation through the engine; what it returned, for the acknowledgement."""
    if kind in EDITS:
        result = journal.edit(MAIN, kind, params["paths"], params["value"], source="kill test")
        return {"entry": result.entry, "changed": result.changed}
    if kind in ("undo", "redo"):
        result = (journal.undo if kind == "undo" else journal.redo)(MAIN)
        return {"entry": None} if result is None else {"entry": result.entry, "changed": result.changed}
    if kind in IMPORTS:
        report = import_pictures(pool, params["pool"], params["dataset"], params["source"], kind == "add")
        return {"images": report.images}
    folder = workspace.dataset_dir(MAIN)
    if kind == "thumb":
        made = [thumbs.thumbnail_path(folder, p, h, params["value"]) for p, h in zip(params["paths"], params["hashes"])]
        return {"made": len(made)}
    arr = imgcache.load_images(folder, params["paths"], params["hashes"], DECODE_SIDE)
    return {"shape": list(arr.shape)}


def _log(fd: int, tag: str, i: int, kind: str, obj: dict) -> None:
    os.write(fd, f"{tag} {i} {kind} {json.dumps(obj, ensure_ascii=False)}\n".encode("utf-8"))


# --- reading the log (in the parent) ------------------------------------------------------------------


@dataclass
class Op:
    """One operation the worker began: its plan, and what the engine returned if it was acknowledged."""

    index: int
    kind: str
    params: dict
    out: dict | None = None  # None: cut short by the kill

    @property
    def refused(self) -> bool:
        """Whether the engine refused it with a plain error (then it must have changed nothing)."""
        return bool(self.out and "refused" in self.out)


def read_log(path) -> tuple[list[Op], Op | None, list[str]]:
    """The acknowledged operations in order, the one cut short (if any), and the worker's own errors."""
    raw = open(path, "rb").read().decode("utf-8", errors="replace")
    lines = raw.split("\n")[:-1]  # a last line without its newline was cut by the kill: never acknowledged
    acked, current, errors = [], None, []
    for line in lines:
        tag, i, kind, body = line.split(" ", 3)
        obj = json.loads(body)
        if tag == "begin":
            current = Op(int(i), kind, obj)
        elif tag == "ack" and current is not None and current.index == int(i):
            current.out = obj
            acked.append(current)
            current = None
        elif tag == "error":
            errors.append(obj.get("traceback", ""))
    return acked, current, errors


# --- the invariants (in the parent, after each kill) ----------------------------------------------------

JOURNALED = EDITS + ("undo", "redo")


@dataclass
class Known:
    """What the parent has verified to be in the workspace: each dataset's rows as imported (content hash →
    fields) and the main dataset's journal."""

    rows: dict[str, dict[str, dict]]
    history: list[dict]

    def unused(self, pool: list[Picture]) -> list[int]:
        """Pool images the main dataset does not hold yet."""
        have = self.rows.get(MAIN, {})
        return [p.index for p in pool if p.digest not in have]


def imported_rows(pool: list[Picture], indices, have: dict) -> dict[str, dict]:
    """The rows an import of these pool images adds to a dataset already holding `have`."""
    out: dict[str, dict] = {}
    for i in indices:
        if pool[i].digest not in have and pool[i].digest not in out:
            out[pool[i].digest] = pool[i].row()
    return out


def manifest_fields(df) -> dict[str, dict]:
    """The manifest's editable fields (and source) per content hash."""
    return {h: {"label": lb, "split": sp, "excluded": bool(ex), "note": nt, "source": src}
            for h, lb, sp, ex, nt, src in zip(df["hash"], df["label"], df["split"], df["excluded"], df["note"],
                                              df["source"])}


def force_order(entries: list[dict]) -> list[dict]:
    """The edits in force after these journal entries (journal.in_force's rule, for a list the test makes up)."""
    by_id, applied = {e.get("id"): e for e in entries}, []
    for e in entries:
        act = e.get("action")
        if act in journal.FIELDS or act == "purge":
            applied.append(e.get("id"))
        elif act == "undo":
            applied = [i for i in applied if i != e.get("target")]
        elif act == "redo":
            applied.append(e.get("target"))
    return [by_id[i] for i in applied if i in by_id]


def replay(base: dict[str, dict], by_path: dict[str, str], entries: list[dict]) -> dict[str, dict]:
    """The rows as imported, with every edit in force applied in order."""
    rows = {h: dict(r) for h, r in base.items()}
    for e in entries:
        if e.get("action") in journal.FIELDS:
            for c in e.get("changes") or []:
                h = by_path.get(c.get("path"))
                if h in rows:
                    rows[h][e["field"]] = c.get("after")
    return rows


def _diff(have: dict, want: dict, paths: dict[str, str]) -> str:
    cells = [f"{paths.get(h, h[:12])} {k}: manifest {have[h][k]!r}, journal {want[h][k]!r}"
             for h in have if h in want for k in have[h] if have[h][k] != want[h][k]]
    return "; ".join(cells[:3]) + (f" (+{len(cells) - 3} more)" if len(cells) > 3 else "")


class Checker:
    """Every invariant over the workspace after one kill; `violations` lists (invariant, detail)."""

    def __init__(self, known: Known, pool: list[Picture], acked: list[Op], cut: Op | None):
        self.known, self.pool, self.acked, self.cut = known, pool, acked, cut
        self.violations: list[tuple[str, str]] = []
        self.accepted: dict[str, dict[str, dict]] = {}  # the rows verified present, for the next trial

    def fail(self, invariant: str, detail: str) -> None:
        self.violations.append((invariant, detail))

    def run(self) -> "Checker":
        expect, maybe = self._expected_rows()
        present = set(workspace.list_datasets())
        cut_new = self.cut.params["dataset"] if self.cut and self.cut.kind == "new" else None
        for name in sorted(set(expect) - present):
            self.fail("dataset lost or unknown", f"dataset '{name}' was imported (acknowledged) but is gone")
        for name in sorted(present - set(expect) - {cut_new}):
            self.fail("dataset lost or unknown", f"dataset '{name}' appeared, made by no operation")
        for name in sorted(present):
            self._dataset(name, expect.get(name, {}), maybe.get(name, {}))
        leftovers = [p.name for p in workspace.datasets_dir().iterdir() if p.name.startswith(".import-")]
        if leftovers:
            self.fail("import leftover folder", ", ".join(leftovers))
        if MAIN in present:
            self._journal()
        self._imports_recorded(present)
        self._caches()
        return self

    def _expected_rows(self):
        expect = {name: dict(rows) for name, rows in self.known.rows.items()}
        for op in self.acked:
            if op.kind in IMPORTS and not op.refused:
                have = expect.setdefault(op.params["dataset"], {})
                new = imported_rows(self.pool, op.params["pool"], have)
                if len(new) != op.out["images"]:
                    self.fail("row lost or unknown", f"op {op.index} {op.kind} reported {op.out['images']} images "
                                                     f"for {len(new)} new ones")
                have.update(new)
        maybe = {}
        if self.cut and self.cut.kind in IMPORTS:
            name = self.cut.params["dataset"]
            maybe[name] = imported_rows(self.pool, self.cut.params["pool"], expect.get(name, {}))
        return expect, maybe

    def _dataset(self, name: str, base: dict, maybe: dict) -> None:
        folder = workspace.dataset_dir(name)
        try:
            df = workspace.read_manifest(name)
        except Exception as exc:  # noqa: BLE001 - any failure to read is the finding
            return self.fail("manifest unreadable", f"{name}: {type(exc).__name__}: {exc}")
        have = manifest_fields(df)
        if len(have) != len(df) or df["path"].duplicated().any():
            self.fail("row lost or unknown", f"{name}: the manifest lists an image twice")
        extra = set(have) - set(base)
        if maybe and extra == set(maybe):
            base = {**base, **maybe}  # the import cut short went through whole
        elif extra & set(maybe):
            self.fail("import half-applied", f"{name}: {len(extra & set(maybe))} of {len(maybe)} rows of the "
                                             f"cut-short import (op {self.cut.index})")
        if extra - set(maybe):
            self.fail("row lost or unknown", f"{name}: {len(extra - set(maybe))} rows no operation made")
        if set(base) - set(have):
            self.fail("row lost or unknown", f"{name}: {len(set(base) - set(have))} imported rows are missing")
        self.accepted[name] = base
        self._files(name, folder, df)
        paths = dict(zip(df["hash"], df["path"]))
        by_path = dict(zip(df["path"], df["hash"]))
        want = replay(base, by_path, journal.in_force(name))
        common = {h: have[h] for h in have if h in want}
        if common != {h: want[h] for h in common}:
            self.fail(*self._mismatch(name, common, base, by_path, paths))

    def _files(self, name: str, folder, df) -> None:
        for rel, digest in zip(df["path"], df["hash"]):
            path = folder / rel
            if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != digest:
                self.fail("file missing or changed", f"{name}: {rel}")
        images = folder / "images"
        used = {str(folder / p) for p in df["path"]}
        orphans = [p.name for p in images.iterdir() if str(p) not in used] if images.is_dir() else []
        if orphans:
            self.fail("orphan image", f"{name}: {len(orphans)} files no row refers to, e.g. {orphans[0]}")

    def _mismatch(self, name, have, base, by_path, paths) -> tuple[str, str]:
        """Name the way the manifest and journal disagree: an entry without its change, or the reverse."""
        hist = journal.history(name)
        want = replay(base, by_path, journal.in_force(name))
        detail = f"{name}: " + _diff(have, want, paths)
        if hist and have == {h: v for h, v in replay(base, by_path, force_order(hist[:-1])).items() if h in have}:
            return "phantom journal entry", f"{detail} (entry {hist[-1].get('id')} {hist[-1].get('action')} " \
                                            "is journaled but not in the manifest)"
        cut = self.cut
        if cut and cut.kind in ("undo", "redo") and cut.params.get("target") is not None:
            made_up = hist + [{"id": -1, "action": cut.kind, "target": cut.params["target"]}]
            if have == {h: v for h, v in replay(base, by_path, force_order(made_up)).items() if h in have}:
                return "unjournaled change", f"{detail} (the manifest has the {cut.kind} of entry " \
                                             f"{cut.params['target']}, the journal does not)"
        return "manifest differs from journal replay", detail

    def _journal(self) -> None:
        hist, prefix = journal.history(MAIN), self.known.history
        if hist[:len(prefix)] != prefix:
            self.fail("journal rewritten", f"the {len(prefix)} entries known before the trial changed")
        later = {e.get("id"): e for e in hist[len(prefix):]}
        force = [e.get("id") for e in force_order(prefix)]
        acked_ids = set()
        for op in self.acked:
            entry_id = (op.out or {}).get("entry")
            if op.kind not in JOURNALED or op.refused or entry_id is None:
                continue
            acked_ids.add(entry_id)
            entry = later.get(entry_id)
            if entry is None or not _matches(op, entry):
                self.fail("acknowledged edit lost", f"op {op.index} {op.kind} was acknowledged as entry {entry_id}; "
                                                    f"the journal has {entry and journal.describe(entry)}")
            if op.kind in EDITS or op.kind == "redo":
                force.append(entry_id if op.kind in EDITS else op.params["target"])
            else:
                force = [i for i in force if i != op.params["target"]]
        self._unacknowledged(later, acked_ids, force)

    def _unacknowledged(self, later: dict, acked_ids: set, force: list) -> None:
        cut = self.cut
        extra = [i for i in later if i not in acked_ids]
        from_cut = [i for i in extra if cut and cut.kind in JOURNALED and later[i].get("action") == cut.kind]
        own = [i for i in extra if later[i].get("action") not in JOURNALED + ("purge",)]  # the engine's own records
        if len(from_cut) > 1 or set(extra) - set(from_cut[:1]) - set(own):
            self.fail("unexpected journal entry", f"entries {extra} were never acknowledged")
        actual = {e.get("id") for e in journal.in_force(MAIN)}
        missing, surplus = set(force) - actual, actual - set(force)
        if cut and cut.kind == "undo":
            missing.discard(cut.params.get("target"))
        if cut and cut.kind in EDITS:
            surplus -= set(from_cut)
        if cut and cut.kind == "redo":
            surplus.discard(cut.params.get("target"))
        if missing:
            self.fail("acknowledged edit lost", f"acknowledged edits {sorted(missing)} are no longer in force")
        if surplus:
            self.fail("unexpected journal entry", f"edits {sorted(surplus)} are in force, though not acknowledged")

    def _imports_recorded(self, present: set) -> None:
        for op in self.acked:
            name = op.params.get("dataset")
            if op.kind in IMPORTS and not op.refused and name in present:
                sources = {r.get("source") for r in workspace.read_jsonl(workspace.dataset_dir(name) / "imports.jsonl")}
                if op.params["source"] not in sources:
                    self.fail("acknowledged import unrecorded", f"{name}: op {op.index} is not in imports.jsonl")

    def _caches(self) -> None:
        self.violations.extend(("cache entry unreadable", p) for p in unreadable_cache_files())


def _matches(op: Op, entry: dict) -> bool:
    same_paths = sorted(c.get("path") for c in entry.get("changes") or []) == sorted(op.out.get("changed") or [])
    if op.kind in ("undo", "redo"):
        return entry.get("action") == op.kind and entry.get("target") == op.params["target"] and same_paths
    value_ok = op.kind in ("exclude", "restore") or entry.get("value") == op.params["value"]
    return entry.get("action") == op.kind and value_ok and same_paths


def unreadable_cache_files() -> list[str]:
    """Cache files that do not load: thumbnails that are not square JPEGs, arrays np.load refuses."""
    root, bad = workspace.home() / "cache", []
    for path in root.rglob("*.jpg"):
        try:
            with Image.open(path) as img:
                img.load()
                if img.format != "JPEG" or img.width != img.height:
                    bad.append(f"{path.relative_to(root)}: {img.format} {img.size}")
        except Exception as exc:  # noqa: BLE001 - whatever stops it loading is the finding
            bad.append(f"{path.relative_to(root)}: {exc}")
    for meta in root.rglob("store.json"):  # chunked stores of decoded images and features: every record reads
        try:
            store = cachestore.open_store(meta.parent.parent.name, meta.parent.name).refresh()
            store.read(np.array(sorted(store.slots.values()), dtype=np.int64))
        except Exception as exc:  # noqa: BLE001
            bad.append(f"{meta.parent.relative_to(root)}: {exc}")
    for path in root.rglob("*.npy"):
        try:
            arr = np.load(path, allow_pickle=False)
            if path.parent.parent.name == "decoded" and arr.shape[1:] != (arr.shape[0], 3):
                bad.append(f"{path.relative_to(root)}: shape {arr.shape}")
        except Exception as exc:  # noqa: BLE001
            bad.append(f"{path.relative_to(root)}: {exc}")
    return bad


def temp_files() -> list[str]:
    """Temporary files of interrupted atomic writes (and import lock drafts) still lying in the workspace; the
    cleanup leaves them for an hour, as a write still going on may own them."""
    root = workspace.home()
    found = list(root.rglob(".*.tmp")) + list(workspace.datasets_dir().glob(".claim-*"))
    return [str(p.relative_to(root)) for p in found]


def undo_redo_roundtrip(name: str) -> str | None:
    """Undo then redo (or redo then undo) the next edit; what changed in the manifest, or None."""
    before = manifest_fields(workspace.read_manifest(name))
    pending = journal.pending(name)
    order = ("undo", "redo") if pending["undo"] else ("redo", "undo") if pending["redo"] else None
    if order is None:
        return None
    target = pending[order[0]]["id"]
    for kind in order:
        (journal.undo if kind == "undo" else journal.redo)(name)
    after = manifest_fields(workspace.read_manifest(name))
    if after == before:
        return None
    changed = [h for h in before if after.get(h) != before[h]]
    return f"{order[0]} then {order[1]} of entry {target} changed {len(changed)} rows, e.g. " \
           f"{before[changed[0]] if changed else ''} → {after.get(changed[0]) if changed else ''}"
