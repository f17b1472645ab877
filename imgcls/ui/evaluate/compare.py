"""Two runs side by side on the same images: metrics with their differences, where their mistakes differ,
and the settings that differ (the Train page's own comparison of settings)."""

from __future__ import annotations

from functools import partial

import streamlit as st

from imgcls.charts import evaluation as eval_charts
from imgcls.evaluate import compare
from imgcls.store import runnames, runs
from imgcls.ui.common.runcompare import show_settings_diff
from imgcls.ui.common.text import plain
from imgcls.ui.evaluate.evaluating import SPLITS, evaluable_runs, evaluation_controls, run_labels

SECOND = "evaluate.second"  # id of the run compared with the one evaluated


def _label(labels: dict, run_id: str) -> str:
    return labels.get(run_id, run_id)


def second_run_controls(run_id: str, config: dict) -> str | None:
    """Pick a second run with a model (finished or stopped early) trained on the same dataset and classes;
    None until one is picked."""
    others = [(r, c, s) for r, c, s in evaluable_runs() if r != run_id and compare.comparable(config, c)]
    if not others:
        st.info("There is no other run with a model (finished, or stopped early) on the same dataset and classes "
                "to compare with. Train another one (a different strategy or backbone, say) and come back.")
        return None
    ids = [r for r, _, _ in others]
    if st.session_state.get(SECOND) not in ids:
        st.session_state[SECOND] = None  # the first run changed: its old partner may not fit
    return st.selectbox("Compare with", ids, key=SECOND, index=None, placeholder="Choose a second run",
                        format_func=partial(_label, run_labels(others)),
                        help="Runs on the same dataset with the same classes, evaluated on the same split.")


def _named(run_id: str) -> str:
    """A run's name, marked when it was stopped early (its model is its best before the stop)."""
    stopped = runs.stopped_early(runs.read_status(run_id))
    return runnames.display_name(run_id) + (" (stopped early)" if stopped else "")


def show_comparison(first_id: str, second_id: str, first: dict, split: str, tta: bool) -> None:
    """The second run evaluated like the first (on demand), then metrics, confusion difference, settings."""
    second = evaluation_controls(second_id, split, tta)
    if second is None:
        return
    st.caption(f"First: {plain(_named(first_id))}; second: {plain(_named(second_id))}. Both on the "
               f"{SPLITS[split].lower()} split, {'with' if tta else 'without'} TTA. "
               "Difference = second − first; for the calibration error lower is better.")
    if first.get("images") != second.get("images"):
        st.warning(f"The two evaluations saw different numbers of images ({plain(first.get('images'))} and "
                   f"{plain(second.get('images'))}): the dataset changed between them. Evaluate both again to compare "
                   "like with like.")
    num = st.column_config.NumberColumn(format="%.3f")
    st.dataframe(compare.metrics_table(first, second), hide_index=True, key="evaluate.compare.table",
                 column_config={"first": num, "second": num,
                                "difference": st.column_config.NumberColumn(format="%+.3f")})
    st.markdown("**Where their mistakes differ**")
    st.caption("The second run's confusion matrix minus the first's, in shares of each true class. Blue: the "
               "second run puts more of that class there, red: fewer. On the diagonal blue is better; off the "
               "diagonal red is better.")
    st.plotly_chart(eval_charts.confusion_difference_figure(first, second), key="evaluate.compare.confusion")
    show_settings_diff(*((_named(r), runs.read_config(r)) for r in (first_id, second_id)),
                       key="evaluate.compare.settings")
