"""The images behind the numbers: thumbnails or Grad-CAM overlays, each with fixes that go to the journal."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from imgcls import eval_charts, journal, workspace
from imgcls.evaluate import changes_since
from imgcls.images import ImageProblem
from imgcls.predict import Predictor
from imgcls.thumbs import thumbnail_path

from . import cached
from .eval_predict import model_stamp, predictor
from .text import plain

FIX_MESSAGE = "evaluate.fix.message"  # (gallery, "success"|"error", text) of the last fix made on this page
LOOKED = "evaluate.looked"  # show Grad-CAM overlays instead of thumbnails
THUMB_PX = 128
PER_ROW = 6


@dataclass(frozen=True)
class Gallery:
    """What every image grid of one evaluation needs: the run, its dataset and classes, overlays or not."""

    run_id: str
    dataset: str
    classes: tuple[str, ...]
    looked: bool = False


def overlay_controls() -> bool:
    """Whether the images on screen show where the model looked (Grad-CAM) instead of the photo."""
    return st.toggle("Show where the model looked", key=LOOKED,
                     help="Colours the parts of each image shown that pushed the model towards its answer, red "
                          "most (Grad-CAM). Computed once per image, only for the images on screen.")


def show_fix_help() -> None:
    """How fixes made here travel, and why the numbers above do not move yet."""
    st.caption("**Fix** under an image relabels or excludes it in the dataset. Each fix is written to the "
               "dataset's journal and shows on the Review page, where it can be undone too. The numbers on this "
               "page change only after you train and evaluate again: these predictions keep the labels they "
               "were scored with, and images fixed since are marked.")


@st.cache_data(max_entries=256, show_spinner=False)
def _overlay(_model: Predictor, run_id: str, stamp: int, dataset: str, path: str, digest: str,
             class_index: int) -> np.ndarray:
    # keyed by run, model file and image content; the predictor itself is not hashed (the stamp stands for it)
    return _model.explain((workspace.dataset_dir(dataset) / path).read_bytes(), class_index)["overlay"]


def _picture(gallery: Gallery, row) -> np.ndarray | str:
    if gallery.looked:
        index = gallery.classes.index(str(row.prediction))
        return _overlay(predictor(gallery.run_id), gallery.run_id, model_stamp(gallery.run_id), gallery.dataset,
                        row.path, row.hash, index)
    return str(thumbnail_path(workspace.dataset_dir(gallery.dataset), row.path, row.hash, THUMB_PX))


def _fix(where: str, dataset: str, action: str, path: str, value=None, chosen_key: str | None = None) -> None:
    """Make one edit in the dataset's journal and keep its one-line outcome for the next run."""
    if chosen_key is not None:
        value = st.session_state.get(chosen_key)
    try:
        result = journal.edit(dataset, action, [path], value, source="evaluate")
        st.session_state[FIX_MESSAGE] = (where, "success", result.message)
    except workspace.WorkspaceError as exc:  # EditRefused included: an empty or invalid class name
        st.session_state[FIX_MESSAGE] = (where, "error", str(exc))


def _undo(where: str, dataset: str, expect: int) -> None:
    try:  # the edit the button named, or a plain refusal when another has become the latest since
        result = journal.undo(dataset, expect=expect)
    except workspace.WorkspaceError as exc:
        st.session_state[FIX_MESSAGE] = (where, "error", str(exc))
        return
    st.session_state[FIX_MESSAGE] = (where, "success", result.message if result else "Nothing left to undo.")


def show_fix_message(where: str, dataset: str) -> None:
    """The outcome of the last fix made from this gallery, with Undo while the journal's last edit is ours."""
    where_made, kind, text = st.session_state.get(FIX_MESSAGE) or (None, None, None)
    if where_made != where:
        return
    (st.success if kind == "success" else st.error)(plain(text))  # class names and paths as typed
    last = journal.pending(dataset)["undo"] if workspace.dataset_exists(dataset) else None
    if last and last.get("source") == "evaluate":
        st.button(f"Undo: {plain(journal.describe(last))}", key=f"evaluate.fix.undo.{where}",
                  icon=":material/undo:", on_click=_undo, args=(where, dataset, last["id"]))


def _fix_controls(where: str, dataset: str, classes: list[str], row, now: pd.Series | None) -> None:
    """Relabel as the prediction, as another class, or exclude (restore) one image, in a small popover."""
    label, excluded = (str(now["label"]), bool(now["excluded"])) if now is not None else (str(row.label), False)
    base, pred = f"evaluate.fix.{where}.{row.path}", str(row.prediction)
    with st.popover("Fix", icon=":material/edit:"):
        st.button(f"Relabel as {plain(pred)}", key=f"{base}.as_predicted", disabled=label == pred, type="primary",
                  on_click=_fix, args=(where, dataset, "relabel", row.path, pred))
        others = [c for c in classes if c not in (label, pred)]
        if others:
            st.selectbox("Or another class", others, key=f"{base}.class")
            st.button("Relabel as this class", key=f"{base}.relabel", on_click=_fix,
                      args=(where, dataset, "relabel", row.path), kwargs={"chosen_key": f"{base}.class"})
        if excluded:
            st.button("Restore to the dataset", key=f"{base}.restore", on_click=_fix,
                      args=(where, dataset, "restore", row.path))
        else:
            st.button("Exclude from the dataset", key=f"{base}.exclude", on_click=_fix,
                      args=(where, dataset, "exclude", row.path))


def show_gallery(gallery: Gallery, where: str, rows: pd.DataFrame, captions: list[str]) -> None:
    """A grid of prediction rows with a Fix popover under each; unreadable files are counted, not fatal."""
    show_fix_message(where, gallery.dataset)
    editable = workspace.dataset_exists(gallery.dataset)
    manifest = cached.manifest(gallery.dataset) if editable else None
    notes = changes_since(rows, manifest) if editable else pd.Series("", index=rows.index)
    now = manifest.set_index("path") if editable else None
    classes = sorted(set(gallery.classes) | (set(manifest["label"].astype(str)) if editable else set()))
    items = list(zip(rows.itertuples(index=False), captions, notes))
    broken = 0
    with st.spinner("Finding where the model looked…") if gallery.looked else contextlib.nullcontext():
        for start in range(0, len(items), PER_ROW):
            for col, (row, caption, note) in zip(st.columns(PER_ROW), items[start:start + PER_ROW]):
                try:
                    picture = _picture(gallery, row)
                except (ImageProblem, OSError):
                    broken += 1
                    continue
                with col:
                    st.image(picture, caption=caption, width=THUMB_PX)
                    if note:
                        st.caption(f":material/check: {plain(note)}")
                    if editable and now is not None and row.path in now.index:
                        _fix_controls(where, gallery.dataset, classes, row, now.loc[row.path])
    if broken:
        st.warning(f"{broken} images could not be read; they may have been removed or damaged.")


def show_worst(table: pd.DataFrame, gallery: Gallery) -> None:
    """The most confident wrong predictions: often a wrong label, sometimes a real blind spot."""
    worst = eval_charts.worst_mistakes(table)
    if worst.empty:
        st.success("No mistakes on these images.")
        return
    show_gallery(gallery, "worst", worst, [f"really {t} → {p} · {c:.0%}" for t, p, c in
                                            zip(worst["label"], worst["prediction"], worst["confidence"])])


def cell_captions(rows: pd.DataFrame) -> list[str]:
    """File name and confidence of each image of a confusion cell."""
    names = rows["source"] if "source" in rows else rows["path"]  # tables saved before 'source' existed
    return [f"{Path(str(n)).name} · {c:.0%}" for n, c in zip(names, rows["confidence"])]
