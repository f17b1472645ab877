"""Review page, one image at a time: a big image, its details and findings, one button (and key) per class."""

from __future__ import annotations

from pathlib import Path

import streamlit as st

from imgcls.health import check as health
from imgcls.ingest.images import ImageProblem
from imgcls.store import workspace
from imgcls.ui.common.text import plain
from imgcls.ui.data import rows as dataset_rows
from imgcls.ui.review.health import EXPLAIN
from imgcls.ui.review.reviewing import SPLIT_NAMES, kind_title, run_edit
from imgcls.vision.thumbs import thumbnail_path

BIG_PX = 512
KEYS = "123456789"  # one key per class, for the first nine classes


def current_key(name: str) -> str:
    """Key of the image shown in one-at-a-time mode (its manifest path)."""
    return f"review.one.{name}"


def _go(name: str, path: str | None) -> None:
    if path:
        st.session_state[current_key(name)] = path


def _edit_and_go(name: str, action: str, path: str, value, after: str, shown=None) -> None:
    if run_edit(name, action, [path], value, expect=None if shown is None else {path: shown}):
        _go(name, after)


def _details(row, suggested: dict, report: dict | None) -> None:
    info = ((report or {}).get("images") or {}).get(row.path) or {}
    lines = [f"**{plain(Path(str(row.source)).name)}**",
             f"Label **{plain(row.label)}** · {plain(SPLIT_NAMES.get(row.split, row.split))} · "
             f"{int(row.width)}×{int(row.height)} px"
             + (" · :red-badge[excluded]" if row.excluded else "")]
    if suggested.get(row.path) and suggested[row.path] != row.label:
        lines.append(f"The check thinks this may be **{plain(suggested[row.path])}**.")
    if row.note:
        lines.append(f"Note: {plain(row.note)}")
    st.markdown("  \n".join(lines))
    for finding in (report or {}).get("findings") or []:
        if row.path in (finding.get("images") or []):
            kind, at = finding.get("kind", ""), finding["images"].index(row.path)
            scores = (finding.get("scores") or [])[at:at + 1]
            # this image's own number, as a sentence (raw z-scores and ratios would mean nothing here)
            own = " " + plain(health.explain({"kind": kind, "scores": scores})) if kind == "label_error" else ""
            st.caption(f"**{plain(kind_title(kind))}**: {EXPLAIN.get(kind, plain(finding.get('message', '')))}{own}")
    if info.get("suspicion"):
        st.caption(f"Suspicion {float(info['suspicion']):.2f} (0 = nothing odd, 1 = surely a problem) · "
                   f"stored as {plain(row.path)}")


def _class_buttons(name: str, row, after: str) -> None:
    classes = dataset_rows.labels(name)
    st.markdown("**This image is a…**")
    row_of_buttons = st.container(horizontal=True)
    for i, label in enumerate(classes):
        key = KEYS[i] if i < len(KEYS) else None
        row_of_buttons.button(plain(label), key=f"review.one.assign.{label}", shortcut=key,
                              type="primary" if label == row.label else "secondary",
                              on_click=_edit_and_go, args=(name, "relabel", row.path, label, after, row.label),
                              help="Its label now." if label == row.label else
                              f"Relabel it as {plain(label)}, then go on.")
    action = "restore" if row.excluded else "exclude"
    st.button("Restore it" if row.excluded else "Exclude it", key="review.one.exclude", shortcut="X",
              icon=":material/restore_from_trash:" if row.excluded else ":material/block:",
              on_click=_edit_and_go, args=(name, action, row.path, None, after, bool(row.excluded)),
              help="Excluded images stay on disk and are left out of training.")
    if len(classes) <= len(KEYS):
        st.caption("Keys: 1–9 pick a class, X excludes or restores, ← and → step through the images, Z undoes.")


def show_one(name: str, rows, suggested: dict, report: dict | None) -> None:
    """The current image big, with Previous/Next; assigning a class or excluding moves on to the next one.
    Only the image shown and its neighbours' paths are read from the dataset (its place by an indexed count)."""
    total = len(rows)
    if not total:
        st.info("No images match these filters.")
        return
    key = current_key(name)
    i = rows.index_of(st.session_state.get(key))
    if i is None:
        i, st.session_state[key] = 0, rows.path_at(0)
    row = next(rows.page(i, 1).itertuples(index=False))
    after = rows.path_at(i + 1) if i + 1 < total else row.path
    bar = st.container(horizontal=True, vertical_alignment="center")
    bar.button("Previous", key="review.one.previous", icon=":material/arrow_back:", shortcut="Left",
               disabled=i == 0, on_click=_go, args=(name, rows.path_at(i - 1) if i else None))
    bar.markdown(f"Image **{i + 1:,}** of {total:,}")
    bar.button("Next", key="review.one.next", icon=":material/arrow_forward:", shortcut="Right",
               disabled=i + 1 >= total, on_click=_go, args=(name, after))
    left, right = st.columns([3, 2])
    try:
        left.image(str(thumbnail_path(workspace.dataset_dir(name), row.path, row.hash, BIG_PX)), width=BIG_PX)
    except (ImageProblem, OSError):
        left.warning("This image could not be read; it may have been removed or damaged.")
    with right:
        _details(row, suggested, report)
        _class_buttons(name, row, after)
