"""Review page widgets: shared keys and messages, gallery filters, undo/redo and the history."""

from __future__ import annotations

from datetime import datetime
from functools import partial

import streamlit as st

from imgcls.store import journal, manifestquery
from imgcls.store.workspace import WorkspaceError
from imgcls.ui.common.text import plain
from imgcls.ui.data import rows as dataset_rows
from imgcls.ui.review import filtered as review_filtered

# Session-state keys of this page (plain strings, small values). Filters and the page number are
# widgets kept with persist_state, so they survive a visit to another page; their keys carry the
# dataset name, so each dataset keeps its own.
NOTICE = "review.notice"  # {"kind", "text", "where"}: the last edit's outcome, shown once
REDRAW = "review.redraw"  # set by an edit (or a view change) made in a fragment: draw the whole page again
MODE = "review.mode"  # "gallery" or "one": many thumbnails, or one big image at a time
KEEP = "session"
ALL = ""  # the "no filter" value of the class, split and finding filters
MODES = {"gallery": "Gallery", "one": "One at a time"}
FILTER_PX = 190  # each filter box: four and the "Show all" button fit in a row on a laptop
SHOW_EXCLUDED = {"hide": "Hide excluded", "show": "Show excluded too", "only": "Only excluded"}
SPLIT_NAMES = {ALL: "All splits", "train": "Train", "val": "Validation", "test": "Test"}


def images_count(n: int) -> str:
    """'1 image', '12 images'."""
    return f"{n:,} image" + ("" if n == 1 else "s")


def kind_title(kind: str) -> str:
    """A finding kind as words ('near_duplicate' → 'Near duplicate')."""
    return kind.replace("_", " ").capitalize() if kind else "All images"


def notice(kind: str, text: str, where: str = "images") -> None:
    """Keep an edit's outcome to show on the next run, next to where the edit was made."""
    st.session_state[NOTICE] = {"kind": kind, "text": text, "where": where}


def show_notice(where: str = "images") -> None:
    """The last edit's outcome, once, when it belongs here (its class names and paths shown as typed)."""
    note = st.session_state.get(NOTICE)
    if note and note.get("where", "images") == where:
        del st.session_state[NOTICE]
        {"success": st.success, "error": st.error}.get(note["kind"], st.info)(plain(note["text"]))


def when(created) -> str:
    """A saved time (epoch seconds or ISO text, UTC or local) as local 'YYYY-MM-DD HH:MM'."""
    try:
        moment = (datetime.fromtimestamp(created) if isinstance(created, (int, float))
                  else datetime.fromisoformat(str(created)))
    except (TypeError, ValueError, OSError):
        return str(created or "?")
    return (moment.astimezone() if moment.tzinfo else moment).strftime("%Y-%m-%d %H:%M")


def start_page() -> None:
    """Mark a draw of the whole page: an edit made just before it needs no second draw."""
    st.session_state.pop(REDRAW, None)


def redraw_page() -> None:
    """Ask for the whole page to be drawn again, also when the change was made from a fragment."""
    st.session_state[REDRAW] = True


def rerun_page_if_edited() -> None:
    """In a fragment: after an edit made from it, draw the whole page (its counts, warnings and history) anew."""
    if st.session_state.pop(REDRAW, False):
        st.rerun(scope="app")


def run_edit(name: str, action: str, paths, value=None, where: str = "images", expect: dict | None = None) -> bool:
    """Make one journal edit and keep its message (or why it was refused) to show `where`; True when made.
    `expect`: path → the value of the edited field this page showed; a changed image refuses the edit."""
    redraw_page()  # a refusal too: its notice waits where the edit was made
    try:
        result = journal.edit(name, action, list(paths), value, expect=expect)
    except WorkspaceError as exc:  # EditRefused, a dataset gone or locked by a long job: a plain message
        notice("error", str(exc), where)
        return False
    notice("success" if result.changed else "info", result.message, where)
    return True


# --- filters --------------------------------------------------------------------------------------------


def filter_key(name: str, what: str) -> str:
    """Key of one gallery filter of a dataset ('review.filter.finding.shapes')."""
    return f"review.filter.{what}.{name}"


def page_key(name: str) -> str:
    """Key of the gallery's page number for a dataset."""
    return f"review.page.{name}"


def reset_page(name: str) -> None:
    """Back to the first page of the gallery (after a filter changes)."""
    st.session_state[page_key(name)] = 1


def show_finding_images(name: str, kind: str) -> None:
    """Callback: filter the gallery to one finding's images, excluded ones included, first page."""
    st.session_state[filter_key(name, "finding")] = kind
    st.session_state[filter_key(name, "class")] = ALL
    st.session_state[filter_key(name, "split")] = ALL
    st.session_state[filter_key(name, "excluded")] = "show"
    reset_page(name)


def clear_filters(name: str) -> None:
    """Callback: no filter, excluded images hidden, first page."""
    for what in ("class", "split", "finding"):
        st.session_state[filter_key(name, what)] = ALL
    st.session_state[filter_key(name, "excluded")] = "hide"
    reset_page(name)


def finding_images(report: dict | None) -> dict[str, list[str]]:
    """Each finding kind → its images, most suspicious first (from the findings and the per-image map)."""
    out: dict[str, list[str]] = {}
    if not report:
        return out
    for finding in report.get("findings") or []:
        out.setdefault(finding.get("kind", ""), []).extend(finding.get("images") or [])
    for path, info in (report.get("images") or {}).items():
        for kind in info.get("kinds") or []:
            out.setdefault(kind, []).append(path)
    return {k: list(dict.fromkeys(v)) for k, v in out.items() if v}


