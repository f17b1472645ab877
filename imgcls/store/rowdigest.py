"""Two summaries of a dataset's rows (path, hash, label, split, excluded), kept in its store's meta table.

`digest`: `versions.manifest_digest` of the rows, the key of a dataset version (what a run trained on). It
hashes every row in path order, so it is made again, whole, after each change, once, when asked.

`fingerprint`: the sum, modulo 2^256, of one SHA-256 per row. The sum does not depend on the order, so an
edit keeps it up to date by taking out the terms of the rows it changes and adding their new ones, in its own
transaction: what a page asks on every rerun ("has the dataset changed since the health check?") costs one
read at 100,000 images, where the digest would hash them all after each edit. It is made whole once, the first
time it is asked, and after an import replaced the rows.
"""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3

from imgcls.store import manifeststore as ms

FIELDS = ("label", "split", "excluded")  # the editable fields the summaries cover (path and hash never change)
MOD = 1 << 256
ROWS = "SELECT path, hash, label, split, excluded FROM rows"


def _line(path, hash_, label, split, excluded) -> str:
    """A row as the digest hashes it: fields as pandas writes them with astype(str)."""
    return "\t".join(("" if v is None else str(v)) for v in (path, hash_, label, split)) + "\t" + str(bool(excluded))


def _term(row) -> int:
    return int.from_bytes(hashlib.sha256(_line(*row).encode("utf-8")).digest(), "big")


def _terms(conn: sqlite3.Connection, paths: list[str]) -> int:
    total = 0
    for i in range(0, len(paths), ms.CHUNK):
        chunk = paths[i:i + ms.CHUNK]
        total += sum(_term(r) for r in conn.execute(f"{ROWS} WHERE path IN ({', '.join('?' * len(chunk))})", chunk))
    return total


@contextlib.contextmanager
def kept_up(conn: sqlite3.Connection, paths: list[str]):
    """Around a change to the rows at `paths`, inside the caller's transaction: the stored fingerprint (if one
    is stored yet) follows it."""
    stored = ms.meta_value(conn, "fingerprint") if paths else None
    before = _terms(conn, list(paths)) if stored is not None else 0
    yield
    if stored is not None:
        value = (int(stored, 16) - before + _terms(conn, list(paths))) % MOD
        conn.execute("UPDATE meta SET value = ? WHERE key = 'fingerprint'", (format(value, "064x"),))


def fingerprint(name_or_folder) -> str:
    """The rows' fingerprint (64 hex digits): equal for the same rows, whatever their order; one read once made."""
    folder = ms.folder_of(name_or_folder)
    with ms.reading(folder) as conn:
        conn.execute("BEGIN")  # rows and counter from one snapshot
        stored = ms.meta_value(conn, "fingerprint")
        if stored is not None:
            conn.execute("COMMIT")
            return str(stored)
        changes = int(ms.meta_value(conn, "changes"))
        value = format(sum(_term(r) for r in conn.execute(ROWS)) % MOD, "064x")
        conn.execute("COMMIT")
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA busy_timeout = 200")  # kept for later reads: skipped when busy or full
            # only if no edit committed meanwhile: an edit made while none was stored did not add its terms
            conn.execute("INSERT OR IGNORE INTO meta SELECT 'fingerprint', ? WHERE "
                         "(SELECT value FROM meta WHERE key = 'changes') = ?", (value, changes))
    return value


def digest(name_or_folder) -> str:
    """`versions.manifest_digest` of the dataset's rows as they stand, computed once per change (kept in the
    store keyed by its change counter)."""
    folder = ms.folder_of(name_or_folder)
    with ms.reading(folder) as conn:
        conn.execute("BEGIN")
        changes = int(ms.meta_value(conn, "changes"))
        cached = ms.meta_value(conn, "digest")
        if cached and str(cached).startswith(f"{changes}:"):
            conn.execute("COMMIT")
            return str(cached).split(":", 1)[1]
        sha = hashlib.sha256()
        first = True
        for row in conn.execute(f"{ROWS} ORDER BY path, ord"):  # the same text manifest_digest hashes
            sha.update((("" if first else "\n") + _line(*row)).encode("utf-8"))
            first = False
        conn.execute("COMMIT")
        value = sha.hexdigest()
        with contextlib.suppress(sqlite3.Error):
            conn.execute("PRAGMA busy_timeout = 200")  # only a shortcut for later reads: skipped when busy
            conn.execute("INSERT OR REPLACE INTO meta SELECT 'digest', ? WHERE "
                         "(SELECT value FROM meta WHERE key = 'changes') = ?", (f"{changes}:{value}", changes))
    return value
