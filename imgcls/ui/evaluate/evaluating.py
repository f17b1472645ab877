"""Evaluate page widgets: run, split and TTA pickers, metrics, confusion matrix with its images, curves, export."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from imgcls import jobs
from imgcls.charts import evaluation as eval_charts
from imgcls.evaluate import export, exportjob
from imgcls.evaluate.evaluation import evaluate, saved_evaluation
from imgcls.ingest.images import ImageProblem
from imgcls.store import runnames, runs, workspace
from imgcls.ui.common.jobview import JobView, show_job, start_job
from imgcls.ui.common.run_names import rename_controls
from imgcls.ui.common.runlist import \
    run_infos  # not .training: that imports torch, which this page needs only for a model
from imgcls.ui.common.text import code, plain

# Session-state keys of this page (plain strings).
RUN = "evaluate.run"  # id of the run evaluated
SPLIT = "evaluate.split"  # "val" or "test"
TTA = "evaluate.tta"  # average with the mirrored image
SPLITS = {"val": "Validation", "test": "Test"}


# --- choosing what to evaluate ----------------------------------------------------------------------


def evaluable_runs() -> list[tuple[str, dict, dict]]:
    """Training runs with a model (finished, or stopped early after saving one), newest first."""
    return [(r, c, s) for r, c, s in run_infos() if runs.usable(r, c, s)]


def _run_label(labels: dict, run_id: str) -> str:
    return labels.get(run_id, run_id)


def run_controls(dataset: str | None) -> str | None:
    """Pick a run: the newest run with a model of the active dataset unless chosen otherwise; None if none."""
    done = evaluable_runs()
    if not done:
        return None
    ids = [r for r, _, _ in done]
    if st.session_state.get(RUN) not in ids:
        mine = [r for r in runs.model_runs(dataset) if r in ids] if dataset else []
        st.session_state[RUN] = (mine or ids)[0]
    left, middle, right = st.columns([5, 2, 3], vertical_alignment="bottom")
    run_id = left.selectbox("Run", ids, key=RUN, format_func=partial(_run_label, run_labels(done)),
                            help="Every training run with a model, also those stopped early (they keep their "
                                 "best model so far); the newest of the active dataset comes first.")
    middle.radio("Images", list(SPLITS), format_func=SPLITS.get, key=SPLIT, horizontal=True,
                 help="Validation chose the best epoch; the test split was never used in training.")
    right.checkbox("Average with a flipped copy (TTA)", key=TTA,
                   help="Test-time augmentation: each image is also predicted mirrored left to right and the two "
                        "answers are averaged. Often a little more accurate and better calibrated; twice the work. "
                        "Results with and without it are saved separately.")
    return run_id


def run_labels(infos: list[tuple[str, dict, dict]]) -> dict[str, str]:
    """A readable label of each run: name, dataset, strategy, validation accuracy, 'stopped early'."""
    return {r: runnames.describe(r, c, s) for r, c, s in infos}


def show_run_note(run_id: str, dataset: str) -> dict:
    """Under the picker: a stopped run's story (which model it kept), the id for the command line, Rename,
    and whether it was trained on another dataset than the active one; the run's config."""
    config, status = runs.read_config(run_id), runs.read_status(run_id)
    left, right = st.columns([5, 1], vertical_alignment="center")
    if runs.stopped_early(status):
        left.warning(plain(runs.stopped_summary(config, status)) + " Everything below uses that model.",
                     icon=":material/pause_circle:")
    left.caption(f"Run id {code(run_id)}, for the command line.")
    with right:
        rename_controls(run_id, "evaluate")
    if config.get("dataset") != dataset:
        st.caption(f"This run was trained on '{plain(config.get('dataset'))}', not on the active dataset.")
    return config


def evaluation_controls(run_id: str, split: str, tta: bool, again: bool = False) -> dict | None:
    """A run's metrics on a split: the saved ones when present, else computed now (and saved)."""
    result = None if again else saved_evaluation(run_id, split, tta)
    if result is None:
        try:
            with st.spinner(f"Predicting the {SPLITS[split].lower()} images"
                            + (" and their mirror images…" if tta else "…")):
                result = evaluate(run_id, split, tta)
        except (ValueError, OSError, workspace.WorkspaceError, ImageProblem) as exc:
            st.warning(f"Run {plain(runnames.display_name(run_id))} cannot be evaluated on the "
                       f"{SPLITS[split].lower()} split: {plain(exc)}")
            return None
    return result


# --- the evaluation -----------------------------------------------------------------------------------


def result_controls(run_id: str, split: str, tta: bool) -> dict | None:
    """The run's metrics on the split (with or without TTA): saved ones when present, else computed once,
    or anew on request."""
    again = st.button("Evaluate again", key="evaluate.recompute", icon=":material/refresh:",
                      help="Predict every image of the split anew (after fixing labels, for example).")
    return evaluation_controls(run_id, split, tta, again)


@st.cache_data(max_entries=8, show_spinner=False)  # by absolute path: each workspace's own file
def _table(path: str, mtime_ns: int) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False)


def predictions(run_id: str, result: dict) -> pd.DataFrame:
    """The per-image predictions of an evaluation, read again only when the file changes."""
    path = runs.run_dir(run_id) / Path(result["predictions"]).name  # the workspace may have moved
    table = _table(str(path), path.stat().st_mtime_ns)
    return table.assign(correct=table["correct"].astype(str).str.lower() == "true")


