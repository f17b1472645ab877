"""Review page, share and export: the health report, the cleaned dataset, the edit history, and the purge."""

from __future__ import annotations

import importlib.util
from functools import partial

import streamlit as st

from imgcls.store import journal, manifestquery
from imgcls.store.workspace import WorkspaceError
from imgcls.ui.review.reviewing import images_count, notice


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(f"imgcls.{module}") is not None
    except ImportError:
        return False


def _report_html(name: str) -> str:
    # Imported here: the report module is optional, and made only when the button is pressed.
    from imgcls.health import check as health, report

    return report.render(name, health.load(name) or {})


def _dataset_zip(name: str) -> bytes:
    from imgcls.ingest import archive

    return archive.export_dataset(name)


def confirm_key(name: str) -> str:
    """Key of the tick box that must be ticked before excluded images are deleted for good."""
    return f"review.purge.confirm.{name}"


def _purge(name: str, confirmed: tuple[str, ...]) -> None:
    # only the images the tick box counted: one excluded since (in another tab) was never confirmed
    st.session_state[confirm_key(name)] = False
    try:
        result = journal.purge_excluded(name, confirmed)
    except WorkspaceError as exc:
        notice("error", str(exc), where="export")
        return
    text = result.message + " Their files are gone for good."
    if len(confirmed) > len(result.changed):
        text += f" {images_count(len(confirmed) - len(result.changed))} restored or removed meanwhile: left as is."
    notice("success", text, where="export")


def _stale(name: str, report: dict | None) -> bool:
    """Whether the saved report predates later edits (False when there is none, or no health module)."""
    if report is None:
        return False
    try:
        from imgcls.health import check as health
    except ImportError:
        return False
    return health.is_stale(name, report)


def show_exports(name: str, report: dict | None) -> None:
    """Download buttons for the report, the cleaned dataset and the history; each file is made on click."""
    cols = st.columns(3)
    with cols[0]:
        ready = report is not None and _available("health.report")
        st.download_button("Health report (HTML)", partial(_report_html, name), file_name=f"{name}-health.html",
                           mime="text/html", key="review.download.report", icon=":material/description:",
                           on_click="ignore", disabled=not ready)
        st.caption("One web page with the score and every finding, to share or keep."
                   if ready else "Check the dataset first: the report shows what the check found.")
        if ready and _stale(name, report):
            st.caption(":material/update: This report was made before later edits; check again for an "
                       "up-to-date report.")
    with cols[1]:
        ready = _available("ingest.archive")
        st.download_button("Cleaned dataset (ZIP)", partial(_dataset_zip, name), file_name=f"{name}.zip",
                           mime="application/zip", key="review.download.zip", icon=":material/folder_zip:",
                           on_click="ignore", disabled=not ready)
        st.caption("A folder per split and class with your labels applied, excluded images left out, "
                   "and manifest.csv.")
    with cols[2]:
        st.download_button("Edit history (CSV)", partial(journal.to_csv, name), file_name=f"{name}-edits.csv",
                           mime="text/csv", key="review.download.journal", icon=":material/history:",
                           on_click="ignore")
        st.caption("Every edit: what changed, from what to what, and when.")


def show_purge(name: str) -> None:
    """Delete the excluded images' files for good, behind a tick box that says it cannot be undone."""
    # what the tick box counts is what the button deletes, even if more are excluded meanwhile
    confirmed = tuple(manifestquery.page_rows(name, 0, -1, {"excluded": True}, columns=["path"])["path"])
    excluded = len(confirmed)
    if not excluded:
        st.caption("No image is excluded, so there is nothing to delete.")
        return
    st.markdown(f"{excluded:,} excluded images still take space on disk. Excluding keeps them so you can change "
                "your mind; deleting removes them for good.")
    sure = st.checkbox(f"Yes, delete the {excluded:,} excluded image files. This cannot be undone.",
                       key=confirm_key(name))
    st.button(f"Empty the excluded images ({excluded:,})", key="review.purge", type="primary",
              icon=":material/delete_forever:", disabled=not sure, on_click=_purge, args=(name, confirmed))
