"""Augment: choose the random changes made to training images, see them on your own images, save them."""

import streamlit as st

from imgcls.ui.augment import augmenting, views as augment_views
from imgcls.ui.common import state, teach, widgets

st.title("Augment")
widgets.show_flash()
augment_views.show_intro()
if not widgets.show_dataset_nudge():
    st.stop()

dataset = state.active_dataset()
size, dcfg = augmenting.model_size()
classes = augment_views.train_classes(dataset)
choices = augmenting.load_once(dataset, size, classes)

editor, shown = st.columns([2, 3], gap="large")
with editor:
    st.subheader("Pipeline")
    # The editor's sliders write into `choices`; the preset caption needs the result, so it is filled last.
    presets = st.container()
    augmenting.pipeline_controls(choices)
    pipeline = augmenting.pipeline_dict(choices, size)
    with presets:
        augmenting.preset_controls(size, pipeline, classes)

with shown:
    head = st.container(horizontal=True, vertical_alignment="bottom")
    head.subheader("Preview", width="stretch")
    augment_views.resample_button(head)
    rows, k = augment_views.preview_controls(dataset)
    if rows is not None and pipeline is not None:
        augment_views.show_preview(dataset, rows, k, pipeline, size, dcfg)

teach.show_concept("augmentation")
teach.show_concept("variability")

st.subheader("Could a transform change the label?")
augment_views.show_label_safety(dataset, choices, pipeline, size, dcfg)

st.subheader("Save and share")
augment_views.save_controls(dataset, pipeline)
augment_views.upload_controls()
teach.show_augment_code(dataset, pipeline)
