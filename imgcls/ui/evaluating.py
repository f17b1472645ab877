"""Evaluate page widgets: run picker, metrics, confusion matrix with its images, mistakes, predict, export."""

from __future__ import annotations

import shutil
import tempfile
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from imgcls import eval_charts, runs, workspace
from imgcls.evaluate import evaluate
from imgcls.export import export_run
from imgcls.images import ImageProblem
from imgcls.predict import Predictor
from imgcls.thumbs import thumbnail_path

from .training import run_infos

# Session-state keys of this page (plain strings).
RUN = "evaluate.run"  # id of the run evaluated
SPLIT = "evaluate.split"  # "val" or "test"
SPLITS = {"val": "Validation", "test": "Test"}
THUMB_PX = 128
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
        mine = [r for r, c, _ in done if c.get("dataset") == dataset]
        st.session_state[RUN] = (mine or ids)[0]
    labels = {r: f"{r} · {c.get('dataset')} · {c.get('strategy')}"
              + (f" · {s['result']['val_accuracy']:.1%}" if (s.get("result") or {}).get("val_accuracy") is not None
                 else "") for r, c, s in done}
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    run_id = left.selectbox("Run", ids, key=RUN, format_func=partial(_run_label, labels),
                            help="Every finished training run; the newest of the active dataset comes first.")
    right.radio("Images", list(SPLITS), format_func=SPLITS.get, key=SPLIT, horizontal=True,
                help="Validation chose the best epoch; the test split was never used in training.")
    return run_id


# --- the evaluation -----------------------------------------------------------------------------------


def _saved(run_id: str, split: str) -> dict | None:
    """The evaluation saved with the run, unless the model is newer than it."""
    folder = runs.run_dir(run_id)
    path = folder / f"evaluation-{split}.json"
    if not path.exists() or path.stat().st_mtime < (folder / "model.safetensors").stat().st_mtime:
        return None
    return workspace.read_json(path)


def result_controls(run_id: str, split: str) -> dict | None:
    """The run's metrics on the split: saved ones when present, computed once otherwise or on request."""
    again = st.button("Evaluate again", key="evaluate.recompute", icon=":material/refresh:",
                      help="Predict every image of the split anew (after editing labels, for example).")
    result = None if again else _saved(run_id, split)
    if result is None:
        try:
            with st.spinner(f"Predicting the {SPLITS[split].lower()} images…"):
                result = evaluate(run_id, split)
        except (ValueError, OSError, workspace.WorkspaceError, ImageProblem) as exc:
            st.warning(f"This run cannot be evaluated on the {SPLITS[split].lower()} split: {exc}")
            return None
    return result


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
    st.caption(f"{result.get('images', '?')} images" + "".join(f" · {e}" for e in extra))
    pct = st.column_config.ProgressColumn(format="percent", min_value=0, max_value=1)
    st.dataframe(eval_charts.per_class_frame(result), hide_index=True, key="evaluate.per_class",
                 column_config={"precision": pct, "recall": pct, "f1": st.column_config.NumberColumn(format="%.3f")})


# --- images -------------------------------------------------------------------------------------------


def show_images(dataset: str, rows: pd.DataFrame, captions: list[str]) -> None:
    """Thumbnails of prediction rows (made on first use); unreadable files are counted, not fatal."""
    folder = workspace.dataset_dir(dataset)
    paths, shown, broken = [], [], 0
    for row, caption in zip(rows.itertuples(index=False), captions):
        try:
            paths.append(str(thumbnail_path(folder, row.path, row.hash, THUMB_PX)))
            shown.append(caption)
        except (ImageProblem, OSError):
            broken += 1
    if paths:
        st.image(paths, caption=shown, width=THUMB_PX)
    if broken:
        st.warning(f"{broken} images could not be read; they may have been removed or damaged.")


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


