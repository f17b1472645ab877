"""Review: check the dataset's health, then fix labels, leave out bad images and move them between splits."""

import streamlit as st

from imgcls.ui.common import state, teach, widgets
from imgcls.ui.review import export as review_export, health as review_health, images as review_images, reviewing

st.title("Review")
if not widgets.show_dataset_nudge():
    st.stop()

dataset = state.active_dataset()
reviewing.start_page()
st.caption("Find what could trip up a model (duplicates, wrong labels, unusable images), then fix it here. "
           "Every edit can be undone. Excluded images stay on disk, only left out of training, until you "
           "choose to delete them at the bottom of this page.")

st.subheader("Health check")
teach.show_concept("label-noise")
report = review_health.health_controls(dataset)
if report:
    review_health.show_findings(dataset, report)

st.subheader("Images")
review_images.show_images(dataset, report)

# Drawn only while open (on_change="rerun" makes the open state known): a closed one costs nothing.
history = st.expander("History of edits", icon=":material/history:", key="review.history", on_change="rerun")
if history.open:
    with history:
        reviewing.show_history(dataset)

st.subheader("Share and export")
review_export.show_exports(dataset, report)
purge = st.expander("Empty the excluded images", icon=":material/delete:", key="review.purge_open",
                    on_change="rerun")
if purge.open:
    with purge:
        reviewing.show_notice("export")
        review_export.show_purge(dataset)
teach.show_review_code(dataset)
