"""Evaluate: how well a trained run does, what it confuses, its worst mistakes, predictions and export."""

import streamlit as st

from imgcls import runs
from imgcls.ui import demo, evaluating, nav, state

st.title("Evaluate")
dataset = state.active_dataset()
run_id = evaluating.run_controls(dataset)
if not run_id:
    st.info("There is no finished training run yet. Train a model on the Train page, then come back here "
            "to see what it gets right and wrong.")
    st.page_link(nav.TRAIN.path, label="Go to the Train page", icon=":material/arrow_forward:")
    st.stop()

config = runs.read_config(run_id)
split = st.session_state.get(evaluating.SPLIT, "val")
if config.get("dataset") != dataset:
    st.caption(f"This run was trained on '{config.get('dataset')}', not on the active dataset.")
result = evaluating.result_controls(run_id, split)

if result:
    table = evaluating.predictions(run_id, result)
    st.subheader("How well it does")
    evaluating.show_metrics(result)

    st.subheader("What it confuses")
    st.caption("Rows are the true classes, columns the predictions; colour is the share of the row. "
               "Click a cell to see its images.")
    evaluating.show_confusion(run_id, split, result, table, config["dataset"])

    st.subheader("Most confident mistakes")
    evaluating.show_worst(table, config["dataset"])

    st.subheader("Confidence you can trust?")
    evaluating.show_reliability(result, key=f"evaluate.reliability.{run_id}.{split}")

st.subheader("Try it on new images")
evaluating.show_predict(run_id)

st.subheader("Export")
evaluating.show_export(run_id)

st.subheader("Share a demo")
demo.publish_controls(run_id)
