"""Data: import images from any source, and look at the active dataset."""

import streamlit as st

from imgcls.ui.common import state, teach, widgets
from imgcls.ui.common.text import plain
from imgcls.ui.data import imports

st.title("Data")
widgets.show_flash()

active = widgets.dataset_picker_controls("data.dataset", label="Dataset",
                                         empty="No dataset yet: add images below to make one.")

with widgets.add_images_expander(active is not None):
    report = imports.import_controls()
if report:
    state.after_import(report)
    st.rerun()

if active:
    widgets.show_last_import(active)
    st.subheader(f"Overview of {plain(active)}")
    widgets.show_overview(active)
    teach.show_concept("data-size")
    st.subheader("Images")
    widgets.show_thumbnail_grid(active)
    teach.show_data_code(active)
    with st.expander("Rename or delete this dataset", key="data.manage"):
        widgets.dataset_manage_controls(active)
