"""Review page, copies side by side: every group of copies a finding names, each member with its split and
label as they are now, and the edits that settle it (exclude, move to another split, relabel) under it."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from imgcls.health import duplicates
from imgcls.health.check import GROUP_KINDS
from imgcls.ingest.images import ImageProblem
from imgcls.store import manifestquery, workspace
from imgcls.ui.common import state
from imgcls.ui.common.text import plain
from imgcls.ui.data import rows as dataset_rows
from imgcls.ui.review.reviewing import SPLIT_NAMES, redraw_page, rerun_page_if_edited, run_edit, show_notice
from imgcls.vision.thumbs import thumbnail_path

GROUPS_PER_PAGE = 4  # groups drawn at once: a screenful, quick to send
THUMB_PX = 128
TILE_PX = 170  # a member's tile: the thumbnail and its buttons, several members a row
WHERE = "groups"  # where the outcome of an edit made here is shown


def open_key(name: str) -> str:
    """Key of the finding kind whose groups are shown side by side ('' or absent: none)."""
    return f"review.groups.{name}"


def page_key(name: str) -> str:
    """Key of the page of groups shown."""
    return f"review.groups.page.{name}"


def open_groups(name: str, kind: str) -> None:
    """Callback: show this finding's groups side by side, from the first."""
    st.session_state[open_key(name)] = kind
    st.session_state[page_key(name)] = 1


def close_groups(name: str) -> None:
    """Callback: hide the groups (the whole page is drawn again, to offer them once more)."""
    st.session_state[open_key(name)] = ""
    redraw_page()


def member_key(kind: str, path: str, what: str) -> str:
    """Key of one edit control of one member ('review.groups.leakage.images/x.png.exclude')."""
    return f"review.groups.{kind}.{path}.{what}"


def ordered(kind: str, group: list[str], rows: dict) -> list[str]:
    """Members in reading order: the training copy first for a leak, then by split and label."""
    rank = {s: i for i, s in enumerate(workspace.SPLITS)}

    def key(path: str):
        row = rows.get(path) or {}
        return (rank.get(row.get("split"), 9), str(row.get("label", "")), path)
    return sorted(group, key=key) if kind in ("leakage", "conflicting_labels") else list(group)


def role(kind: str, row: dict) -> str:
    """A leak member's part in its group, in words: the training copy, or a held-out copy to act on."""
    if kind != "leakage":
        return ""  # the copies of a duplicate or a label conflict are peers: their labels and splits say it
    return "Training copy" if row["split"] == "train" else "Held out: move it to train or exclude it"


def _relabel(name: str, path: str, key: str, shown: str) -> None:
    label = st.session_state.get(key)
    st.session_state[key] = None  # the box goes back to its prompt
    if label:
        run_edit(name, "relabel", [path], label, WHERE, {path: shown})


def _actions(box, name: str, kind: str, path: str, row: dict, classes: list[str]) -> None:
    excluded = bool(row["excluded"])
    box.button("Restore" if excluded else "Exclude", key=member_key(kind, path, "exclude"), width="stretch",
               icon=":material/restore_from_trash:" if excluded else ":material/block:",
               on_click=run_edit, args=(name, "restore" if excluded else "exclude", [path], None, WHERE, {path: excluded}))
    for split in workspace.SPLITS:
        if split != row["split"]:
            box.button(f"Move to {SPLIT_NAMES[split].lower()}", key=member_key(kind, path, f"move.{split}"),
                       width="stretch", on_click=run_edit,
                       args=(name, "move", [path], split, WHERE, {path: row["split"]}))
    key = member_key(kind, path, "label")
    box.selectbox("Relabel", [c for c in classes if c != row["label"]], index=None, key=key,
                  placeholder="Relabel as…", label_visibility="collapsed", on_change=_relabel,
                  args=(name, path, key, row["label"]))


def _member(where, name: str, kind: str, path: str, row: dict | None, classes: list[str]) -> None:
    box = where.container(border=True, width=TILE_PX)
    if row is None:
        box.caption(f"{plain(Path(path).name)}: deleted since the check.")
        return
    try:
        box.image(str(thumbnail_path(workspace.dataset_dir(name), path, row["hash"], THUMB_PX)), width="stretch")
    except (ImageProblem, OSError):
        box.warning("This image could not be read.", icon=":material/broken_image:")
    split = SPLIT_NAMES.get(row["split"], row["split"])
    box.markdown(f"**{plain(Path(str(row['source'])).name)}**  \nLabel **{plain(row['label'])}** · {plain(split)}"
                 + ("  \n:red-badge[excluded]" if row["excluded"] else ""))
    part = role(kind, row)
    if part:
        box.caption(part)
    _actions(box, name, kind, path, row, classes)


def _group(name: str, finding: dict, group: list[str], rows: dict, classes: list[str], n: int) -> None:
    kind = finding["kind"]
    members = [rows.get(p) for p in group]
    done = duplicates.group_settled(kind, members)
    with st.container(border=True):
        st.markdown(f"**Group {n:,}** · {len(group)} copies" + (" · :green-badge[settled]" if done else ""))
        line = st.container(horizontal=True, wrap=True, gap="small")
        for path in ordered(kind, group, rows):
            _member(line, name, kind, path, rows.get(path), classes)


def is_open(name: str, kind: str) -> bool:
    """Whether this finding's groups are shown side by side."""
    return bool(kind) and st.session_state.get(open_key(name)) == kind


@st.fragment
def show_groups(name: str, finding: dict) -> None:
    """A copy finding's groups side by side, a page at a time, each member with its edits."""
    rerun_page_if_edited()
    groups = finding.get("groups") or []
    if finding.get("kind") not in GROUP_KINDS or not groups or not is_open(name, finding["kind"]):
        return  # closed from inside this fragment
    head = st.container(horizontal=True, vertical_alignment="center")
    head.markdown(f"**{len(groups):,} group{'' if len(groups) == 1 else 's'} side by side**, every copy with "
                  "its label and split as they are now")
    head.button("Close", key="review.groups.close", icon=":material/close:", on_click=close_groups, args=(name,))
    show_notice(WHERE)
    members = manifestquery.rows_by_paths(name, {p for g in groups for p in g})  # these rows only, not the table
    rows = {r["path"]: r for r in members.to_dict("records")}
    classes = dataset_rows.labels(name)
    pages, first = state.kept_page(page_key(name), len(groups), GROUPS_PER_PAGE)
    for n, group in enumerate(groups[first:first + GROUPS_PER_PAGE], start=first + 1):
        _group(name, finding, group, rows, classes, n)
    if pages > 1:
        st.pagination(pages, key=page_key(name))
