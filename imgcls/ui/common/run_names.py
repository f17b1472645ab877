"""Renaming a run from the Train and Evaluate pages: one popover, one rule (imgcls.store.runnames)."""

from __future__ import annotations

import streamlit as st

from imgcls.store import runnames, workspace
from imgcls.ui.common.text import plain


def rename_controls(run_id: str, page: str) -> None:
    """A 'Rename' popover: the run's name to edit, checked by the one rule for run names; the id stays."""
    key = f"{page}.rename.{run_id}"
    with st.popover("Rename", icon=":material/edit:", help="Give this run a name of your own; its id stays."):
        st.text_input("Name of this run", value=runnames.display_name(run_id), key=key,
                      max_chars=runnames.NAME_MAX)
        if st.button("Save the name", key=f"{key}.save"):
            try:
                runnames.rename_run(run_id, st.session_state[key])
            except workspace.WorkspaceError as exc:
                st.error(plain(exc))
            else:
                st.rerun()  # the pickers and tables drawn above show the new name
