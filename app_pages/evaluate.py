"""Evaluate: placeholder for measuring a trained model."""

import streamlit as st

from imgcls.ui import widgets

st.title("Evaluate")
st.markdown("Here you will see how well a trained model does on images it has not seen.")
widgets.show_coming_soon([
    "Accuracy overall and for each class.",
    "Which classes the model confuses with each other.",
    "The images it gets wrong, so you can fix labels or add examples.",
    "Export the model to use it outside this app.",
])
widgets.show_dataset_nudge()
