"""Learn: what a CNN does inside, shown on the user's own images."""

import streamlit as st

from imgcls.ui.common import state
from imgcls.ui.learn import experimenting, learning

st.title("Learn")
st.markdown("See what the network inside imgcls does with your images, step by step.")
dataset = state.active_dataset()

st.header("Inside the network")
st.subheader("What the first layer looks for")
learning.show_filters()

st.subheader("What each layer responds to")
picked = learning.image_controls(dataset)
if picked:
    name, data = picked
    learning.show_feature_maps(data)
    st.subheader("What the pretrained network thinks it is")
    learning.show_imagenet_top(data)
    st.subheader("Where your model looks")
    learning.show_gradcam(dataset, data)

st.header("Experiments")
st.markdown("Each experiment asks one question about deep learning and answers it by measuring, on your data.")
experimenting.show_experiment(dataset)

st.header("Take it home as code")
learning.show_session_export(dataset)
