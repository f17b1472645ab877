"""Widgets shared by the pages: dataset picker, step flow, import report, overview, thumbnails."""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from imgcls.ingest import imports as data
from imgcls.ingest.images import ImageProblem
from imgcls.store import manifestquery, workspace
from imgcls.store.workspace import WorkspaceError
from imgcls.ui.common import nav, state
from imgcls.ui.common.text import plain
from imgcls.ui.data import rows as dataset_rows
from imgcls.ui.data.imports import show_skipped
from imgcls.vision.thumbs import thumbnail_path

PAGE_SIZE = 24  # thumbnails per page: a few rows on a laptop screen, quick to send
THUMB_PX = 128
BIG_PX = 512  # an opened image: big enough to judge it, small enough to send at once
SPLIT_WORDS = {"train": "training", "val": "validation", "test": "test"}


def _picked(key: str) -> None:
    state.set_active(st.session_state[key])


def dataset_picker_controls(key: str, label: str = "Active dataset",
                            empty: str = "No dataset yet: add one on the Data page.") -> str | None:
    """Selectbox of the workspace's datasets; returns the active one (None when there is none)."""
    names = workspace.list_datasets()
    active = state.active_dataset()
    if not names:
        st.caption(empty)
        return None
    # Another picker (sidebar or page) may have changed the choice: follow the shared value.
    if st.session_state.get(key) != active:
        st.session_state[key] = active
    st.selectbox(label, names, key=key, on_change=_picked, args=(key,),
                 help="The dataset every page works on; your choice is remembered.")
    return active


def show_step_flow(active: str | None) -> None:
    """The steps from images to a model, with the ones already done ticked."""
    lines = []
    for number, step in enumerate(nav.STEPS, start=1):
        done = step is nav.DATA and active is not None
        lines.append(f"{number}. {':material/check_circle: ' if done else ''}**{step.title}**: {step.step}")
    st.markdown("\n".join(lines))


def show_flash() -> None:
    """The success message left by the previous run's action, once."""
    message = state.pop_flash()
    if message:
        st.success(message)


def show_dataset_nudge() -> bool:
    """Point to the Data page when there is no dataset yet; True when there is one."""
    if state.active_dataset():
        return True
    st.info("There is no dataset yet. Start on the Data page: upload a ZIP, point to a folder, "
            "or try a built-in sample.")
    st.page_link(nav.DATA.path, label="Go to the Data page", icon=":material/arrow_forward:")
    return False


def show_coming_soon(lines: list[str]) -> None:
    """What a page that is not built yet will let you do, in plain words."""
    st.markdown("**Coming to this page:**\n" + "\n".join(f"- {plain(line)}" for line in lines))


def show_import_report(report: dict) -> None:
    """What an import did: images kept, files skipped with reasons, warnings."""
    classes = ", ".join(f"{plain(k)} ({v:,})" for k, v in report.get("class_counts", {}).items())
    st.markdown(f"Imported **{report['images']:,} images** into **{plain(report['name'])}** from "
                f"{plain(report['source'])} in {report.get('seconds', 0):.1f} s. "
                f"The dataset now has {len(report.get('class_counts', {}))} classes: {classes}.")
    skipped = report.get("skipped_files") or []
    if skipped:
        reasons = Counter(item["reason"] for item in skipped)
        st.markdown(f"**Skipped {len(skipped):,} files**: "
                    + ", ".join(f"{plain(reason)} ({n:,})" for reason, n in reasons.most_common()) + ".")
        show_skipped(skipped)
    else:
        st.caption("No files were skipped.")
    if report.get("ignored"):
        st.caption(f"{report['ignored']:,} hidden or system files (such as .DS_Store or __MACOSX) were ignored.")
    for warning in report.get("warnings") or []:
        st.warning(plain(warning))


def show_last_import(name: str) -> None:
    """The most recent import report of a dataset, open right after an import."""
    try:
        report = data.last_report(name)
    except WorkspaceError:
        report = None
    if report:
        with st.expander("Last import report", key=state.REPORT_OPEN, on_change="rerun"):
            # The report keeps the name at import time; show the one the user knows now (after a rename).
            show_import_report({**report, "name": name})


def add_images_expander(has_dataset: bool):
    """The "Add images" section: open while there is no dataset, closed after an import."""
    state.init_expanders(has_dataset)
    # Keyed, so it keeps its open/closed state when a message above it comes or goes.
    return st.expander("Add images: ZIP, server folder, loose images, webcam or a sample",
                       key=state.ADD_OPEN, on_change="rerun")


def show_overview(name: str) -> None:
    """Counts, images per class and split, and image sizes of a dataset (from counts, not the whole table)."""
    summary = dataset_rows.summary(name)
    splits = summary["splits"]
    cols = st.columns(6 if summary["excluded"] else 5)
    cols[0].metric("Images", f"{summary['images']:,}")
    cols[1].metric("Classes", f"{summary['classes']:,}")
    cols[2].metric("Train", f"{splits['train']:,}")
    cols[3].metric("Validation", f"{splits['val']:,}")
    cols[4].metric("Test", f"{splits['test']:,}")
    if summary["excluded"]:
        cols[5].metric("Excluded", f"{summary['excluded']:,}")
    if not summary["images"]:
        st.info("Every image of this dataset is excluded.")
        return
    counts, sizes = dataset_rows.figures(name)
    left, right = st.columns([3, 2])
    left.plotly_chart(counts, key="data.chart.classes")
    right.plotly_chart(sizes, key="data.chart.sizes")


