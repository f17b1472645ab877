"""Home: what the app does, and a one-click start with a sample dataset."""

import streamlit as st

from imgcls.ui.common import nav
from imgcls.ui.data import imports

st.title("Teach a computer to sort your images")
st.markdown(
    "Give imgcls a few dozen photos of each kind of thing you want told apart (for example "
    "*cats* and *dogs*), sorted into one folder per kind. It trains a model that learns the "
    "difference, shows you how well it does on photos it has not seen, and lets you try it on new "
    "ones. Everything you make is saved on this machine, so you can close the browser and come back."
)

st.subheader("Try it in one click")
st.markdown("No images at hand? Start with a small built-in dataset of 500 drawn shapes in 5 classes.")
if imports.start_sample_controls():
    st.switch_page(nav.DATA.path)

st.subheader("The steps")
st.markdown(
    "1. **Data**: bring in your images: a ZIP or a folder with one subfolder per class, loose "
    "images, webcam shots, or a sample. Check the counts and look through the pictures.\n"
    "2. **Review**: fix wrong labels and leave out blurry or misplaced images.\n"
    "3. **Augment**: choose small variations (flips, crops, colour changes) that help the model "
    "cope with new photos.\n"
    "4. **Train**: teach a model, starting from one that already knows everyday images, and watch "
    "it improve.\n"
    "5. **Evaluate**: see how often it is right, which classes it confuses, and the images it gets wrong."
)
st.page_link(nav.DATA.path, label="Go to the Data page", icon=":material/arrow_forward:")
