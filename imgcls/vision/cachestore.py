"""Fixed-size records (decoded squares, backbone features) kept in a few large files, keyed by content hash.

One store per (kind, preprocessing key), in `cache/<kind>/<key>/`:

- `store.json`: record shape, dtype and records per shard, written once when the first record arrives;
- `shard-00000.bin`, …: raw records back to back, read with `pread` (a reader opens a shard once and then
  pays one system call per run of neighbouring records, against an open + header parse + read per `.npy`
  file). Not memory maps: the pages a map touches count in the process's resident memory until the kernel
  wants them back, so reading 100,000 decoded images through maps made a run look 1.6 GB bigger at 64 px
  (25 GB at 256 px) for data it had already let go of;
- `index.log`: one line per record, `hash<TAB>slot<TAB>crc32-of-the-line`, appended after the record's
  bytes are written and fsynced, so a line only ever names a complete record.

Why an append-only index file and not SQLite: the only queries are "load the whole index" and "append a
few lines", which a text file answers with one read and one write; readers need no connection (so a
DataLoader worker, forked or spawned, reopens nothing but the shard files) and never take the lock; and
a torn last line is found by its checksum. Measured on a 2-core machine, 2,000 random records of 1,280
float32 out of 20,000, median of 5: 39 ms from this store, opening and parsing its whole index included,
against 141 ms from per-file `.npy` (tests/test_cachestore.py checks the store stays the faster).

Writers hold `workspace.file_lock`; under it they reread the index, cut off a torn tail left by a writer
killed mid-line, skip hashes another writer added meanwhile, and write new records at the next free slots
(so bytes a killed writer left past the last indexed slot are simply overwritten).

Old per-file caches (`<hash>.npy` in the same folder) are migrated: a hash missing from the store is
looked up there before anything is decoded or embedded, and moved in (the old file goes once the store
holds its record).
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

from imgcls.store import workspace

INDEX, META = "index.log", "store.json"
SHARD_BYTES = 1 << 30  # a shard holds at most 4,096 records or about 1 GiB, whichever is fewer


def read_chunk() -> int:
    """How many records one read takes from the shards at most (IMGCLS_READ_CHUNK, default 256)."""
    text = os.environ.get("IMGCLS_READ_CHUNK", "")
    return int(text) if text.isdigit() and int(text) > 0 else 256


def _line(digest: str, slot: int) -> bytes:
    body = f"{digest}\t{slot}"
    return f"{body}\t{zlib.crc32(body.encode()):08x}\n".encode()


def _parse(line: bytes) -> tuple[str, int] | None:
    try:
        digest, slot, crc = line.decode().split("\t")
        if int(crc, 16) != zlib.crc32(f"{digest}\t{slot}".encode()):
            return None
        return digest, int(slot)
    except (UnicodeDecodeError, ValueError):
        return None


class RecordStore:
    """Append-only store of equal-shaped arrays by hash: `lookup`, `read`, `append`, `fill`."""

    def __init__(self, root: Path, lock_name: str, lock_root: Path):
        self.root, self.lock_name, self.lock_root = Path(root), lock_name, Path(lock_root)
        self._reset()

    def _reset(self) -> None:
        self.meta: dict | None = None
        self.slots: dict[str, int] = {}
        self._offset = 0  # bytes of index.log parsed so far (all of them valid lines)
        self._files: dict[int, int] = {}  # shard → an open file descriptor

    def __getstate__(self) -> dict:
        """What a copy in another process needs to read by slot (a DataLoader worker): shard files are reopened
        there, and the hash → slot map (10 MB at 100k records) is reread from the index only if it is asked."""
        return {"root": self.root, "lock_name": self.lock_name, "lock_root": self.lock_root,
                "meta": self.meta, "slots": {}, "_offset": 0}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _files={})

    def __del__(self) -> None:
        for fd in getattr(self, "_files", {}).values():
            try:
                os.close(fd)
            except OSError:
                pass

    # --- reading -------------------------------------------------------------------------------------

    def refresh(self) -> RecordStore:
        """Take in what other processes appended since the last look."""
        if self.meta is None and (self.root / META).exists():
            self.meta = json.loads((self.root / META).read_text())
        try:
            with open(self.root / INDEX, "rb") as fh:
                fh.seek(self._offset)
                tail = fh.read()
        except FileNotFoundError:
            return self
        for raw in tail.split(b"\n")[:-1]:  # the piece after the last newline is unfinished
            entry = _parse(raw)
            if entry is None:
                break  # a torn line: nothing after it counts until a writer repairs it
            self.slots[entry[0]] = entry[1]
            self._offset += len(raw) + 1
        return self

    @property
    def record_shape(self) -> tuple[int, ...] | None:
        return tuple(self.meta["shape"]) if self.meta else None

    @property
    def dtype(self) -> np.dtype | None:
        return np.dtype(self.meta["dtype"]) if self.meta else None

    def lookup(self, digests: Iterable[str]) -> np.ndarray:
        """Slots of the hashes (-1 where missing)."""
        if not self.slots:
            self.refresh()  # a copy from another process, or a store nobody looked at yet
        return np.array([self.slots.get(d, -1) for d in digests], dtype=np.int64)

    def _fd(self, shard: int) -> int:
        fd = self._files.get(shard)
        if fd is None:
            fd = self._files[shard] = os.open(self.root / f"shard-{shard:05d}.bin", os.O_RDONLY)
        return fd

    def _read_rows(self, shard: int, rows: np.ndarray) -> np.ndarray:
        """Records at these rows of one shard, in that order: one pread per run of neighbouring rows."""
        size = self._record_bytes()
        order = np.argsort(rows, kind="stable")
        wanted = rows[order]
        out = np.empty((len(rows), *self.record_shape), dtype=self.dtype)
        flat = out.reshape(len(rows), -1).view(np.uint8)
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        fd = self._fd(shard)
        for run in np.split(np.arange(len(wanted)), breaks):
            first, count = int(wanted[run[0]]), int(wanted[run[-1]] - wanted[run[0]]) + 1
            data = os.pread(fd, count * size, first * size)
            if len(data) < count * size:
                raise KeyError(f"The cache in {self.root} lacks records it lists; delete the folder to rebuild it.")
            block = np.frombuffer(data, dtype=np.uint8).reshape(count, size)
            flat[order[run]] = block[wanted[run] - first]
        return out

    def _record_bytes(self) -> int:
        return int(np.prod(self.record_shape)) * self.dtype.itemsize

    def read(self, slots: np.ndarray, empty_shape: tuple[int, ...] = (), empty_dtype=np.uint8) -> np.ndarray:
        """The records at these slots, as one new array, read a chunk at a time."""
        slots = np.asarray(slots, dtype=np.int64)
        if self.meta is None:
            if len(slots):
                raise KeyError(f"The cache in {self.root} holds no records yet.")
            return np.zeros((0, *empty_shape), dtype=empty_dtype)
        out = np.empty((len(slots), *self.record_shape), dtype=self.dtype)
        per, step = self.meta["per_shard"], read_chunk()
        for start in range(0, len(slots), step):
            part = slots[start:start + step]
            shards, rows = part // per, part % per
            for shard in np.unique(shards):
                at = np.nonzero(shards == shard)[0]
                out[start + at] = self._read_rows(int(shard), rows[at])
        return out

    # --- writing -------------------------------------------------------------------------------------

    def append(self, digests: list[str], records: np.ndarray) -> None:
        """Add records under their hashes (those already present are skipped), durably, under the lock."""
        if not digests:
            return
        records = np.ascontiguousarray(records)
        with workspace.file_lock(self.lock_name, root=self.lock_root):
            self.root.mkdir(parents=True, exist_ok=True)
            self._repair()
            self._ensure_meta(records)
            if records.shape[1:] != self.record_shape or records.dtype != self.dtype:
                raise ValueError(f"Records of shape {records.shape[1:]} {records.dtype} do not fit the cache "
                                 f"in {self.root}, made for {self.record_shape} {self.dtype}.")
            seen, keep = set(), []
            for i, d in enumerate(digests):
                if d not in self.slots and d not in seen:
                    seen.add(d)
                    keep.append(i)
            if not keep:
                return
            first = len(self.slots)  # slots are handed out in order, so the next free one is the count
            self._write_records(first, records[keep])
            lines = b"".join(_line(digests[i], first + j) for j, i in enumerate(keep))
            with open(self.root / INDEX, "ab") as fh:
                fh.write(lines)
            self.refresh()

    def _repair(self) -> None:
        """Reread the index and cut off a torn tail (a writer killed mid-line) before appending after it."""
        self.refresh()
        path = self.root / INDEX
        if path.exists() and os.path.getsize(path) > self._offset:
            with open(path, "r+b") as fh:
                fh.truncate(self._offset)
        if len(set(self.slots.values())) != len(self.slots) or (self.slots and max(self.slots.values()) != len(self.slots) - 1):
            raise RuntimeError(f"The cache index {path} is inconsistent; delete the folder {self.root} to rebuild it.")

    def _ensure_meta(self, records: np.ndarray) -> None:
        if self.meta is not None:
            return
        record_bytes = int(np.prod(records.shape[1:])) * records.itemsize
        env = os.environ.get("IMGCLS_SHARD_RECORDS", "")
        per = int(env) if env.isdigit() and int(env) > 0 else max(1, min(4096, SHARD_BYTES // max(record_bytes, 1)))
        meta = {"shape": list(records.shape[1:]), "dtype": records.dtype.str, "per_shard": per}
        workspace.atomic_write_json(self.root / META, meta)
        self.meta = meta

    def _write_records(self, first: int, records: np.ndarray) -> None:
        per, size = self.meta["per_shard"], self._record_bytes()
        done = 0
        while done < len(records):
            slot = first + done
            shard, row = divmod(slot, per)
            count = min(per - row, len(records) - done)
            path = self.root / f"shard-{shard:05d}.bin"
            with open(path, "r+b" if path.exists() else "w+b") as fh:
                fh.seek(row * size)
                fh.write(records[done:done + count].tobytes())
                fh.flush()
                os.fsync(fh.fileno())  # the bytes are on disk before any index line names them
            done += count

    def legacy(self, digest: str) -> np.ndarray | None:
        """The record an old per-file cache holds for the hash (`<hash>.npy`), or None."""
        path = self.root / f"{digest}.npy"
        try:
            return np.load(path, allow_pickle=False) if path.exists() else None
        except (OSError, ValueError):
            return None


def open_store(kind: str, key: str) -> RecordStore:
    """The store of one cache kind ("decoded", "features") and key, in the current workspace."""
    root = workspace.cache_dir(kind) / key
    return RecordStore(root, f"cache-{kind}-{key}.lock", workspace.home()).refresh()


def migrate(store: RecordStore, digests: list[str]) -> list[str]:
    """Move old per-file records of these hashes into the store (their files go once it holds them); return
    the hashes still missing."""
    missing, found, arrays = [], [], []
    for d in dict.fromkeys(digests):
        if d in store.slots:
            continue
        arr = store.legacy(d)
        if arr is None or (store.meta and (arr.shape != store.record_shape)):
            missing.append(d)
        else:
            found.append(d)
            arrays.append(arr)
    if found:
        shapes = {a.shape for a in arrays}
        if len(shapes) == 1:
            store.append(found, np.stack(arrays))
            for d in found:  # in the store now: the old file would only take disk space
                (store.root / f"{d}.npy").unlink(missing_ok=True)
        else:
            missing.extend(found)
    return missing


class RecordView:
    """Records of a store in a given order, read on demand: `len`, `v[i]` (one array), `v[idx]`/`v[mask]`/
    `v[a:b]` (a new array of just those), `v.subset(idx)` (another view), `np.asarray(v)` (all of them)."""

    def __init__(self, store: RecordStore, slots: np.ndarray, record_shape: tuple[int, ...] = (),
                 dtype=np.uint8):
        self.store, self.slots = store, np.asarray(slots, dtype=np.int64)
        self._shape, self._dtype = tuple(record_shape), np.dtype(dtype)  # for a store that is still empty

    def __len__(self) -> int:
        return len(self.slots)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.slots), *(self.store.record_shape or self._shape))

    @property
    def dtype(self) -> np.dtype:
        return self.store.dtype or self._dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def subset(self, index) -> RecordView:
        """A view of some of these records (positions, a boolean mask or a slice), reading nothing yet."""
        return RecordView(self.store, self.slots[index], self._shape, self._dtype)

    def __getitem__(self, index):
        if isinstance(index, tuple):
            head, rest = index[0], index[1:]
            first = self[head]
            return first[rest] if isinstance(head, (int, np.integer)) else first[(slice(None), *rest)]
        if isinstance(index, (int, np.integer)):
            return self.store.read(self.slots[[index]])[0]
        return self.store.read(self.slots[index], self._shape, self._dtype)

    def __array__(self, dtype=None, copy=None):
        out = self.store.read(self.slots, self._shape, self._dtype)
        return out if dtype is None else out.astype(dtype)

    def __iter__(self) -> Iterator[np.ndarray]:
        for batch in self.batches(read_chunk()):
            yield from batch

    def batches(self, size: int) -> Iterator[np.ndarray]:
        """The records in order, `size` at a time, as arrays."""
        for start in range(0, len(self.slots), size):
            yield self.store.read(self.slots[start:start + size], self._shape, self._dtype)


def subset(images, index):
    """Some of the images without copying them: a view of a view, numpy's own indexing of an array."""
    return images.subset(index) if isinstance(images, RecordView) else images[index]
