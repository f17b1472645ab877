"""The reads the pages need from a dataset's store (`manifeststore`): counts, class counts, sizes, one page
of rows, rows by path. Each is one indexed query, so a page costs the same at 100,000 images as at 100."""

from __future__ import annotations

import contextlib
import sqlite3
from typing import TYPE_CHECKING, Iterable

from imgcls.store import manifeststore as ms

if TYPE_CHECKING:
    import pandas as pd


def _where(filters: dict | None) -> tuple[str, list]:
    """SQL condition and values for filters: label, split (text), excluded (True/False; None = both)."""
    clauses, values = [], []
    for key in ("label", "split"):
        if (filters or {}).get(key) not in (None, ""):
            clauses.append(f"{key} = ?")
            values.append(str(filters[key]))
    excluded = (filters or {}).get("excluded")
    if excluded is not None:
        clauses.append("excluded = ?")
        values.append(bool(excluded))
    paths = (filters or {}).get("paths")
    if paths is not None:
        clauses.append("path IN (SELECT path FROM temp.wanted)")
    unwanted = (filters or {}).get("not_paths")
    if unwanted:
        clauses.append("path NOT IN (SELECT path FROM temp.unwanted)")
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", values


def _stage(conn: sqlite3.Connection, filters: dict | None) -> None:
    """Put the filters' path lists into temporary tables of this connection."""
    for key, table in (("paths", "wanted"), ("not_paths", "unwanted")):
        paths = (filters or {}).get(key)
        if paths is not None:
            conn.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (path TEXT PRIMARY KEY)")
            conn.execute(f"DELETE FROM temp.{table}")
            conn.executemany(f"INSERT OR IGNORE INTO temp.{table} VALUES (?)", ((str(p),) for p in paths))


def count_rows(name, **filters) -> int:
    """How many rows match the filters (label=, split=, excluded=True/False, paths=[…], not_paths=[…])."""
    with ms.reading(name) as conn:
        _stage(conn, filters)
        where, values = _where(filters)
        return int(conn.execute("SELECT COUNT(*) FROM rows" + where, values).fetchone()[0])


def position(name, path: str, filters: dict | None = None) -> int | None:
    """Where the row at `path` stands among the rows matching `filters` in import order (0 = first), or None
    when it does not match them: two indexed queries, not a read of the matching paths."""
    with ms.reading(name) as conn:
        _stage(conn, filters)
        where, values = _where(filters)
        found = conn.execute(f"SELECT ord FROM rows{where}{' AND' if where else ' WHERE'} path = ? LIMIT 1",
                             [*values, str(path)]).fetchone()
        if found is None:
            return None
        return int(conn.execute(f"SELECT COUNT(*) FROM rows{where}{' AND' if where else ' WHERE'} ord < ?",
                                [*values, found[0]]).fetchone()[0])


def class_counts(name) -> list[tuple[str, str, bool, int]]:
    """(label, split, excluded, images) for every combination present, sorted."""
    with ms.reading(name) as conn:
        return [(str(lb), str(sp), bool(ex), int(n)) for lb, sp, ex, n in conn.execute(
            "SELECT label, split, excluded, COUNT(*) FROM rows GROUP BY label, split, excluded "
            "ORDER BY label, split, excluded")]


def size_counts(name, excluded: bool | None = False) -> list[tuple[int, int, int]]:
    """(width, height, images) of the rows (kept ones by default), one per size."""
    where, values = _where({"excluded": excluded})
    with ms.reading(name) as conn:
        return [tuple(r) for r in conn.execute(
            f"SELECT width, height, COUNT(*) FROM rows{where} GROUP BY width, height", values)]


ORDERS = {"import": "ord", "path": "path, ord", "source": "source, ord"}


def page_rows(name, offset: int = 0, limit: int = 24, filters: dict | None = None,
              order: str = "import", columns=None) -> pd.DataFrame:
    """One page of the rows matching `filters` (see count_rows), in `order` ('import', 'path', 'source')."""
    if order not in ORDERS:
        raise ValueError(f"unknown order '{order}': one of {', '.join(ORDERS)}")
    with ms.reading(name) as conn:
        _stage(conn, filters)
        where, values = _where(filters)
        sql, cols = ms.select_sql(columns)
        return ms.as_frame(conn.execute(f"{sql}{where} ORDER BY {ORDERS[order]} LIMIT ? OFFSET ?",
                                   [*values, int(limit), max(int(offset), 0)]), cols)


def rows_by_paths(name, paths: Iterable[str], columns=None, conn: sqlite3.Connection | None = None) -> pd.DataFrame:
    """The rows at `paths` (those still in the dataset), in the order the paths were given."""
    import pandas as pd

    wanted = list(dict.fromkeys(str(p) for p in paths))
    sql, cols = ms.select_sql(columns if columns is None or "path" in columns else ["path", *columns])
    parts = []
    with (contextlib.nullcontext(conn) if conn is not None else ms.reading(name)) as db:
        for i in range(0, len(wanted), ms.CHUNK):
            chunk = wanted[i:i + ms.CHUNK]
            parts.append(ms.as_frame(db.execute(f"{sql} WHERE path IN ({', '.join('?' * len(chunk))})",
                                           chunk), cols))
    if not parts:
        return ms.as_frame(iter(()), cols)
    df = pd.concat(parts, ignore_index=True)
    if len(df) > 1:  # (no ORDER BY: the planner would walk the whole table by ord) in the order asked for
        where = {p: i for i, p in enumerate(wanted)}
        df = df.iloc[df["path"].map(where).argsort(kind="stable")].reset_index(drop=True)
    return df


def labels(name) -> list[str]:
    """Every class name in the dataset (excluded images too), sorted."""
    with ms.reading(name) as conn:
        return [str(r[0]) for r in conn.execute("SELECT DISTINCT label FROM rows ORDER BY label")]


def has_paths(name, paths: Iterable[str]) -> set[str]:
    """Those of `paths` still in the dataset."""
    return set(rows_by_paths(name, paths, columns=["path"])["path"])