def show_confusion(run_id: str, split: str, result: dict, table: pd.DataFrame, dataset: str) -> None:
    """The confusion matrix; a click on a cell (or the selectbox) shows the images in it."""
    classes, options = result["classes"], eval_charts.cell_options(result)
    chart_key, cell_key = f"evaluate.confusion.{run_id}.{split}", f"evaluate.cell.{run_id}.{split}"
    st.plotly_chart(eval_charts.confusion_figure(result), key=chart_key, selection_mode="points",
                    on_select=partial(_clicked, chart_key, cell_key, classes, options))
    if not options:
        return
    cell = st.selectbox("Images in a cell (or click one)", options, key=cell_key,
                        format_func=partial(_cell_label, classes))
    i, j = (int(v) for v in cell.split(","))
    rows = eval_charts.cell_rows(table, classes[i], classes[j])
    st.caption(f"{len(rows)} images really {classes[i]}, predicted {classes[j]}"
               + (f"; the {MAX_IMAGES} most confident shown." if len(rows) > MAX_IMAGES else "."))
    rows = rows.head(MAX_IMAGES)
    names = rows["source"] if "source" in rows else rows["path"]  # tables saved before 'source' existed
    show_images(dataset, rows, [f"{Path(str(n)).name} · {c:.0%}" for n, c in zip(names, rows["confidence"])])


def show_worst(table: pd.DataFrame, dataset: str) -> None:
    """The most confident wrong predictions: often a wrong label, sometimes a real blind spot."""
    worst = eval_charts.worst_mistakes(table)
    if worst.empty:
        st.success("No mistakes on these images.")
        return
    show_images(dataset, worst, [f"really {t} → {p} · {c:.0%}"
                                 for t, p, c in zip(worst["label"], worst["prediction"], worst["confidence"])])


def show_reliability(result: dict, key: str) -> None:
    """Reliability diagram: does 80% confidence mean right 80% of the time?"""
    st.plotly_chart(eval_charts.reliability_figure(result), key=key)
    st.caption("Bars under the diagonal: the model is over-confident at that confidence; above: under-confident.")


# --- predicting new images ----------------------------------------------------------------------------


@st.cache_resource(max_entries=2, show_spinner=False)
def _predictor(run_id: str, mtime_ns: int) -> Predictor:
    return Predictor(run_id)  # read-only after loading: safe to share between sessions


def show_predict(run_id: str) -> None:
    """Upload images (or take a photo) and see the top classes of each; bad files are named, not fatal."""
    left, right = st.columns(2)
    threshold = left.slider("Not sure below", 0.0, 1.0, 0.5, 0.05, key="evaluate.not_sure",
                            help="Below this confidence the answer is 'not sure' instead of a class.")
    camera = right.toggle("Use the camera", key="evaluate.use_camera")
    cam = right.toggle("Show where it looks (Grad-CAM)", key="evaluate.gradcam",
                       help="Colours the parts of the image that pushed the model towards its answer: red most.")
    uploads = st.file_uploader("Images to classify", accept_multiple_files=True, key="evaluate.upload")
    files = [(f.name, f.getvalue()) for f in uploads or []]
    if camera:
        photo = st.camera_input("Take a photo", key="evaluate.camera")
        if photo is not None:
            files.append(("camera photo", photo.getvalue()))
    if not files:
        return
    model = runs.run_dir(run_id) / "model.safetensors"
    predictor = _predictor(run_id, model.stat().st_mtime_ns)
    rows = predictor.predict(files, top_k=3, min_confidence=threshold)
    data = dict(files)
    for n, row in enumerate(rows):
        if "error" in row:
            st.error(f"Could not read {row['file']}: {row['error']}")
            continue
        image, bars = st.columns([1, 3], vertical_alignment="center")
        shown = predictor.explain(data[row["file"]])["overlay"] if cam else data[row["file"]]
        image.image(shown, width=THUMB_PX, caption="Grad-CAM of the top class" if cam else None)
        bars.markdown(f"**{row['file']}**: {row['prediction']} ({row['confidence']:.0%})")
        bars.plotly_chart(eval_charts.top_k_figure(row["top"]), key=f"evaluate.predict.{n}")


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
