"""The settings on which two runs differ, as the Train and Evaluate pages show them."""

from __future__ import annotations

import streamlit as st

from imgcls.charts import training as training_charts
from imgcls.ui.common.text import plain


def show_settings_diff(first: tuple[str, dict], second: tuple[str, dict], key: str) -> None:
    """The settings that differ between two runs, each given as (name, config); a table under `key`."""
    diff = training_charts.config_diff(first[1], second[1])
    st.markdown(f"**Settings that differ** between {plain(first[0])} (first) and {plain(second[0])} (second):")
    if diff.empty:
        st.caption("None: the two runs used the same settings.")
    else:
        st.dataframe(diff, hide_index=True, key=key)
