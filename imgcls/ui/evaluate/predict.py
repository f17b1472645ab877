"""Predicting new images: one model per run shared by the Evaluate and Demo pages, single images with
Grad-CAM, and whole batches (ZIPs) as a table with a CSV download."""

from __future__ import annotations

import io
import zipfile
import zlib

import streamlit as st
from PIL import Image

from imgcls.charts import evaluation as eval_charts
from imgcls.charts.evaluation import PERCENT_COLUMN, percent
from imgcls.evaluate.predict import (OVERLAY_QUALITY, UNFAMILIAR, Predictor, not_sure, predictions_frame, read_uploads,
                                     to_csv)
from imgcls.ingest.sources import SourceError
from imgcls.store import runs, workspace
from imgcls.ui.common.text import plain

THUMB_PX = 128
CHUNK = 32  # images predicted (and cached) together: the progress bar moves once per chunk
LEGEND_ENDS = "blue: no evidence, red: the most"  # under the colour bar
LEGEND = ("Blue where nothing pushed the model towards the answer shown, through green and yellow, to red where "
          "the most did. Each image is scaled to its own strongest evidence: compare places within an image, not "
          "colours between images.")


def model_stamp(run_id: str) -> int:
    """The model file's mtime: a retrained or replaced model gets a fresh cache entry."""
    return (runs.run_dir(run_id) / "model.safetensors").stat().st_mtime_ns


# Every cache below is keyed by the workspace root as well as the run id: two people's workspaces can hold
# runs of the same id, and the Demo page predicts in its owner's workspace for visitors.
@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def _load(root: str, run_id: str, stamp: int) -> Predictor:
    with workspace.use(root):
        return Predictor(run_id)


def predictor(run_id: str) -> Predictor:
    """The run's model in the current workspace, loaded once per model file and shared by every session and
    both pages. Read-only: nothing may change it after loading."""
    return _load(str(workspace.home()), run_id, model_stamp(run_id))


def threshold_controls(key: str = "evaluate.not_sure") -> float:
    """The confidence below which the answer is 'not sure'."""
    return st.slider("Not sure below", 0.0, 1.0, 0.5, 0.05, key=key,
                     help="Below this confidence the answer is 'not sure' instead of a class.")


def show_unfamiliar(row: dict) -> None:
    """The plain warning for an image far from every training image."""
    if row.get("unfamiliar"):
        st.warning(UNFAMILIAR, icon=":material/help:")


@st.cache_data(max_entries=256, show_spinner=False)
def _one(root: str, run_id: str, stamp: int, data: bytes, explain: bool) -> tuple[dict, bytes | None]:
    # one upload's answer (and Grad-CAM as JPEG bytes), keyed by its bytes: adding a second image, moving the
    # threshold or toggling the camera predicts nothing again
    model = _load(root, run_id, stamp)
    with workspace.use(root):  # the unfamiliar-image check reads the run folder
        row = model.predict([("", data)], top_k=3)[0]
        if "error" in row or not explain:
            return row, None
        overlay = model.explain(data)["overlay"]
    buf = io.BytesIO()
    Image.fromarray(overlay).save(buf, format="JPEG", quality=OVERLAY_QUALITY)
    return row, buf.getvalue()


def answer(run_id: str, data: bytes, explain: bool = False) -> tuple[dict, bytes | None]:
    """One image's top classes by the run's model in the current workspace (and its Grad-CAM overlay as JPEG
    bytes when asked), computed once per image and model."""
    return _one(str(workspace.home()), run_id, model_stamp(run_id), data, explain)


def ready_model(run_id: str) -> Predictor:
    """The run's model, with what it needs to tell unfamiliar images (built once per model, saved with the run,
    under a spinner that says why the first prediction waits)."""
    model = predictor(run_id)
    if not model.reference_ready:
        with st.spinner("Comparing with the training images, once for this model…"):
            model.reference  # noqa: B018 - built and saved with the run on first access
    return model


@st.fragment
def show_predict(run_id: str, threshold: float) -> None:
    """Upload images (or take a photo) and see the top classes of each; bad files are named, not fatal. A
    fragment: an upload reruns this section only."""
    left, right = st.columns(2)
    camera = left.toggle("Use the camera", key="evaluate.use_camera")
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
    if cam:
        show_overlay_legend()
    ready_model(run_id)
    # one row per file, in order: by position, since two uploads (or two photos) can share a name
    for n, (name, data) in enumerate(files):
        found, overlay = answer(run_id, data, cam)
        row = not_sure([{**found, "file": name}], threshold)[0]
        if "error" in row:
            st.error(f"Could not read {plain(row['file'])}: {plain(row['error'])}")
            continue
        image, bars = st.columns([1, 3], vertical_alignment="center")
        image.image(overlay if cam else data, width=THUMB_PX, caption="Grad-CAM of the top class" if cam else None)
        with bars:
            st.markdown(f"**{plain(row['file'])}**: {plain(row['prediction'])} ({percent(row['confidence'])})")
            show_unfamiliar(row)
            st.plotly_chart(eval_charts.top_k_figure(row["top"]), key=f"evaluate.predict.{n}")


