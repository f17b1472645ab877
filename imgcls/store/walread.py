"""Read a SQLite store whose write-ahead log is still pending, without writing a byte: for a full disk.

SQLite in WAL mode needs its shared-memory index file to open a database, and on a full disk that file
cannot be made or grown. When the log holds commits not yet copied into the database file (a process was
killed before it closed the store), the database file alone is out of date. This module builds the
committed state in memory instead: the database file's pages, overlaid with the log's frames up to its
last valid commit (frames are checked by their salts and cumulative checksums, as SQLite does on
recovery), then handed to `sqlite3.Connection.deserialize`.
"""

from __future__ import annotations

import sqlite3
import struct
from pathlib import Path

HEADER, FRAME_HEADER = 32, 24
MAGIC = {0x377F0682: "<", 0x377F0683: ">"}  # the checksums' byte order


def _checksum(data: bytes, order: str, s0: int, s1: int) -> tuple[int, int]:
    words = struct.unpack(f"{order}{len(data) // 4}I", data)
    for i in range(0, len(words), 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return s0, s1


def committed_pages(wal: bytes) -> tuple[int, dict[int, bytes], int]:
    """(page size, page number → content, pages in the database) as of the log's last valid commit;
    (0, {}, 0) when the log holds no commit."""
    if len(wal) < HEADER or struct.unpack(">I", wal[:4])[0] not in MAGIC:
        return 0, {}, 0
    order = MAGIC[struct.unpack(">I", wal[:4])[0]]
    page_size, salts = struct.unpack(">I", wal[8:12])[0], wal[16:24]
    s0, s1 = _checksum(wal[:24], order, 0, 0)
    if (s0, s1) != struct.unpack(">II", wal[24:32]):
        return 0, {}, 0
    pages: dict[int, bytes] = {}
    committed: dict[int, bytes] = {}
    size = 0
    at = HEADER
    while at + FRAME_HEADER + page_size <= len(wal):
        head, body = wal[at:at + FRAME_HEADER], wal[at + FRAME_HEADER:at + FRAME_HEADER + page_size]
        number, commit = struct.unpack(">II", head[:8])
        if head[8:16] != salts:
            break  # a frame of an earlier generation of the log
        s0, s1 = _checksum(head[:8] + body, order, s0, s1)
        if (s0, s1) != struct.unpack(">II", head[16:24]):
            break  # torn or stale: nothing after it counts
        pages[number] = body
        if commit:
            committed, size = dict(pages), commit
        at += FRAME_HEADER + page_size
    return page_size, committed, size


def open_in_memory(db: Path) -> sqlite3.Connection:
    """A read-only in-memory copy of the store at `db` as its last commit left it (log included)."""
    image = bytearray(Path(db).read_bytes())
    wal = Path(f"{db}-wal")
    page_size, pages, size = committed_pages(wal.read_bytes() if wal.exists() else b"")
    if pages:
        image.extend(b"\0" * max(size * page_size - len(image), 0))
        del image[size * page_size:]
        for number, body in pages.items():
            if number <= size:
                image[(number - 1) * page_size:number * page_size] = body
    if len(image) >= 20:
        image[18:20] = b"\x01\x01"  # mark the copy as not in WAL mode: it has no log of its own
    conn = sqlite3.connect(":memory:")
    conn.deserialize(bytes(image))
    return conn
