"""Train: placeholder for starting and watching a training run."""

import streamlit as st

from imgcls.ui import widgets

st.title("Train")
st.markdown("Here you will train a model on the active dataset.")
widgets.show_coming_soon([
    "Pick a model (EfficientNet-Lite0 by default, which works without internet) and how long to train.",
    "Training runs in the background: you can close the browser and come back.",
    "Watch accuracy and loss improve live, and stop a run at any time.",
])
widgets.show_dataset_nudge()
