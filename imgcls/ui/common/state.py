"""Session-state keys and the active dataset, which is also saved in the workspace settings."""

from __future__ import annotations

import math

import streamlit as st

from imgcls.store import workspace
from imgcls.ui.common.text import plain

# Every key the app keeps in st.session_state, in one place. Values are small and picklable
# (names, flags, short messages), never uploaded bytes, images or models.
ACTIVE_DATASET = "active_dataset"  # name of the dataset every page works on
FLASH = "flash"  # one-off success message shown on the next run, then dropped
ADD_OPEN = "data.add"  # whether the "Add images" expander is open
REPORT_OPEN = "data.last_import"  # whether the "Last import report" expander is open
JUST_IMPORTED = "data.just_imported"  # set by an import; the next run opens the report, closes the form
LEARN_EXPERIMENT = "learn.experiment.kind"  # the Learn page's chosen experiment (a concept card can set it)
SETTING = "active_dataset"  # key in workspace settings.json


def active_dataset() -> str | None:
    """The dataset pages work on: this session's choice, first read from the workspace settings."""
    if ACTIVE_DATASET not in st.session_state:
        # A refresh or a restart starts a new session: the saved choice carries over.
        st.session_state[ACTIVE_DATASET] = workspace.settings().get(SETTING)
    name = st.session_state[ACTIVE_DATASET]
    if name and workspace.dataset_exists(name):
        return name
    # Deleted or renamed elsewhere (the CLI, another tab): fall back to the first dataset, if any.
    names = workspace.list_datasets()
    fallback = names[0] if names else None
    st.session_state[ACTIVE_DATASET] = fallback
    return fallback


def set_active(name: str | None) -> None:
    """Make a dataset the active one here and in the workspace settings (survives a restart)."""
    st.session_state[ACTIVE_DATASET] = name
    if workspace.settings().get(SETTING) != name:
        workspace.save_setting(SETTING, name)


def flash(message: str) -> None:
    """Keep a success message to show once, after the rerun that follows an action."""
    st.session_state[FLASH] = message


def pop_flash() -> str | None:
    """The pending success message, if any; it is shown only once."""
    return st.session_state.pop(FLASH, None)


def init_expanders(has_dataset: bool) -> None:
    """Open "Add images" when there is nothing to look at yet, and the report right after an import.

    Called before either expander is drawn: widget state can only be set before the widget exists.
    """
    st.session_state.setdefault(ADD_OPEN, not has_dataset)
    if st.session_state.pop(JUST_IMPORTED, False):
        st.session_state[ADD_OPEN] = False  # show the dataset, not the import form…
        st.session_state[REPORT_OPEN] = True  # …and what the import did


def after_import(report: dict) -> None:
    """Make the imported dataset active and say what happened on the next run."""
    set_active(report["name"])
    skipped = len(report.get("skipped_files") or [])
    note = f"; {skipped:,} files skipped (see the import report)" if skipped else ""
    flash(f"Imported {report['images']:,} images into '{plain(report['name'])}'{note}.")
    st.session_state[JUST_IMPORTED] = True


def page_count(count: int, per_page: int) -> int:
    """How many pages `count` items make, `per_page` a page (one, even when there are none)."""
    return max(1, math.ceil(count / per_page))


def kept_page(key: str, count: int, per_page: int) -> tuple[int, int]:
    """(pages, index of the first item shown) for the page number kept under `key`; a page that no longer
    exists (fewer items now) goes back to the first."""
    pages = page_count(count, per_page)
    if not 1 <= int(st.session_state.get(key) or 1) <= pages:
        st.session_state[key] = 1
    return pages, (int(st.session_state.get(key) or 1) - 1) * per_page
