"""The Learn page's experiments: pick one, run it in the background, watch it, read the measured result."""

from __future__ import annotations

from functools import partial

import pandas as pd
import streamlit as st

from imgcls import jobs
from imgcls.lab import experiments
from imgcls.lab.experiments import ExperimentConfig
from imgcls.teach.concepts import card
from imgcls.ui.common import state, teach
from imgcls.ui.common.jobview import JobView, show_job, start_job
from imgcls.ui.common.text import plain

KIND = state.LEARN_EXPERIMENT
MODE = "learn.experiment.mode"
TITLES = {kind: card(kind).question for kind in experiments.KINDS}
ACTIVE = jobs.ACTIVE


def kind_controls() -> tuple[str, str]:
    """The experiment and the mode (quick: linear probe on cached features; thorough: fine-tuning runs)."""
    kind = st.radio("Experiment", list(experiments.KINDS), key=KIND, format_func=TITLES.get, horizontal=True)
    st.caption(experiments.KINDS[kind])
    mode = st.segmented_control(
        "Mode", list(experiments.MODES), key=MODE, default="quick",
        format_func={"quick": "Quick (a minute or two)", "thorough": "Thorough (fine-tunes; slow on a CPU)"}.get,
        help="Quick trains only a last layer on cached features, so each point takes seconds. Thorough fine-tunes "
             "the network for each point, as the Train page does.") or "quick"
    return kind, mode


def latest(dataset: str, kind: str) -> dict | None:
    """The newest experiment of this kind on the dataset (any state)."""
    return next((e for e in experiments.list_experiments(dataset) if e["kind"] == kind), None)


def start_controls(dataset: str, kind: str, mode: str, busy: bool) -> None:
    """Start button (or Stop while one runs)."""
    if busy:
        return
    if st.button("Run this experiment", key=f"learn.experiment.start.{kind}", type="primary",
                 icon=":material/science:"):
        if start_job(experiments.start, ExperimentConfig(kind=kind, dataset=dataset, mode=mode),
                     failed="The experiment could not start"):
            st.rerun()


def show_live(exp_id: str) -> None:
    """A queued or running experiment: its place in line or progress, with Stop; the page is drawn again
    when it ends (the result section appears)."""
    show_job(JobView(stop_key=f"learn.experiment.stop.{exp_id}", status=partial(experiments.status, exp_id),
                     stop=partial(experiments.stop, exp_id)))


def show_result(info: dict) -> None:
    """The plot, the conclusion written from the numbers, the table and the code to repeat it."""
    state = info.get("state")
    if state in ("failed", "cancelled", "interrupted"):
        st.warning(f"The last {plain(info['kind'])} experiment {plain(state)}: "
                   f"{plain(info.get('message') or 'no details')}")
        return
    result = experiments.result(info["id"])
    if not result:
        return
    st.plotly_chart(experiments.figure(result), key=f"learn.experiment.figure.{info['id']}")
    st.success(plain(result["conclusion"]), icon=":material/lightbulb:")
    st.caption(f"{plain(result['mode'].capitalize())} mode, seed {plain(result.get('seed', 0))}, "
               f"{result['seconds']:.0f} s ({plain(info['id'])}).")
    if result.get("table"):
        with st.expander("The numbers"):
            st.dataframe(pd.DataFrame(result["table"]), hide_index=True)
    teach.show_code(
        "from imgcls.lab.experiments import ExperimentConfig, run_experiment, figure\n\n"
        f"result = run_experiment(ExperimentConfig(kind={result['kind']!r}, dataset={result['dataset']!r}, "
        f"mode={result['mode']!r}, seed={result.get('seed', 0)}))\n"
        "print(result['conclusion'])\nfigure(result).show()\n",
        "runs this experiment and draws its plot")


def show_experiment(dataset: str | None) -> None:
    """The experiments section of the Learn page."""
    if not dataset:
        st.info("Import a dataset on the Data page (the shapes or digits sample works well) to run experiments.")
        return
    kind, mode = kind_controls()
    info = latest(dataset, kind)
    teach.show_concept(kind, expanded=not info, on_learn=True)  # the idea first; once measured, the plot first
    busy = bool(info and info.get("state") in ACTIVE)
    start_controls(dataset, kind, mode, busy)
    if busy:
        show_live(info["id"])
    elif info:
        show_result(info)
    else:
        st.caption("Not run yet on this dataset.")
