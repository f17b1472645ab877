"""Stale edits: an edit made on what a page showed, after another tab or edit has changed those images.

The page passes the values it showed (`journal.edit(..., expect={path: value})`); when one of them is no
longer the image's value, the edit is refused with a sentence saying what the image holds now and when the
journal gave it that value.
"""

from __future__ import annotations

import datetime

import pandas as pd

from imgcls.store import editlog


def refusal(name: str, df: pd.DataFrame, col: str, shown: dict) -> str | None:
    """Why an edit of field `col` on images the page showed as `shown` (path → value) must be refused, or
    None when each still holds the value shown."""
    current = dict(zip(df["path"], df[col]))
    stale = [p for p, value in shown.items() if p in current and not editlog.same(current[p], _as_field(col, value))]
    if not stale:
        return None
    path, now = stale[0], editlog.plain(current[stale[0]])
    source = df.loc[df["path"] == path, "source"].iloc[0]
    file = f"'{source or path}'"  # the file as the user imported it
    at = _changed_at(name, path, col, now)
    words = {"label": f"'{now}'", "excluded": "excluded" if now else "not excluded",
             "split": f"the {now} split", "note": f"the note '{now}'" if now else "no note"}[col]
    who = f"in another tab or by another edit{f' at {at}' if at else ''} since this page showed "
    if len(stale) == 1:
        text = f"{file} was changed to {words} {who}it"
    else:
        text = f"{len(stale):,} of these images were changed {who}them ({file} to {words})"
    return f"{text}; look again and repeat the edit if you still want it."


def _as_field(col: str, value):
    """A value as a page may hold it ('True', numpy bool, None) as the manifest field holds it."""
    if col == "excluded":
        return value if isinstance(value, bool) else str(editlog.plain(value)).strip().lower() in ("true", "1")
    return "" if value is None else str(editlog.plain(value))


def _changed_at(name: str, path: str, col: str, now) -> str:
    """When the journal's latest entry gave the image its present value ('14:02'; with the day if not today)."""
    for e in reversed(editlog.entries(name)):
        if e.get("field") == col and any(c.get("path") == path and editlog.same(c.get("after"), now)
                                         for c in e.get("changes") or []):
            try:
                moment = datetime.datetime.fromisoformat(str(e.get("time")))
            except ValueError:
                return ""
            return moment.strftime("%H:%M" if moment.date() == datetime.date.today() else "%Y-%m-%d %H:%M")
    return ""
