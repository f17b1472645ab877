"""Evaluate page widgets: run, split and TTA pickers, metrics, confusion matrix with its images, curves, export."""

from __future__ import annotations

import shutil
import tempfile
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from imgcls import eval_charts, runs, workspace
from imgcls.evaluate import evaluate, saved_evaluation
from imgcls.export import export_run
from imgcls.images import ImageProblem

from . import eval_gallery
from .training import run_infos

# Session-state keys of this page (plain strings).
RUN = "evaluate.run"  # id of the run evaluated
SPLIT = "evaluate.split"  # "val" or "test"
TTA = "evaluate.tta"  # average with the mirrored image
SPLITS = {"val": "Validation", "test": "Test"}
MAX_IMAGES = 24  # thumbnails shown for a confusion cell: enough to see a pattern, quick to send


# --- choosing what to evaluate ----------------------------------------------------------------------


def evaluable_runs() -> list[tuple[str, dict, dict]]:
    """Finished training runs that kept a model, newest first."""
    return [(r, c, s) for r, c, s in run_infos() if c.get("task", "train") == "train" and s.get("state") == "done"
            and (runs.run_dir(r) / "model.safetensors").exists()]


def _run_label(labels: dict, run_id: str) -> str:
    return labels.get(run_id, run_id)


def run_controls(dataset: str | None) -> str | None:
    """Pick a run: the newest finished run of the active dataset unless chosen otherwise; None if none."""
    done = evaluable_runs()
    if not done:
        return None
    ids = [r for r, _, _ in done]
    if st.session_state.get(RUN) not in ids:
        mine = [r for r in runs.model_runs(dataset) if r in ids] if dataset else []
        st.session_state[RUN] = (mine or ids)[0]
    left, middle, right = st.columns([5, 2, 3], vertical_alignment="bottom")
    run_id = left.selectbox("Run", ids, key=RUN, format_func=partial(_run_label, run_labels(done)),
                            help="Every finished training run; the newest of the active dataset comes first.")
    middle.radio("Images", list(SPLITS), format_func=SPLITS.get, key=SPLIT, horizontal=True,
                 help="Validation chose the best epoch; the test split was never used in training.")
    right.checkbox("Average with a flipped copy (TTA)", key=TTA,
                   help="Test-time augmentation: each image is also predicted mirrored left to right and the two "
                        "answers are averaged. Often a little more accurate and better calibrated; twice the work. "
                        "Results with and without it are saved separately.")
    return run_id


def run_labels(infos: list[tuple[str, dict, dict]]) -> dict[str, str]:
    """A readable label of each run: id, dataset, strategy and validation accuracy."""
    return {r: f"{r} · {c.get('dataset')} · {c.get('strategy')}"
            + (f" · {s['result']['val_accuracy']:.1%}" if (s.get("result") or {}).get("val_accuracy") is not None
               else "") for r, c, s in infos}


def evaluation_controls(run_id: str, split: str, tta: bool, again: bool = False) -> dict | None:
    """A run's metrics on a split: the saved ones when present, else computed now (and saved)."""
    result = None if again else saved_evaluation(run_id, split, tta)
    if result is None:
        try:
            with st.spinner(f"Predicting the {SPLITS[split].lower()} images"
                            + (" and their mirror images…" if tta else "…")):
                result = evaluate(run_id, split, tta)
        except (ValueError, OSError, workspace.WorkspaceError, ImageProblem) as exc:
            st.warning(f"Run {run_id} cannot be evaluated on the {SPLITS[split].lower()} split: {exc}")
            return None
    return result


# --- the evaluation -----------------------------------------------------------------------------------


def result_controls(run_id: str, split: str, tta: bool) -> dict | None:
    """The run's metrics on the split (with or without TTA): saved ones when present, else computed once,
    or anew on request."""
    again = st.button("Evaluate again", key="evaluate.recompute", icon=":material/refresh:",
                      help="Predict every image of the split anew (after fixing labels, for example).")
    return evaluation_controls(run_id, split, tta, again)


