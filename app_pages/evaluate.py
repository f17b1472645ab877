"""Evaluate: how well a trained run does, what it confuses, its worst mistakes (fixable), a second run side by
side, predictions on new images one by one or by the ZIP, export and sharing."""

import streamlit as st

from imgcls.ui import demo
from imgcls.ui.common import nav, state, teach
from imgcls.ui.evaluate import compare as eval_compare, evaluating, gallery as eval_gallery, predict as eval_predict

st.title("Evaluate")
dataset = state.active_dataset()
run_id = evaluating.run_controls(dataset)
if not run_id:
    st.info("There is no training run with a model yet. Train a model on the Train page, then come back here "
            "to see what it gets right and wrong.")
    st.page_link(nav.TRAIN.path, label="Go to the Train page", icon=":material/arrow_forward:")
    st.stop()
config = evaluating.show_run_note(run_id, dataset)
split = st.session_state.get(evaluating.SPLIT, "val")
tta = bool(st.session_state.get(evaluating.TTA, False))
result = evaluating.result_controls(run_id, split, tta)
results_tab, compare_tab, predict_tab, export_tab = st.tabs(
    ["Results", "Compare with another run", "Predict new images", "Export and share"])

with results_tab:
    if result:
        table = evaluating.predictions(run_id, result)
        st.subheader("How well it does")
        evaluating.show_metrics(result)
        evaluating.show_leaks(config["dataset"], table)

        st.subheader("What it confuses")
        st.caption("Rows are the true classes, columns the predictions; colour is the share of the row. "
                   "Click a cell to see its images.")
        eval_gallery.show_images(run_id, config["dataset"], split, result, table)  # a fragment, with the mistakes

        tag = f"{run_id}.{split}{'.tta' if tta else ''}"
        left, right = st.columns(2)
        with left:
            st.subheader("Confidence you can trust?")
            evaluating.show_reliability(result, key=f"evaluate.reliability.{tag}")
        with right:
            st.subheader("Telling each class from the rest")
            evaluating.show_roc(table, result["classes"], key=f"evaluate.roc.{tag}")

with compare_tab:
    second = eval_compare.second_run_controls(run_id, config) if result else None
    if second:
        eval_compare.show_comparison(run_id, second, result, split, tta)

with predict_tab:
    threshold = eval_predict.threshold_controls()
    st.subheader("One image at a time")
    eval_predict.show_predict(run_id, threshold)
    st.subheader("A batch: a ZIP or many images")
    eval_predict.show_batch(run_id, threshold)

with export_tab:
    st.subheader("Export")
    evaluating.show_export(run_id)
    st.subheader("Share a demo")
    demo.publish_controls(run_id)
teach.show_evaluate_code(run_id, split, tta)