def show_metrics(result: dict) -> None:
    """Headline numbers and the per-class table."""
    cols = st.columns(4)
    cols[0].metric("Accuracy", f"{result['accuracy']:.1%}", help="Share of images predicted right.")
    cols[1].metric("Balanced accuracy", f"{result['balanced_accuracy']:.1%}",
                   help="Mean recall over classes: a rare class counts as much as a common one.")
    cols[2].metric("Macro F1", f"{result['macro_f1']:.3f}", help="Mean F1 over classes (1 is perfect).")
    cols[3].metric("Calibration error (ECE)", f"{result['ece']:.3f}",
                   help="How far confidence is from accuracy on average (0 is perfect).")
    extra = [f"top-{plain(k[3:-9])} accuracy {v:.1%}" for k, v in result.items() if k.startswith("top") and v is not None]
    if result.get("roc_auc") is not None:
        extra.append(f"ROC-AUC {result['roc_auc']:.3f}")
    how = "with TTA (each image averaged with its mirror image)" if result.get("tta") else "without TTA"
    split = SPLITS.get(result.get("split"), result.get("split", "")).lower()
    st.caption(f"{plain(result.get('images', '?'))} {plain(split)} images, {how}"
               + "".join(f" · {e}" for e in extra))
    # one decimal, as every share on this page (the "percent" preset drops trailing zeros: 81.82% beside 80%)
    pct = st.column_config.ProgressColumn(format=eval_charts.PERCENT_COLUMN, min_value=0, max_value=100)
    st.dataframe(eval_charts.per_class_frame(result, percent_scale=True), hide_index=True, key="evaluate.per_class",
                 column_config={"precision": pct, "recall": pct, "f1": st.column_config.NumberColumn(format="%.3f")})


def show_leaks(dataset: str, table: pd.DataFrame) -> None:
    """When the Review page's health check found copies of these images in the training set, the score
    with and without them: a leaked image is remembered, not recognised, so it flatters the model."""
    from imgcls.health import check as health

    report = health.load(dataset) or {}
    leaked: set[str] = set()
    for finding in report.get("findings", []):
        if finding.get("kind") == "leakage":
            leaked.update(finding.get("images", []))
    hit = table["path"].isin(leaked)
    if not hit.any():
        return
    correct = table["correct"].astype(str).str.lower().isin(["true", "1"])
    clean = f"{correct[~hit].mean():.1%}" if (~hit).any() else "not measurable (every image leaked)"
    stale = " (That check was made before later edits; check again on the Review page.)" \
        if health.is_stale(dataset, report) else ""
    st.warning(f"{int(hit.sum())} of these {len(table)} images have a copy (or a near copy) in the training set, "
               f"found by the health check on the Review page. Accuracy is {correct.mean():.1%} with them and "
               f"{clean} without them; the second is the fairer figure. Remove the copies on the Review page.{stale}",
               icon=":material/content_copy:")


# --- images and curves ------------------------------------------------------------------------------


def show_reliability(result: dict, key: str) -> None:
    """Reliability diagram: does 80% confidence mean right 80% of the time?"""
    st.plotly_chart(eval_charts.reliability_figure(result), key=key)
    st.caption("Bars under the diagonal: the model is over-confident at that confidence; above: under-confident.")


def show_roc(table: pd.DataFrame, classes: list[str], key: str) -> None:
    """One-vs-rest ROC curves: how well each class's probability ranks its images above the others'."""
    st.plotly_chart(eval_charts.roc_figure(table, classes), key=key)
    st.caption("Each curve sweeps the threshold on one class's probability: up and to the left is better; "
               "the area under it (AUC) is 1 for a perfect ranking, 0.5 for chance."
               + (" A class with no image in this split has no curve." if
                  len(eval_charts.roc_curves(table, classes)) < (1 if len(classes) == 2 else len(classes)) else ""))


@st.fragment  # the button reruns this section only
def show_export(run_id: str) -> None:
    """Build the export bundle on request, as a background job (once per model), and offer it as a ZIP, read
    when downloaded."""
    st.caption("The model as safetensors, a torch.export program (.pt2), ONNX, TFLite and Core ML, its "
               "preprocessing, a few test images with their expected outputs, a standalone predict.py and a model "
               "card saying what runs each file and how closely each agrees with the app.")
    bundle, status = exportjob.ready(run_id), exportjob.status(run_id)
    if bundle is None and status.get("state") in jobs.ACTIVE:
        show_job(JobView(stop_key="evaluate.export.stop", status=partial(exportjob.status, run_id),
                         stop=partial(exportjob.stop, run_id), device="CPU"))
        return
    if bundle is None:
        if status.get("state") in ("failed", "interrupted"):
            st.error(plain(status.get("message") or "The export could not finish."), icon=":material/error:")
        if st.button("Prepare the export", key="evaluate.export", icon=":material/package_2:") and \
                start_job(exportjob.start, run_id, failed="The export could not start"):
            st.rerun(scope="fragment")  # now with its progress
        return
    st.caption(f"The bundle of {plain(runnames.display_name(run_id))}; its model card names the run"
               + (" and says it was stopped early." if runs.stopped_early(runs.read_status(run_id)) else "."))
    st.download_button("Download the ZIP", bundle.read_bytes, file_name=f"{run_id}.zip", mime="application/zip",
                       key="evaluate.download", icon=":material/download:", on_click="ignore")
    if left := export.skipped(bundle):
        st.caption("Not in this bundle: " + "; ".join(plain(line) for line in left) + ".")