def show_overlay_legend(caption: str = LEGEND) -> None:
    """What the Grad-CAM colours mean: the palette as a bar from no evidence to the most, and a sentence."""
    from imgcls.vision.gradcam import colour_bar  # the overlays need torch anyway

    bar, words = st.columns([2, 5], vertical_alignment="center")
    bar.image(colour_bar(), caption=LEGEND_ENDS, width=240)
    words.caption(caption)


@st.cache_data(max_entries=512, show_spinner=False)
def _chunk(root: str, run_id: str, stamp: int, files: tuple[tuple[str, bytes], ...]) -> list[dict]:
    # keyed by the files' names and bytes: a rerun (a slider moved, a tab clicked) predicts nothing again
    model = _load(root, run_id, stamp)
    with workspace.use(root):
        return model.predict(files, top_k=3)


def _read(files: list) -> tuple[list[tuple[str, bytes]], list[dict]]:
    """The bytes of a chunk of (name, reader) pairs; a member that fails to unpack becomes an error row."""
    good, bad = [], []
    for name, read in files:
        try:
            good.append((name, read()))
        except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as exc:
            bad.append({"file": name, "error": f"unreadable: {exc}"})
    return good, bad


def batch_rows(run_id: str, files: list) -> list[dict]:
    """Predictions of many (name, reader) files with no threshold, a progress bar while it takes a while."""
    root, stamp, rows = str(workspace.home()), model_stamp(run_id), []
    predictor(run_id)  # load outside the cached chunks, under its own spinner
    bar = st.progress(0.0, text=f"Predicting {len(files):,} images…") if len(files) > CHUNK else None
    for start in range(0, len(files), CHUNK):
        good, bad = _read(files[start:start + CHUNK])
        rows += _chunk(root, run_id, stamp, tuple(good)) + bad
        if bar:
            bar.progress(min(start + CHUNK, len(files)) / len(files), text=f"Predicting {len(files):,} images…")
    if bar:
        bar.empty()
    return rows


@st.fragment
def show_batch(run_id: str, threshold: float) -> None:
    """A ZIP of images (or many images) → a predictions table and its CSV; unreadable files are listed. A
    fragment: an upload reruns this section only."""
    uploads = st.file_uploader("A ZIP of images, or many images", accept_multiple_files=True,
                               key="evaluate.batch_upload",
                               help="Every image inside the ZIP is predicted; folders inside it are fine.")
    if not uploads:
        st.caption("The answers come as a table you can download as CSV, with a column that flags images unlike "
                   "the training images.")
        return
    try:
        files, errors = read_uploads([(f.name, f.getvalue()) for f in uploads])
    except SourceError as exc:
        st.error(plain(exc))
        return
    ready_model(run_id)
    rows = not_sure(batch_rows(run_id, files), threshold) + errors
    problems = [r for r in rows if "error" in r]
    odd = sum(bool(r.get("unfamiliar")) for r in rows)
    done = len(rows) - len(problems)
    st.markdown(f"**{done:,} image{'s' if done != 1 else ''} predicted**"
                + (f", {len(problems):,} could not be" if problems else "")
                + (f"; {odd:,} look{'s' if odd == 1 else ''} unlike the training images, so "
                   f"{'its answer' if odd == 1 else 'their answers'} may be meaningless." if odd else "."))
    if problems:
        shown = "\n".join(f"- **{plain(r['file'])}**: {plain(r['error'])}" for r in problems[:20])
        st.error(f"These files were skipped, the rest went on:\n{shown}"
                 + (f"\n\n…and {len(problems) - 20:,} more (all in the CSV)." if len(problems) > 20 else ""))
    frame = predictions_frame(rows).assign(confidence=lambda f: f["confidence"] * 100)  # shown as 81.8%
    st.dataframe(frame, hide_index=True, key="evaluate.batch_table", column_config={
        "confidence": st.column_config.ProgressColumn(format=PERCENT_COLUMN, min_value=0, max_value=100),
        "unfamiliar": st.column_config.CheckboxColumn("unlike training", help=UNFAMILIAR)})
    st.download_button("Download the predictions (CSV)", to_csv(rows, predictor(run_id).classes),
                       file_name=f"predictions-{run_id}.csv", mime="text/csv", key="evaluate.batch_download",
                       icon=":material/download:", on_click="ignore")
