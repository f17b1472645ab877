"""Review page gallery: a page of thumbnails to tick, and the edits made to every ticked image at once."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from imgcls.ingest.images import ImageProblem
from imgcls.store import manifestquery, workspace
from imgcls.ui.common import state
from imgcls.ui.common.text import plain
from imgcls.ui.data import rows as dataset_rows
from imgcls.ui.review.reviewing import KEEP, SPLIT_NAMES, page_key, run_edit
from imgcls.vision.thumbs import thumbnail_path

PAGE_SIZE = 24  # thumbnails per page: four rows of six, quick to send
THUMB_PX = 128
TILE_PX = THUMB_PX + 22  # the thumbnail plus the tile's padding: six tiles a row on a laptop
NEW_CLASS = "+ A new class…"  # the relabel choice that opens a text box for a new class name
ACTIONS = {"relabel": "Relabel", "exclude": "Exclude", "restore": "Restore", "move": "Move to split",
           "note": "Add a note"}
ACTION = "review.bulk.action"  # which edit the Apply button makes
LABEL = "review.bulk.label"  # the class to relabel to (or NEW_CLASS)
NEW_LABEL = "review.bulk.new_label"  # the new class name typed when LABEL is NEW_CLASS
SPLIT = "review.bulk.split"  # the split to move to
NOTE = "review.bulk.note"  # the note to add


def selected_key(name: str) -> str:
    """Key of the list of ticked image paths of a dataset (kept across pages and filters)."""
    return f"review.selected.{name}"


def pick_key(path: str) -> str:
    """Key of the tick box under one thumbnail."""
    return f"review.pick.{path}"


def selection(name: str) -> list[str]:
    """The ticked images of a dataset, in the order they were ticked."""
    return list(st.session_state.get(selected_key(name), []))


def _set_selection(name: str, paths, shown: dict | None = None) -> None:
    st.session_state[selected_key(name)] = list(dict.fromkeys(paths))
    # what each ticked image showed when it was ticked: an edit refuses images changed since (another tab)
    seen = {**st.session_state.get(shown_key(name), {}), **(shown or {})}
    st.session_state[shown_key(name)] = {p: seen[p] for p in st.session_state[selected_key(name)] if p in seen}


def shown_key(name: str) -> str:
    """Key of the values (label, excluded, split, note) the ticked images showed when ticked."""
    return f"review.selected.shown.{name}"


def _shown(row) -> dict:
    return {"label": str(row.label), "excluded": bool(row.excluded), "split": str(row.split), "note": str(row.note)}


def _toggled(name: str, path: str, shown: dict) -> None:
    chosen = selection(name)
    _set_selection(name, chosen + [path] if st.session_state.get(pick_key(path)) else
                   [p for p in chosen if p != path], {path: shown})


def _select_page(name: str, paths: list[str], shown: dict) -> None:
    _set_selection(name, selection(name) + paths, shown)


def _clear(name: str) -> None:
    _set_selection(name, [])


def page_rows(name: str, rows) -> pd.DataFrame:
    """The rows on the gallery's current page (the page number is kept when it still exists); only that
    page is read from the dataset."""
    _, first = state.kept_page(page_key(name), len(rows), PAGE_SIZE)
    return rows.page(first, PAGE_SIZE).assign(position=first + 1)


def show_pages(name: str, rows, chunk: pd.DataFrame) -> None:
    """Page buttons under the gallery, and which images are shown."""
    pages = state.page_count(len(rows), PAGE_SIZE)
    if pages > 1:
        st.pagination(pages, key=page_key(name), persist_state=KEEP)
    if len(chunk):
        start = int(chunk["position"].iat[0])
        order = ", most suspicious first" if rows.any_suspicion else ""
        st.caption(f"Images {start:,}–{start + len(chunk) - 1:,} of {len(rows):,}{order}.")


def caption(row, suggested: dict) -> str:
    """File name, label and split of an image, and the label the check suggests for it, if any."""
    text = f"{Path(str(row.source)).name} · {row.label} · {SPLIT_NAMES.get(row.split, row.split).lower()}"
    if suggested.get(row.path) and suggested[row.path] != row.label:
        text += f" · maybe {suggested[row.path]}"
    return text + (" · excluded" if row.excluded else "")


def _tile(where, name: str, folder: Path, row, suggested: dict, chosen: set) -> None:
    key = pick_key(row.path)
    st.session_state[key] = row.path in chosen  # the shared list, not the box, is the truth
    try:
        where.image(str(thumbnail_path(folder, row.path, row.hash, THUMB_PX)), caption=plain(caption(row, suggested)),
                    width="stretch")
    except (ImageProblem, OSError):  # removed or damaged since the import
        where.warning(f"{plain(Path(str(row.source)).name)} could not be read.", icon=":material/broken_image:")
    where.checkbox("Select", key=key, on_change=_toggled, args=(name, row.path, _shown(row)))
    extra = []
    if row.kinds:
        extra.append(f":orange[{plain(row.kinds)}]")
    if row.suspicion:
        extra.append(f"suspicion {row.suspicion:.2f}")
    if row.note:
        extra.append(f"note: {plain(row.note)}")
    if extra:
        where.caption(" · ".join(extra))


def show_gallery(name: str, chunk: pd.DataFrame, suggested: dict) -> None:
    """One page of thumbnails, each with its caption and a tick box."""
    if chunk.empty:
        st.info("No images match these filters.")
        return
    folder, chosen = workspace.dataset_dir(name), set(selection(name))
    grid = st.container(horizontal=True, wrap=True, gap="xsmall")  # as many tiles a row as the screen holds
    for row in chunk.itertuples(index=False):
        _tile(grid.container(border=True, width=TILE_PX), name, folder, row, suggested, chosen)


# --- editing the ticked images ---------------------------------------------------------------------------


def _apply(name: str) -> None:
    action, session = st.session_state.get(ACTION, "relabel"), st.session_state
    value = {"relabel": session.get(NEW_LABEL) if session.get(LABEL) == NEW_CLASS else session.get(LABEL),
             "move": session.get(SPLIT), "note": session.get(NOTE)}.get(action)
    field = {"relabel": "label", "exclude": "excluded", "restore": "excluded", "move": "split"}.get(action, action)
    shown = st.session_state.get(shown_key(name), {})
    expect = {p: shown[p][field] for p in selection(name) if p in shown}
    if run_edit(name, action, selection(name), value, expect=expect or None):
        _clear(name)


def _value_controls(name: str, action: str) -> None:
    if action == "relabel":
        classes = dataset_rows.labels(name)
        if st.session_state.get(LABEL) not in [*classes, NEW_CLASS]:
            st.session_state.pop(LABEL, None)
        left, right = st.columns(2)
        choice = left.selectbox("New label", [*classes, NEW_CLASS], index=None, key=LABEL,
                                placeholder="Choose a class",
                                help="Pick a class, or the last choice to make a new one.")
        if choice == NEW_CLASS:
            right.text_input("Name of the new class", key=NEW_LABEL, max_chars=64, placeholder="e.g. cat")
    elif action == "move":
        st.selectbox("Move to", workspace.SPLITS, key=SPLIT, format_func=SPLIT_NAMES.get,
                     help="Train teaches the model; validation picks the best epoch; test is kept for the end.")
    elif action == "note":
        st.text_input("Note", key=NOTE, max_chars=500, placeholder="Why these images matter or look odd",
                      help="Saved in the manifest's note column; an empty note removes the notes.")


def bulk_controls(name: str, rows, chunk: pd.DataFrame) -> None:
    """Select all or none, and one edit (relabel, exclude, restore, move, note) for every ticked image."""
    ticked = selection(name)
    known = manifestquery.has_paths(name, ticked) if ticked else set()
    chosen = [p for p in ticked if p in known]  # images deleted for good since were ticked
    _set_selection(name, chosen)
    hidden = len(chosen) - rows.count_of(chosen) if chosen else 0
    with st.container(border=True):
        top = st.container(horizontal=True, vertical_alignment="center")
        top.markdown(f"**{len(chosen):,} selected**" + (f" ({hidden:,} hidden by the filters)" if hidden else ""))
        top.button("Select all on this page", key="review.select_page", icon=":material/select_all:",
                   on_click=_select_page, disabled=chunk.empty,
                   args=(name, list(chunk["path"]), {r.path: _shown(r) for r in chunk.itertuples(index=False)}))
        top.button("Clear selection", key="review.clear", icon=":material/deselect:", on_click=_clear, args=(name,),
                   disabled=not chosen)
        action = st.radio("Edit the selected images", list(ACTIONS), key=ACTION, format_func=ACTIONS.get,
                          horizontal=True, persist_state=KEEP,
                          help="Excluded images stay on disk and are left out of training; restore brings them back.")
        _value_controls(name, action)
        st.button(f"{ACTIONS[action]} {len(chosen):,} images", key="review.bulk.apply", type="primary",
                  disabled=not chosen, on_click=_apply, args=(name,))
