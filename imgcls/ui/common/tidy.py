"""Once per workspace and server start: clear what an interrupted import left behind, and say so."""

from __future__ import annotations

import threading

import streamlit as st

from imgcls.ingest import imports as data
from imgcls.store import workspace
from imgcls.ui.common.text import plain

_done: set[str] = set()
_lock = threading.Lock()


def tidy_once() -> None:
    """The first visit to a workspace since the server started removes dead imports' leftovers (folders,
    unlisted images, torn temp files; an import running right now is left alone) and tells what it freed."""
    root = str(workspace.home())
    with _lock:
        if root in _done:
            return
        _done.add(root)
    try:
        report = data.clean_leftovers(everything=False)
    except workspace.WorkspaceError:  # a full disk or a locked dataset: the next import tries again
        return
    if report.folders or report.files or report.temp_files:
        st.toast(plain(report.message), icon=":material/cleaning_services:")
