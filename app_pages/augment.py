"""Augment: placeholder for choosing image variations."""

import streamlit as st

from imgcls.ui import widgets

st.title("Augment")
st.markdown("Here you will choose small random changes made to training images, so the model "
            "learns what matters and not the accidents of your photos.")
widgets.show_coming_soon([
    "Switch on flips, crops, rotations and colour changes, and set how strong they are.",
    "Preview the changes on your own images before training.",
    "The choice is saved with the dataset and used by every training run.",
])
widgets.show_dataset_nudge()
