"""Review: check the dataset's health, then fix labels, leave out bad images and move them between splits."""

import streamlit as st

from imgcls.ui import review_export, review_gallery, review_health, review_single, reviewing, state, teach, widgets

st.title("Review")
if not widgets.show_dataset_nudge():
    st.stop()

dataset = state.active_dataset()
st.caption("Find what could trip up a model (duplicates, wrong labels, unusable images), then fix it here. "
           "Every edit can be undone. Excluded images stay on disk, only left out of training, until you "
           "choose to delete them at the bottom of this page.")

st.subheader("Health check")
teach.show_concept("label-noise")
report = review_health.health_controls(dataset)
if report:
    review_health.show_findings(dataset, report)

st.subheader("Images")
filters = reviewing.filter_controls(dataset, report)
rows = reviewing.filtered_rows(dataset, report, filters)
suggested = reviewing.suggestions(report)
mode = reviewing.toolbar_controls(dataset)
reviewing.show_notice()

if mode == "one":
    review_single.show_one(dataset, rows, suggested, report)
else:
    chunk = review_gallery.page_rows(dataset, rows)
    review_gallery.bulk_controls(dataset, rows, chunk)
    review_gallery.show_gallery(dataset, chunk, suggested)
    review_gallery.show_pages(dataset, rows, chunk)

with st.expander("History of edits", icon=":material/history:", key="review.history"):
    reviewing.show_history(dataset)

st.subheader("Share and export")
review_export.show_exports(dataset, report)
with st.expander("Empty the excluded images", icon=":material/delete:", key="review.purge_open"):
    reviewing.show_notice("export")
    review_export.show_purge(dataset)
teach.show_review_code(dataset)
