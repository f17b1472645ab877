"""Review: placeholder for relabelling and excluding images."""

import streamlit as st

from imgcls.ui import widgets

st.title("Review")
st.markdown("Here you will check your dataset image by image before training on it.")
widgets.show_coming_soon([
    "Browse every image of a class, large enough to judge it.",
    "Fix a wrong label, or leave out an image that is blurry, a duplicate or off-topic.",
    "Move images between the train, validation and test sets.",
    "Undo any of these edits: the original images are never changed.",
])
widgets.show_dataset_nudge()
