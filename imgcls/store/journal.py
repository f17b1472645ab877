"""Edits to a dataset's annotations, each one recorded in an append-only journal so it can be undone.

An edit changes one manifest field (label, excluded, split or note) for a set of images. It is made
under the dataset's lock, in one transaction of the dataset's store that reads the edited rows fresh,
writes only those that change and appends the journal entry (`imgcls.store.editlog`): a crash leaves the
whole edit or nothing, and its cost does not grow with the dataset. Two tabs or processes editing at once are serialised, so neither loses the other's work, and an
edit made on what a page showed is refused when another edit has changed those images since. Undo and
redo are journal entries too; undo restores an image only where its value is still the one the edit set,
so it never overwrites a later edit made elsewhere.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

from imgcls.store import editlog, manifestquery, manifeststore as store, stale, workspace
from imgcls.store.editlog import plain as _plain, same as _same
from imgcls.store.workspace import WorkspaceError

FIELDS = {"relabel": "label", "exclude": "excluded", "restore": "excluded", "move": "split", "note": "note"}
MAX_LABEL = 64
MAX_NOTE = 500


class EditRefused(WorkspaceError):
    """An edit that cannot be made (an empty or invalid class name, an unknown split, images changed since
    the page showed them …)."""


@dataclass
class EditResult:
    """What one edit did: the journal entry, the images changed, those already so, those gone."""

    action: str
    entry: int | None = None
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # undo/redo: edited again since, left as is

    @property
    def message(self) -> str:
        """One plain sentence for the user."""
        verb = {"relabel": "Relabelled", "exclude": "Excluded", "restore": "Restored", "move": "Moved",
                "note": "Noted", "undo": "Undid the edit on", "redo": "Redid the edit on",
                "purge": "Deleted"}.get(self.action, self.action)
        text = f"{verb} {_count(len(self.changed))}."
        if self.unchanged:
            text += f" {_count(len(self.unchanged))} already so."
        if self.skipped:
            text += f" {_count(len(self.skipped))} left as is: edited again since."
        if self.missing:
            text += f" {_count(len(self.missing))} no longer in the dataset: " + ", ".join(self.missing[:3])
            text += " …" if len(self.missing) > 3 else ""
        return text


def _count(n: int) -> str:
    return f"{n:,} image" + ("" if n == 1 else "s")


def check_label(label) -> str:
    """A cleaned class name, or EditRefused saying why it cannot be one (the rule is names.check_class_name)."""
    from imgcls.store import names

    try:
        return names.check_class_name(label)
    except names.NameRefused as exc:
        raise EditRefused(str(exc)) from None


def _value(action: str, value):
    if action == "relabel":
        return check_label(value)
    if action in ("exclude", "restore"):
        return action == "exclude"
    if action == "move":
        if value not in workspace.SPLITS:
            raise EditRefused(f"'{value}' is not a split: choose one of {', '.join(workspace.SPLITS)}.")
        return value
    if action == "note":
        text = str(value or "").strip()
        if len(text) > MAX_NOTE:
            raise EditRefused(f"A note can hold at most {MAX_NOTE} characters.")
        return text
    raise EditRefused(f"Unknown edit '{action}'.")


def journal_path(name: str) -> Path:
    """The dataset's journal file."""
    return editlog.journal_path(name)


def history(name: str) -> list[dict]:
    """Every journal entry, oldest first; an edit a crash left half made is settled first."""
    editlog.settle(name)
    return editlog.entries(name)


def recover(name: str) -> None:
    """Bring the manifest up to the journal after a crash between their writes (see imgcls.store.editlog); every
    read of the manifest or the journal does this itself first."""
    editlog.settle(name)


def _stacks(entries: list[dict]) -> tuple[list[int], list[int]]:
    """Ids that can be undone (last = next) and redone (last = next)."""
    done, undone = [], []
    for e in entries:
        act = e.get("action")
        if act in FIELDS:
            done.append(e["id"])
            undone.clear()
        elif act == "undo" and e.get("target") in done:
            done.remove(e["target"])
            undone.append(e["target"])
        elif act == "redo" and e.get("target") in undone:
            undone.remove(e["target"])
            done.append(e["target"])
        elif act == "purge":  # files are gone for good: nothing before a purge can be undone or redone
            done.clear()
            undone.clear()
    return done, undone