def _class_with_count(per_class: dict, label: str) -> str:
    return f"{label} ({per_class[label]:,} images)"


# Makes the whole tile the click area of the file-name button under the thumbnail (a "stretched link"):
# the button's ::after box covers the tile, so clicking the picture itself opens it large.
TILE_CSS = """<style>
[class*="st-key-data-tile-"] { position: relative; }
[class*="st-key-data-tile-"] .stElementContainer:has(button), [class*="st-key-data-tile-"] .stButton,
[class*="st-key-data-tile-"] .stButton * { position: static; }
[class*="st-key-data-tile-"] .stButton button::after { content: ""; position: absolute; inset: 0; cursor: zoom-in; }
</style>"""


def _size_text(row) -> str:
    size = pd.to_numeric(getattr(row, "bytes", None), errors="coerce")  # not in manifests of older imports
    return f"{int(row.width):,}×{int(row.height):,} px" + (f" · {size / 1024:,.0f} kB" if pd.notna(size) else "")


def _short(name: str, most: int = 18) -> str:
    """A file name that fits under a thumbnail: its start and end around an ellipsis when it is long."""
    return name if len(name) <= most else f"{name[:most // 2 - 1]}…{name[-(most // 2):]}"


def show_image_details(name: str, row) -> None:
    """One dataset image large, with its file name, label, split and size."""
    folder = workspace.dataset_dir(name)
    try:
        st.image(str(thumbnail_path(folder, row.path, row.hash, BIG_PX)), width=BIG_PX)
    except (ImageProblem, OSError):
        st.warning("This image could not be read; it may have been removed or damaged.")
    split = SPLIT_WORDS.get(row.split, row.split)
    st.markdown(f"**{plain(Path(str(row.source)).name)}**  \n"
                f"Label **{plain(row.label)}** · {plain(split)} split · {_size_text(row)}")
    st.caption(f"Stored as {plain(row.path)}")


def _open(name: str, row) -> None:
    st.dialog(plain(Path(str(row.source)).name[:60]), width="medium")(show_image_details)(name, row)


def _tile(name: str, folder: Path, row, i: int) -> bool:
    """One thumbnail with its file name; False when the image cannot be read."""
    try:
        thumb = str(thumbnail_path(folder, row.path, row.hash, THUMB_PX))
    except (ImageProblem, OSError):  # a file removed or damaged since the import
        return False
    tile = st.container(key=f"data.tile.{i}", width=THUMB_PX, gap=None)
    tile.image(thumb, width=THUMB_PX)
    label = f"{row.split} · {_short(Path(str(row.source)).name)}"
    if tile.button(plain(label), key=f"data.open.{i}", type="tertiary", width="stretch",
                   help="Open this image large, with its details."):
        _open(name, row)
    return True


@st.fragment
def show_thumbnail_grid(name: str) -> None:
    """One page of thumbnails of a chosen class, each opening large on a click; a fragment, so paging and
    opening an image redraw only the grid. Only the page shown is read from the dataset, and thumbnails
    are made for it alone."""
    per_class = dataset_rows.summary(name)["per_class"]
    if not per_class:
        return
    # A partial of a module function, not a lambda: AppTest keeps format_func in session state,
    # which must stay picklable.
    label = st.selectbox("Class", list(per_class), key=f"data.grid.class.{name}",
                         format_func=partial(_class_with_count, per_class))
    total = per_class[label]
    pages = state.page_count(total, PAGE_SIZE)
    page = st.pagination(pages, key=f"data.grid.page.{name}.{label}") if pages > 1 else 1
    start = (min(page, pages) - 1) * PAGE_SIZE
    chunk = manifestquery.page_rows(name, start, PAGE_SIZE, {"label": label, "excluded": False})
    folder = workspace.dataset_dir(name)
    st.html(TILE_CSS)
    grid = st.container(horizontal=True, gap="small")
    with grid:
        shown = sum(_tile(name, folder, row, i) for i, row in enumerate(chunk.itertuples(index=False)))
    st.caption(f"Images {start + 1:,}–{start + len(chunk):,} of {total:,} in class '{plain(label)}'. "
               "Click an image to see it large.")
    if shown < len(chunk):
        st.warning(f"{len(chunk) - shown} images on this page could not be read; they may have been removed "
                   "or damaged.")


def dataset_manage_controls(name: str) -> None:
    """Rename or delete a dataset (delete asks for a tick first)."""
    new = st.text_input("New name", key="data.manage.new_name", placeholder=name)
    if st.button("Rename dataset", key="data.manage.rename"):
        try:
            renamed = workspace.rename_dataset(name, (new or "").strip())
        except WorkspaceError as exc:
            st.error(plain(exc))
        else:
            state.set_active(renamed)
            state.flash(f"Renamed '{plain(name)}' to '{plain(renamed)}'.")
            st.rerun()
    st.divider()
    confirm_key = f"data.manage.delete_confirm.{name}"
    confirm = st.checkbox(f"Yes, delete '{plain(name)}' and all its images. This cannot be undone.", key=confirm_key)
    if st.button("Delete dataset", key="data.manage.delete", disabled=not confirm, type="primary"):
        try:
            workspace.delete_dataset(name)
        except (WorkspaceError, OSError) as exc:
            st.error(f"Could not delete '{plain(name)}': {plain(exc)}")
            return
        st.session_state.pop(confirm_key, None)
        rest = workspace.list_datasets()
        state.set_active(rest[0] if rest else None)
        state.flash(f"Deleted '{plain(name)}'.")
        st.rerun()
