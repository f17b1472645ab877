"""Class datasets on the Class page: a teacher shares one (holding back a hidden test split); a student
starts from one, as a copy in their own workspace."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from imgcls.classroom import classes, shared
from imgcls.store import access, workspace
from imgcls.ui.classroom.members import when
from imgcls.ui.common import state
from imgcls.ui.common.text import plain

HIDDEN_HELP = ("The test images stay on the server: students never see, download or predict on them one by one. "
               "The board scores every submitted model on them, so nobody can tune a model to them.")


def _table(found: list[dict], key: str) -> None:
    rows = [{"Dataset": d["name"], "Images": d["images"], "Classes": ", ".join(map(str, d["classes"])),
             "Hidden test images": d["hidden_test"], "Shared": when(d.get("shared"))} for d in found]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=key)


def share_controls(info: classes.ClassInfo, user: access.User) -> None:
    """Share one of the teacher's datasets with the class, and the ones shared so far."""
    found = shared.class_datasets(info.id)
    if found:
        _table(found, f"class.datasets.{info.id}")
    else:
        st.caption("No dataset is shared with this class yet.")
    names = workspace.list_datasets()
    if not names:
        st.caption("Import a dataset on the Data page first; then share it here.")
        return
    with st.form(f"class.share.{info.id}", border=True):
        st.markdown("**Share a dataset with the class**")
        picked = st.selectbox("Dataset", names, key=f"class.share.name.{info.id}",
                              index=names.index(state.active_dataset()) if state.active_dataset() in names else 0)
        hold = st.checkbox("Hold back a hidden test split", value=True, key=f"class.share.hold.{info.id}",
                           help=HIDDEN_HELP + " Its test split is held back; a dataset without one gives a "
                                              "fifth of each class.")
        if st.form_submit_button("Share with the class", icon=":material/share:", type="primary"):
            try:
                with st.spinner("Copying the dataset into the class…"):
                    done = shared.share_dataset(info.id, user, picked, hold_back_test=hold)
            except (workspace.WorkspaceError, PermissionError, ValueError, OSError) as exc:
                st.error(plain(exc))
                return
            hidden = done.get("hidden_test", 0)
            state.flash(f"**{plain(done['name'])}** is shared with the class: {done['images']:,} images students "
                        f"can use" + (f", {hidden:,} held back as the hidden test." if hidden else "."))
            st.rerun()


def start_controls(info: classes.ClassInfo, user: access.User) -> None:
    """The class's datasets and a button to start from each (a copy that records where it came from)."""
    found = shared.class_datasets(info.id)
    if not found:
        st.caption("Your teacher has not shared a dataset with this class yet.")
        return
    _table(found, f"class.student.datasets.{info.id}")
    st.caption("Starting from a dataset copies it into your own workspace: review, augment and train it as you "
               "like; the class's copy stays as it is. " + HIDDEN_HELP)
    for d in found:
        if st.button(f"Start from {plain(d['name'])}", key=f"class.start.{info.id}.{d['name']}",
                     icon=":material/content_copy:"):
            try:
                with st.spinner("Copying into your workspace…"):
                    name = shared.start_from(info.id, d["name"], user)
            except (workspace.WorkspaceError, PermissionError, ValueError, OSError) as exc:
                st.error(plain(exc))
                continue
            state.set_active(name)
            state.flash(f"**{plain(name)}** is in your workspace and is now your active dataset. Train a model "
                        "on it, then submit the run to the class board here.")
            st.rerun()