def edit(name: str, action: str, paths, value=None, *, source: str = "review", expect=None) -> EditResult:
    """Apply one edit (relabel, exclude, restore, move, note) to the images at `paths`.

    With `expect` (path → the value of the edited field the page showed), refuse the whole edit with
    EditRefused when one of those images holds another value now: changed in another tab meanwhile."""
    if action not in FIELDS:
        raise EditRefused(f"Unknown edit '{action}'.")
    value, col = _value(action, value), FIELDS[action]
    result = EditResult(action)
    entry = None
    wanted = list(dict.fromkeys(str(p) for p in paths))
    asked = {"action": action, "value": value, "changes": wanted}  # what a failure before the read names
    with editlog.editing(name, lambda: f"this edit ({describe(entry or asked)})") as conn:
        df = manifestquery.rows_by_paths(name, wanted, columns=["path", col, "source"], conn=conn)
        current = dict(zip(df["path"], df[col]))
        edited = set(wanted)
        shown = {str(p): v for p, v in (expect or {}).items() if str(p) in edited}
        refusal = stale.refusal(name, df, col, shown)
        if refusal:
            raise EditRefused(refusal)
        changes = []
        for path in wanted:
            if path not in current:
                result.missing.append(path)
            elif _same(current[path], value):
                result.unchanged.append(path)
            else:
                changes.append({"path": path, "before": _plain(current[path]), "after": value})
                result.changed.append(path)
        if changes:
            result.entry = store.next_id(conn)
            entry = {"id": result.entry, "time": _now(), "action": action, "field": col, "value": value,
                     "source": source, "changes": changes}
            store.add_entry(conn, entry)
            store.set_values(conn, col, {c["path"]: value for c in changes})
    return result


def _now() -> str:
    return workspace.now()


def _next_id(entries: list[dict]) -> int:
    return (max(e.get("id", 0) for e in entries) + 1) if entries else 1


def _step(name: str, kind: str, expect: int | None = None) -> EditResult | None:
    """Undo or redo the next edit in line; None when there is nothing to do."""
    result = EditResult(kind)
    target = None
    with editlog.editing(name, lambda: f"this {kind} ({describe(target)})" if target else f"this {kind}") as conn:
        done, undone = _stacks(store.entry_heads(name, conn))  # under the lock: the journal the rows follow
        stack = done if kind == "undo" else undone
        if not stack:
            return None
        target = store.entries_by_id(name, [stack[-1]], conn)[stack[-1]]
        if expect is not None and target["id"] != expect:
            raise EditRefused(f"Another edit was made meanwhile (in another tab?): {kind} would now "
                              f"{kind} '{describe(target)}'. Press {kind.capitalize()} again if that is what you want.")
        col = target["field"]
        df = manifestquery.rows_by_paths(name, [c["path"] for c in target["changes"]], columns=["path", col], conn=conn)
        current = dict(zip(df["path"], df[col]))
        want, have = ("before", "after") if kind == "undo" else ("after", "before")
        changes = []
        for c in target["changes"]:
            if c["path"] not in current:
                result.missing.append(c["path"])
            elif not _same(current[c["path"]], c[have]):
                result.skipped.append(c["path"])
            else:
                changes.append({"path": c["path"], "before": c[have], "after": c[want]})
                result.changed.append(c["path"])
        result.entry = store.next_id(conn)
        store.add_entry(conn, {"id": result.entry, "time": _now(), "action": kind, "target": target["id"],
                               "field": col, "source": "review", "changes": changes})
        store.set_values(conn, col, {c["path"]: c["after"] for c in changes})
    return result


