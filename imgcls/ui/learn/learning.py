"""The Learn page's "Inside the network" views: filters, feature maps, Grad-CAM and the ImageNet guess."""

from __future__ import annotations

from functools import partial

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from imgcls.ingest import images
from imgcls.store import runnames, runs, versions, workspace
from imgcls.ui.common import cached
from imgcls.ui.common.text import plain
from imgcls.ui.evaluate.predict import predictor
from imgcls.vision import inside
from imgcls.vision.models import DEFAULT_BACKBONE, create_model, data_config

PICK = "learn.image.pick"  # which dataset image the views look at (its manifest path)
UPLOAD = "learn.image.upload"
SHOWN_MAPS = 4  # most active channels shown per stage: enough to see variety, each big enough to compare
MAP_PX = 176  # display width of the input and of every map beside it


# The views below depend only on the pretrained weights and the image bytes, never on a workspace: shared.
@st.cache_resource(max_entries=1, show_spinner="Loading the pretrained network…")
def _imagenet_model():
    """The default backbone with its original 1,000-class ImageNet head (never modified after loading)."""
    return create_model(DEFAULT_BACKBONE, 1000).eval()


@st.cache_data(max_entries=2, show_spinner=False)
def _filters() -> np.ndarray:
    return inside.filter_grid(_imagenet_model(), cell=28)


@st.cache_data(max_entries=8, show_spinner="Looking inside the network…")
def _views(data: bytes) -> dict:
    model = _imagenet_model()
    dcfg = data_config(model)
    image = inside.prepare(images.decode(data), dcfg)
    return {"image": image, "maps": inside.feature_maps(model, image, dcfg, top=SHOWN_MAPS),
            "top": inside.imagenet_top(model, image, dcfg)}


def show_filters() -> None:
    """The first layer's filters as a grid, with how to read it."""
    model = _imagenet_model()
    conv = inside.first_layer(model)
    left, right = st.columns([1, 2])
    left.image(_filters(), caption=f"{conv.out_channels:d} filters of {conv.kernel_size[0]:d}×{conv.kernel_size[1]:d} "
                                   "pixels × 3 colours", width="stretch")
    right.markdown(
        "Each square is one filter of the **first layer**, the only one that looks at raw pixels. It slides "
        "over the image and lights up where the pixels match its pattern. Grey means a weight of zero; a "
        "colour means the filter looks for that colour; light next to dark means it looks for an **edge** "
        "in that direction. Nobody drew these: they were learned from 1.3 million ImageNet photos, and "
        "every later layer builds on them.")


def image_controls(dataset: str | None) -> tuple[str, bytes] | None:
    """One image to look inside with: an upload, else one picked from the active dataset."""
    up = st.file_uploader("Your own photo (optional)", type=["jpg", "jpeg", "png", "webp", "bmp"], key=UPLOAD)
    if up is not None:
        return up.name, up.getvalue()
    if not dataset:
        st.info("Upload a photo, or import a dataset on the Data page to pick one of its images.")
        return None
    df = cached.manifest(dataset)
    df = df[~df["excluded"]].groupby("label").head(4)  # a few per class keeps the list short
    if df.empty:
        return None
    options = list(df["path"])
    names = dict(zip(df["path"], df["label"].astype(str) + " · " + df["source"].str.rsplit("/", n=1).str[-1]))
    path = st.selectbox("Or an image of your dataset", options, key=PICK, format_func=names.get)
    return names[path], (workspace.dataset_dir(dataset) / path).read_bytes()


def show_feature_maps(data: bytes) -> None:
    """The most active channels at three depths, each with a sentence on what such layers respond to."""
    try:
        views = _views(data)
    except images.ImageProblem as problem:
        st.error(f"This file cannot be read as an image: {plain(problem)}")
        return
    side = views["image"].shape[0]
    for stage, info in views["maps"].items():
        channels, h, w = info["shape"]
        st.markdown(f"**{plain(stage.capitalize())} stage**: {channels:d} channels of {h:d}×{w:d}. "
                    f"{plain(info['note'])}")
        st.caption(f"What to look for: {plain(info['look_for'])}")
        # every map at the input's own size and width, so each pixel of a map lies where it is in the photo
        cols = st.columns(SHOWN_MAPS + 1)
        cols[0].image(views["image"], caption=f"input, {side:d}×{side:d}", width=MAP_PX)
        for col, m, ch, s in zip(cols[1:], info["maps"], info["channels"], info["strength"]):
            col.image(inside.enlarge(m, side, smooth=stage != "late"), caption=f"channel {ch:d} · {s:.2f}",
                      width=MAP_PX)


