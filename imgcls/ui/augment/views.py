"""Augment page, second half: the preview grid, label safety, saving and sharing, the teaching note."""

from __future__ import annotations

import json
import re
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from imgcls import jobs
from imgcls.augment import labelsafety, measurejob, preview as augpreview, spec as augspec
from imgcls.augment.pipeline import load_pipeline, save_pipeline
from imgcls.store import workspace
from imgcls.ui.augment.augmenting import (CHOICES, MEASURED, SEED, TILE_PX, UPLOAD_ERROR, UPLOAD_SEEN, VARIABILITY,
                                          set_choices)
from imgcls.ui.common import cached, state
from imgcls.ui.common.jobview import JobView, show_job, start_job
from imgcls.ui.common.text import plain
from imgcls.vision import imgcache
from imgcls.vision.preprocess import Preprocess

PER_ROW = 4  # preview tiles a row (the original and its versions), so captions keep room for their words


# --- the preview --------------------------------------------------------------------------------------


# The manifest's mtime/size key the cache: images are read again only when the dataset changes.
@st.cache_data(max_entries=32, show_spinner=False)
def _sources(folder: str, mtime_ns: int, size: int, paths: tuple, hashes: tuple, side: int,
             interpolation: str) -> np.ndarray:
    # a few preview sources: read into one array, which st.cache_data can keep
    return np.asarray(imgcache.load_images(Path(folder), list(paths), list(hashes), side, interpolation))


@st.cache_data(max_entries=64, show_spinner=False)
def _tiles(stamp: tuple, paths: tuple, hashes: tuple, side: int, interpolation: str, pipeline_json: str,
           img_size: int, k: int, seed: int) -> list[dict]:
    images = _sources(*stamp, paths, hashes, side, interpolation)
    return augpreview.preview(list(images), json.loads(pipeline_json), img_size, k, seed)


def _train_rows(dataset: str):
    df = cached.manifest(dataset)
    return df[~df["excluded"] & (df["split"] == "train")]


def train_classes(dataset: str) -> tuple:
    """The classes of the dataset's training images, sorted."""
    return tuple(sorted(_train_rows(dataset)["label"].astype(str).unique()))


def preview_controls(dataset: str):
    """Which images to preview and how many versions: (rows of the manifest, k)."""
    rows = _train_rows(dataset)
    classes = sorted(rows["label"].astype(str).unique())
    if not classes:
        st.info("This dataset has no training images to preview.")
        return None, 0
    mode = st.segmented_control("Show", ["Some classes", "One image"], key="augment.show", default="Some classes",
                                required=True)
    c1, c2 = st.columns(2)
    if mode == "One image":
        label = c1.selectbox("Class", classes, key="augment.one.class")
        mine = rows[rows["label"].astype(str) == label]
        name = c2.selectbox("Image", mine["path"].tolist()[:500], key="augment.one.image")
        k = st.slider("Versions", 1, 11, 7, key="augment.one.k")
        return mine[mine["path"] == name].head(1), k
    chosen = c1.multiselect("Classes", classes, default=classes[:4], key="augment.classes")
    n = c2.slider("Images per class", 1, 4, 1, key="augment.per_class",
                  help="How many training images of each chosen class are previewed.")
    k = st.slider("Versions of each image", 1, 6, 3, key="augment.k")
    return preview_rows(rows, chosen or classes[:4], n), k


def preview_rows(rows: pd.DataFrame, classes: list[str], per_class: int) -> pd.DataFrame | None:
    """The first `per_class` training images of each class, class by class (fewer where a class has fewer)."""
    labels = rows["label"].astype(str)
    picked = [rows[labels == c].head(per_class) for c in classes]
    picked = [p for p in picked if len(p)]
    return pd.concat(picked) if picked else None


def _resample() -> None:
    st.session_state[SEED] = int(st.session_state.get(SEED, 0)) + 1


def resample_button(where) -> None:
    """'Re-sample': new random draws for every tile (the seed moves on)."""
    where.button("Re-sample", key="augment.resample", icon=":material/casino:", on_click=_resample,
                 help="Draw new random changes for every tile.")


def show_preview(dataset: str, rows, k: int, pipeline: dict, size: int, dcfg: dict) -> None:
    """The chosen images as the model sees them, beside k augmented versions with what was drawn."""
    side = Preprocess.from_data_config(dcfg, size).side
    stamp = cached.stamp(dataset)
    try:
        tiles = _tiles(stamp, tuple(rows["path"]), tuple(rows["hash"]), side, dcfg["interpolation"],
                       json.dumps(pipeline, sort_keys=True), size, k, int(st.session_state[SEED]))
    except Exception as exc:  # an image gone since the import, or a transform failing on it
        st.error(f"The preview could not be made: {plain(augspec.plain_validation_error(exc))}")
        return
    for tile, label in zip(tiles, rows["label"].astype(str)):
        shown = [(tile["original"], f"**{plain(label)}** · original, as the model sees it")]
        shown += [(v["image"], "  \n".join(plain(breakable(a)) for a in v["applied"]) or "unchanged this time")
                  for v in tile["augmented"]]
        # at most PER_ROW tiles a row: more would squeeze each caption into a column a few words wide
        for start in range(0, len(shown), PER_ROW):
            for col, (image, caption) in zip(st.columns(PER_ROW), shown[start:start + PER_ROW]):
                col.image(image, width=min(TILE_PX, size))
                col.caption(caption)  # markdown-safe: built just above from plain(…) parts
    st.caption(f"Tiles are {int(size)}×{int(size)} px: the cached {int(side)} px square, augmented, then "
               f"centre-cropped (or resized) to {int(size)} px, exactly as in training. "
               f"Seed {int(st.session_state[SEED])}.")