def _pick(where, label: str, options: list, key: str, name: str, fmt, **kw):
    if st.session_state.get(key) not in options:  # a class relabelled away, a finding gone since
        st.session_state[key] = options[0]
    return where.selectbox(label, options, key=key, format_func=fmt, persist_state=KEEP, width=FILTER_PX,
                           on_change=reset_page, args=(name,), **kw)


def _with_count(counts: dict, titles, value: str) -> str:
    title = titles(value) if callable(titles) else titles.get(value, value)
    return f"{title} ({counts[value]:,})" if value in counts else title


def _class_title(value: str) -> str:
    return value or "All classes"


def filter_controls(name: str, report: dict | None) -> dict:
    """Filters of the gallery (class, split, finding, excluded), kept for the session; their values."""
    kinds = finding_images(report)
    known = manifestquery.has_paths(name, {p for v in kinds.values() for p in v}) if kinds else set()
    counts = {k: sum(p in known for p in v) for k, v in kinds.items()}
    counts = {k: n for k, n in counts.items() if n}
    row = st.container(horizontal=True, vertical_alignment="bottom")  # wraps on a narrow screen
    classes = dataset_rows.label_counts(name)
    findings = [ALL, *sorted(counts, key=lambda k: -counts[k])]
    values = {
        "class": _pick(row, "Class", [ALL, *sorted(classes)], filter_key(name, "class"), name,
                       partial(_with_count, classes, _class_title)),
        "split": _pick(row, "Split", list(SPLIT_NAMES), filter_key(name, "split"), name,
                       partial(_with_count, {}, SPLIT_NAMES)),
        "finding": _pick(row, "Finding", findings, filter_key(name, "finding"), name,
                         partial(_with_count, counts, kind_title),
                         help="What the health check found; run it above to filter by its findings."),
        "excluded": _pick(row, "Excluded images", list(SHOW_EXCLUDED), filter_key(name, "excluded"), name,
                          SHOW_EXCLUDED.get,
                          help="Excluded images stay on disk and can be restored; training leaves them out."),
    }
    filtered = any(values[w] for w in ("class", "split", "finding")) or values["excluded"] != "hide"
    row.button("Show all", key="review.filter.clear", icon=":material/filter_alt_off:", disabled=not filtered,
               on_click=clear_filters, args=(name,), help="Clear the filters: every image but the excluded ones.")
    return values


def filtered_rows(name: str, report: dict | None, filters: dict) -> review_filtered.Filtered:
    """The images the filters keep, most suspicious first, read a page at a time (with their suspicion and
    findings)."""
    where: dict = {"label": filters.get("class") or None, "split": filters.get("split") or None}
    if filters.get("finding"):
        where["paths"] = finding_images(report).get(filters["finding"], [])
    shown = filters.get("excluded", "hide")
    if shown != "show":
        where["excluded"] = shown == "only"
    return review_filtered.select(name, (report or {}).get("images") or {}, where, kind_title)


def suggestions(report: dict | None) -> dict[str, str]:
    """Label-error suggestions of a report: path → the label the check thinks is right."""
    out = {}
    for finding in (report or {}).get("findings") or []:
        out.update(finding.get("suggested") or {})
    return out


# --- undo, redo, history ----------------------------------------------------------------------------------


def _step(name: str, kind: str, expect: int | None) -> None:
    # `expect` is the entry the button named: another tab's newer edit is refused, not undone unseen
    redraw_page()
    try:
        result = (journal.undo if kind == "undo" else journal.redo)(name, expect=expect)
    except WorkspaceError as exc:
        notice("error", str(exc))
        return
    if result is None:
        notice("info", f"There is nothing to {kind}.")
    else:
        notice("success", result.message)


def toolbar_controls(name: str) -> str:
    """The view (gallery or one at a time) and the Undo/Redo buttons; returns the view."""
    row = st.container(horizontal=True, vertical_alignment="center")
    mode = row.segmented_control("View", list(MODES), key=MODE, format_func=MODES.get, default="gallery",
                                 required=True, persist_state=KEEP, label_visibility="collapsed")
    undo_controls(name, row)
    return mode


def undo_controls(name: str, row) -> None:
    """Undo and Redo buttons naming what they would do; disabled when there is nothing to do."""
    nxt = journal.pending(name)
    # Single keys, not Ctrl+Z: Streamlit ignores single-key shortcuts while one types in a box, but a Ctrl+Z
    # meant for the note or class-name box would undo a dataset edit.
    for kind, icon, keys in (("undo", ":material/undo:", "Z"), ("redo", ":material/redo:", "Y")):
        entry = nxt[kind]
        label = f"{kind.capitalize()}: {plain(journal.describe(entry))}" if entry else kind.capitalize()
        row.button(label, key=f"review.{kind}", icon=icon, disabled=entry is None, on_click=_step,
                   args=(name, kind, entry["id"] if entry else None), shortcut=keys,
                   help="Edits from every tab and the command line share one history.")


def _entry_line(entry: dict) -> str:
    action = entry.get("action")
    what = (f"{plain(action)} of edit #{plain(entry.get('target'))}" if action in ("undo", "redo")
            else plain(journal.describe(entry)))
    if action == "purge":
        what = f"deleted {len(entry.get('changes') or []):,} excluded images for good"
    return f"#{plain(entry.get('id'))} · {plain(when(entry.get('time')))} · {what} · {plain(entry.get('source', ''))}"


def show_history(name: str, last: int = 15) -> None:
    """The latest journal entries, newest first."""
    entries, total = journal.latest(name, last)
    if not entries:
        st.caption("No edits yet. Every edit you make here is listed, and can be undone.")
        return
    st.markdown("\n".join(f"- {_entry_line(e)}" for e in reversed(entries)))
    if total > last:
        st.caption(f"{total - last:,} older edits: download the full history below.")