@st.cache_data(max_entries=8, show_spinner=False)
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
    extra = [f"top-{k[3:-9]} accuracy {v:.1%}" for k, v in result.items() if k.startswith("top") and v is not None]
    if result.get("roc_auc") is not None:
        extra.append(f"ROC-AUC {result['roc_auc']:.3f}")
    how = "with TTA (each image averaged with its mirror image)" if result.get("tta") else "without TTA"
    split = SPLITS.get(result.get("split"), result.get("split", "")).lower()
    st.caption(f"{result.get('images', '?')} {split} images, {how}"
               + "".join(f" · {e}" for e in extra))
    pct = st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)
    st.dataframe(eval_charts.per_class_frame(result), hide_index=True, key="evaluate.per_class",
                 column_config={"precision": pct, "recall": pct, "f1": st.column_config.NumberColumn(format="%.3f")})


def show_leaks(dataset: str, table: pd.DataFrame) -> None:
    """When the Review page's health check found copies of these images in the training set, the score
    with and without them: a leaked image is remembered, not recognised, so it flatters the model."""
    from imgcls import health

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


def _cell_label(classes: list, cell: str) -> str:
    i, j = (int(v) for v in cell.split(","))
    return f"Show images predicted as {classes[j]} that are really {classes[i]}"


def _clicked(chart_key: str, cell_key: str, classes: list, options: list) -> None:
    """A click on a cell of the matrix chooses that cell in the selectbox below it."""
    points = (st.session_state.get(chart_key) or {}).get("selection", {}).get("points", [])
    names = [str(c) for c in classes]
    if points and str(points[0].get("y")) in names and str(points[0].get("x")) in names:
        cell = f"{names.index(str(points[0]['y']))},{names.index(str(points[0]['x']))}"
        if cell in options:
            st.session_state[cell_key] = cell


def show_confusion(split: str, result: dict, table: pd.DataFrame, gallery: eval_gallery.Gallery) -> None:
    """The confusion matrix; a click on a cell (or the selectbox) shows the images in it, each fixable."""
    classes, options = result["classes"], eval_charts.cell_options(result)
    tag = f"{gallery.run_id}.{split}{'.tta' if result.get('tta') else ''}"
    chart_key, cell_key = f"evaluate.confusion.{tag}", f"evaluate.cell.{tag}"
    st.plotly_chart(eval_charts.confusion_figure(result), key=chart_key, selection_mode="points",
                    on_select=partial(_clicked, chart_key, cell_key, classes, options))
    if not options:
        return
    cell = st.selectbox("Images in a cell (or click one)", options, key=cell_key,
                        format_func=partial(_cell_label, classes))
    i, j = (int(v) for v in cell.split(","))
    rows = eval_charts.cell_rows(table, classes[i], classes[j])
    st.caption(f"{len(rows)} image{'s' if len(rows) != 1 else ''} really {classes[i]}, predicted {classes[j]}"
               + (f"; the {MAX_IMAGES} most confident shown." if len(rows) > MAX_IMAGES else "."))
    rows = rows.head(MAX_IMAGES)
    eval_gallery.show_gallery(gallery, "cell", rows, eval_gallery.cell_captions(rows))


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


def show_export(run_id: str) -> None:
    """Build the export bundle on request and offer it as a ZIP."""
    st.caption("The model as safetensors, TorchScript and ONNX, its preprocessing, a few test images with "
               "their expected outputs, a standalone predict.py and a model card.")
    if not st.button("Prepare the export", key="evaluate.export", icon=":material/package_2:"):
        return
    with st.spinner("Exporting…"), tempfile.TemporaryDirectory() as tmp:
        bundle = export_run(run_id, Path(tmp) / run_id)
        data = Path(shutil.make_archive(str(Path(tmp) / run_id), "zip", bundle)).read_bytes()
    st.download_button("Download the ZIP", data, file_name=f"{run_id}.zip", mime="application/zip",
                       key="evaluate.download", icon=":material/download:", on_click="ignore")