def undo(name: str, expect: int | None = None) -> EditResult | None:
    """Undo the latest edit not yet undone (from any tab or process); None when there is none.

    With `expect` (the entry id the button showed), refuse when another edit has become the latest."""
    return _step(name, "undo", expect)


def redo(name: str, expect: int | None = None) -> EditResult | None:
    """Redo the latest undone edit, unless a new edit was made since; None when there is none."""
    return _step(name, "redo", expect)


def describe(entry: dict) -> str:
    """A short phrase for a journal entry ('relabel 3 images to cat')."""
    n = len(entry.get("changes", []))
    act, value = entry.get("action"), entry.get("value")
    detail = {"relabel": f" as '{value}'", "move": f" to {value}", "note": f": '{value}'"}.get(act, "")
    return f"{act} {_count(n)}{detail}"


def in_force(name: str, upto: int | None = None) -> list[dict]:
    """The edits whose effect stands (made or redone, not undone), in the order they now apply; each copy
    carries `applied_at`, the time of the edit or of its latest redo. With `upto`, as they stood just after
    journal entry `upto` (a dataset version's position)."""
    entries = [e for e in history(name) if upto is None or int(e.get("id", 0)) <= upto]
    by_id = {e.get("id"): e for e in entries}
    applied: list[tuple[int, str]] = []
    for e in entries:  # as _stacks, but a purge stays in line: it removed files for good
        act = e.get("action")
        if act in FIELDS or act == "purge":
            applied.append((e["id"], e.get("time", "")))
        elif act == "undo":
            applied = [(i, t) for i, t in applied if i != e.get("target")]
        elif act == "redo":
            applied.append((e.get("target"), e.get("time", "")))
    return [{**by_id[i], "applied_at": t} for i, t in applied if i in by_id]


def pending(name: str) -> dict:
    """What undo and redo would do next: {'undo': entry|None, 'redo': entry|None}."""
    editlog.settle(name)
    done, undone = _stacks(store.entry_heads(name))
    nxt = {"undo": done[-1] if done else None, "redo": undone[-1] if undone else None}
    by_id = store.entries_by_id(name, nxt.values())
    return {kind: by_id.get(i) for kind, i in nxt.items()}


def latest(name: str, last: int) -> tuple[list[dict], int]:
    """The `last` newest journal entries, oldest first, and how many there are in all."""
    editlog.settle(name)
    return store.latest_entries(name, last)


def purge_excluded(name: str, paths=None) -> EditResult:
    """Remove excluded images from the dataset and their files from disk (this cannot be undone).

    With `paths` (what the user confirmed), only those of them still excluded go; others are left."""
    result = EditResult("purge")
    folder = workspace.dataset_dir(name)
    wanted = {"excluded": True} if paths is None else {"excluded": True, "paths": list(map(str, paths))}
    with workspace.dataset_lock(name):
        asked = manifestquery.count_rows(name, **wanted)  # what a failure before the read names
        with editlog.editing(name, lambda: f"the deletion of {_count(len(result.changed) or asked)}") as conn:
            gone = manifestquery.page_rows(name, 0, -1, wanted, columns=["path"])["path"].tolist()
            if not gone:
                return result
            result.changed = gone
            result.entry = store.next_id(conn)
            store.add_entry(conn, {"id": result.entry, "time": _now(), "action": "purge", "field": "excluded",
                                   "source": "review", "changes": [{"path": p, "before": True, "after": None}
                                                                   for p in gone]})
            store.delete_rows(conn, gone)
        store.remove_doomed(folder)  # only once the rows no longer list them
        store.export_csv(folder)  # rows went: the exported table follows at once
    return result


def to_csv(name: str) -> str:
    """The journal as CSV: one row per image changed by each entry."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["entry", "time", "action", "target", "field", "path", "before", "after", "source"])
    for e in history(name):
        for c in e.get("changes", []) or [{}]:
            writer.writerow([e.get("id"), e.get("time"), e.get("action"), e.get("target", ""), e.get("field"),
                             c.get("path", ""), c.get("before", ""), c.get("after", ""), e.get("source", "")])
    return out.getvalue()