def breakable(text: str) -> str:
    """A transform's description whose long names may wrap only between their words ('Random·Resized·Crop',
    with invisible break points), never inside one."""
    return re.sub(r"(?<=[a-z])(?=[A-Z])", "\u200b", text)


# --- label safety -------------------------------------------------------------------------------------


@st.cache_data(max_entries=16, show_spinner=False)
def _class_colours(stamp: tuple, side: int, interpolation: str, per_class: int = 4) -> dict:
    """Mean colour of a few training images per class (at most ~120 images read)."""
    df = workspace.read_manifest(Path(stamp[0]))
    df = df[~df["excluded"] & (df["split"] == "train")]
    groups = list(df.groupby(df["label"].astype(str), sort=True))
    per_class = max(1, min(per_class, 120 // max(len(groups), 1)))
    picked = [(label, rows.head(per_class)) for label, rows in groups]
    paths = tuple(p for _, rows in picked for p in rows["path"])
    hashes = tuple(h for _, rows in picked for h in rows["hash"])
    # read straight from the decoded cache: up to 120 squares are too big to keep in st.cache_data
    images = imgcache.load_images(Path(stamp[0]), list(paths), list(hashes), side, interpolation)
    out, start = {}, 0
    for label, rows in picked:
        out[label] = images[start:start + len(rows)]
        start += len(rows)
    return labelsafety.class_colours(out)


def _measure_key(dataset: str, pipeline: dict | None) -> str:
    return measurejob.key_of(dataset, [pipeline], str(cached.stamp(dataset)[1]))


# The measurement takes seconds to a minute on a CPU: it runs as a background job (one folder per dataset
# version and pipeline, so a second tab or a later visit finds a finished one), and the page shows its
# progress through the job view; moving a slider meanwhile does not stop it.
def _start_measure(key: str, dataset: str) -> None:
    start_job(measurejob.start, dataset, json.loads(json.dumps(st.session_state[CHOICES])), key,
              failed="The measurement could not start", errors=(workspace.WorkspaceError, OSError))


def _collect(dataset: str, key: str, status: dict) -> None:
    """A finished measurement of this pipeline: remembered for the page, or what went wrong shown."""
    if status.get("state") == "done":
        st.session_state[MEASURED] = {"home": str(workspace.home()), "dataset": dataset, "key": key}
    elif status.get("state") in ("failed", "interrupted"):
        st.error(plain(status.get("message") or "The measurement could not finish."), icon=":material/error:")


def show_label_safety(dataset: str, choices: list[dict], pipeline: dict | None, size: int, dcfg: dict) -> None:
    """Rule-of-thumb warnings, and the measured accuracy lost per transform and class, on request."""
    classes = sorted(_train_rows(dataset)["label"].astype(str).unique())
    # the class colours mean reading up to 120 images: only when a transform's warning depends on them
    colours = _class_colours(cached.stamp(dataset), Preprocess.from_data_config(dcfg, size).side,
                             dcfg["interpolation"]) if labelsafety.needs_colours(choices) else None
    # the warnings are Markdown that names the classes as given: give them as shown (escaped)
    shown = {plain(label): colour for label, colour in colours.items()} if colours else colours
    found = labelsafety.rule_warnings(choices, classes, shown)
    for text in found:
        st.warning(text, icon=":material/warning:")
    if not found:
        st.caption("No rule of thumb warns about these transforms for your classes. The measurement below "
                   "checks on your own images.")
    key = _measure_key(dataset, pipeline)
    status = measurejob.status(dataset, key)
    running = status.get("state") in jobs.ACTIVE
    # on_click starts the job before this run draws the button, so it is drawn disabled at once
    st.button("Measure what each transform does to accuracy", key="augment.measure", icon=":material/biotech:",
              disabled=pipeline is None or not choices or running, on_click=_start_measure, args=(key, dataset),
              help="Trains a quick classifier on unchanged images, then shows it validation images changed "
                   "by each transform alone. A big drop means the transform can change what the image shows.")
    if running:
        show_job(JobView(stop_key="augment.measure.stop", status=partial(measurejob.status, dataset, key),
                         stop=partial(measurejob.stop, dataset, key), device="CPU"))
    else:
        _collect(dataset, key, status)
    measured = st.session_state.get(MEASURED) or {}
    if measured.get("home") == str(workspace.home()) and measured.get("dataset") == dataset:
        saved = measurejob.result(dataset, measured["key"])
        if saved:
            show_measurement(saved, stale=measured["key"] != key)


def show_measurement(result: dict, stale: bool) -> None:
    """The heatmap of accuracy lost, the worst cases in words, and how it was measured."""
    if stale:
        st.caption("Measured for an earlier version of the pipeline: press the button again to update.")
    if not result["transforms"]:
        return
    st.plotly_chart(labelsafety.drop_figure(result), key="augment.measure.chart")
    for line in labelsafety.worst({**result, "classes": [plain(c) for c in result["classes"]]})[:5]:
        st.warning(line, icon=":material/trending_down:")
    clean = np.nanmean(result["clean"])
    st.caption(f"A linear classifier on {plain(result['backbone'])} features of {result['train_images']:,} unchanged "
               f"training images scores {clean:.0%} on {sum(result['val_per_class'])} validation images; each row "
               f"shows how many points it loses per class when every one of them is changed by that transform "
               f"alone (p = 1). With about {max(result['val_per_class'])} images per class, one image is "
               f"{100 / max(max(result['val_per_class']), 1):.0f} points. Took {result['seconds']:.1f} s.")


# --- save and share -----------------------------------------------------------------------------------


def save_controls(dataset: str, pipeline: dict | None) -> None:
    """Save with the dataset (training uses it), download as JSON, YAML or Python."""
    saved = load_pipeline(dataset)
    if saved is None:
        st.caption("Not saved yet: training on this dataset uses the **light** preset until you save.")
    elif pipeline == saved:
        st.caption(":material/check_circle: Saved: every training run on this dataset uses this pipeline.")
    else:
        st.caption(":material/edit: Unsaved changes: training still uses the pipeline saved earlier.")
    row = st.container(horizontal=True)
    if row.button("Save with the dataset", key="augment.save", type="primary", icon=":material/save:",
                  disabled=pipeline is None or pipeline == saved):
        try:
            save_pipeline(dataset, pipeline)
        except (ValueError, OSError) as exc:
            st.error(f"The pipeline could not be saved: {plain(exc)}")
        else:
            state.flash(f"Saved the augmentation pipeline with '{plain(dataset)}': training runs will use it.")
            st.rerun()
    if pipeline is None:
        return
    for fmt, text, mime in (("json", augpreview.to_json(pipeline), "application/json"),
                            ("yaml", augpreview.to_yaml(pipeline), "application/yaml"),
                            ("py", augpreview.to_python(pipeline), "text/x-python")):
        row.download_button(f"Download .{plain(fmt)}", text, file_name=f"{dataset}-augment.{fmt}", mime=mime,
                            key=f"augment.download.{fmt}", on_click="ignore", icon=":material/download:")
    with st.expander("Python code that rebuilds this pipeline"):
        st.code(augpreview.to_python(pipeline), language="python")


def upload_controls() -> None:
    """Replace the pipeline by an uploaded JSON or YAML file; a bad file leaves the pipeline as it was."""
    upload = st.file_uploader("Open a pipeline file (JSON or YAML)", type=["json", "yaml", "yml"],
                              key="augment.upload", max_upload_size=1, help="A file downloaded from this page, or albumentations' "
                              "own A.save(…) output. Nothing in it is run: it is only read as data.")
    if upload is None:
        return
    if upload.file_id != st.session_state.get(UPLOAD_SEEN):
        st.session_state[UPLOAD_SEEN] = upload.file_id
        st.session_state.pop(UPLOAD_ERROR, None)
        try:
            data = upload.getvalue()
            loaded = augpreview.from_upload(data, upload.name)
            choices = augspec.choices_from_pipeline(loaded)
        except ValueError as exc:
            st.session_state[UPLOAD_ERROR] = (upload.file_id, str(exc))
        else:
            set_choices(choices)
            state.flash(f"Opened {plain(upload.name)}: {len(choices)} transforms. Save to use it for training.")
            st.rerun()
    error = st.session_state.get(UPLOAD_ERROR)
    if error and error[0] == upload.file_id:
        st.error(f"{plain(error[1])} The pipeline was not changed.")


def show_intro() -> None:
    """Why augmentation helps, and which transform answers which variation."""
    st.markdown("The same object never looks the same twice: photos of it differ in **size, position, "
                "orientation, lighting and background**. Augmentation shows the model randomly changed copies "
                "of each training image, so it learns to ignore those accidents and to look at what makes "
                "the class. Choose changes that happen in real photos of your classes, and never one that "
                "turns an image into another class.")
    with st.expander("Which transform for which variation"):
        st.markdown(VARIABILITY)
        st.caption("Augmentation changes images while a network trains (strategies finetune, full and scratch). "
                   "The 'Last layer only (linear)' strategy trains on features of the unchanged images, once.")