def show_imagenet_top(data: bytes) -> None:
    """What the pretrained backbone alone sees in the image, before any training on the user's classes."""
    try:
        top = _views(data)["top"]
    except images.ImageProblem:
        return
    frame = pd.DataFrame(top, columns=["ImageNet class", "probability"])
    fig = go.Figure(go.Bar(x=frame["probability"], y=frame["ImageNet class"], orientation="h",
                           text=[f"{p:.1%}" for p in frame["probability"]], textposition="auto"))
    fig.update_layout(height=230, margin={"l": 10, "r": 10, "t": 10, "b": 10},
                      xaxis={"range": [0, 1], "tickformat": ".0%"}, yaxis={"autorange": "reversed"})
    st.plotly_chart(fig, key="learn.imagenet")
    st.caption("The backbone was trained to tell 1,000 everyday ImageNet classes apart. Transfer learning keeps "
               "everything it learned up to the last layer and replaces only that layer with one for your classes.")


def latest_run(dataset: str | None) -> str | None:
    """The newest finished training run of the dataset that kept a model (experiment runs left out)."""
    found = runs.model_runs(dataset) if dataset else []
    return found[0] if found else None


def show_gradcam(dataset: str | None, data: bytes) -> None:
    """Grad-CAM of the user's own latest model on the same image."""
    run_id = latest_run(dataset)
    if not run_id:
        st.caption("Train a model on the Train page to see where it looks in this image.")
        return
    try:
        out = predictor(run_id).explain(data)  # the model the Evaluate page loaded, if it did: loaded once
    except images.ImageProblem as problem:
        st.error(f"This file cannot be read as an image: {plain(problem)}")
        return
    left, right = st.columns([1, 2])
    left.image(out["overlay"], caption=f"{plain(runnames.display_name(run_id))}: evidence for '{plain(out['class'])}'",
               width="stretch")
    right.markdown("**Grad-CAM** asks the trained model which places in the last feature maps raised its score "
                   "for the class it chose. Red is strong evidence, blue none. If the red sits on the background "
                   "rather than the object, the model may have learned a shortcut.")



def show_session_export(dataset: str | None) -> None:
    """Download the whole session (data, edits, augmentation, latest training run, evaluation) as code."""
    from imgcls.teach import recipe

    if not dataset:
        st.caption("Import a dataset first: the script starts from it.")
        return
    run_id = latest_run(dataset)
    st.markdown(f"Everything done so far on **{plain(dataset)}**: the import, your label edits"
                + (f", the augmentation and training of run **{plain(runnames.display_name(run_id))}**, and its "
                   "evaluation" if run_id else "")
                + ". Run the script, or open the notebook in Jupyter, to repeat it step by step.")
    left, right = st.columns(2)
    # built on click only: a long journal makes these large, and the page reruns often
    left.download_button("Download as a Python script", partial(recipe.session_script, dataset, run_id),
                         file_name=f"{dataset}-session.py", mime="text/x-python", key="learn.export.py",
                         icon=":material/code:")
    right.download_button("Download as a Jupyter notebook", partial(recipe.session_notebook, dataset, run_id),
                          file_name=f"{dataset}-session.ipynb", mime="application/x-ipynb+json",
                          key="learn.export.ipynb", icon=":material/description:")
    if not recipe.replayable(dataset, versions.run_version(run_id) if run_id else None):
        st.download_button("Download the data (ZIP)", partial(recipe.data_zip, dataset, run_id),
                           file_name=recipe.data_zip_name(dataset, run_id), mime="application/zip",
                           key="learn.export.zip", icon=":material/folder_zip:")
        st.caption("Some images came from browser uploads, which are not kept as files: the script imports "
                   + ("the images and labels this run trained on" if run_id else "the dataset as it is now")
                   + " from this ZIP instead (put it next to the script).")
