"""The images behind the numbers: the confusion matrix's cells and the worst mistakes, as thumbnails or
Grad-CAM overlays, each with fixes that go to the journal. One fragment: a cell click, a fix or the overlay
toggle reruns this part of the page only."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from pathlib import Path

import pandas as pd
import streamlit as st

from imgcls.charts import evaluation as eval_charts
from imgcls.evaluate.evaluation import changes_since
from imgcls.ingest.images import ImageProblem
from imgcls.store import journal, workspace
from imgcls.ui.common import cached
from imgcls.ui.common.text import plain
from imgcls.ui.evaluate.predict import predictor, show_overlay_legend
from imgcls.vision.thumbs import thumbnail_path

FIX_MESSAGE = "evaluate.fix.message"  # (gallery, "success"|"error", text) of the last fix made on this page
LOOKED = "evaluate.looked"  # show Grad-CAM overlays instead of thumbnails
THUMB_PX = 128
PER_ROW = 6
MAX_IMAGES = 24  # thumbnails shown for a confusion cell: enough to see a pattern, quick to send


@dataclass(frozen=True)
class Gallery:
    """What every image grid of one evaluation needs: the run, its dataset and classes, overlays or not."""

    run_id: str
    dataset: str
    classes: tuple[str, ...]
    looked: bool = False


def overlay_controls() -> bool:
    """Whether the images on screen show where the model looked (Grad-CAM) instead of the photo."""
    looked = st.toggle("Show where the model looked", key=LOOKED,
                       help="Colours the parts of each image shown that pushed the model towards its answer, red "
                            "most (Grad-CAM). Computed once per image, only for the images on screen.")
    if looked:
        show_overlay_legend()
    return looked


def show_fix_help() -> None:
    """How fixes made here travel, and why the numbers above do not move yet."""
    st.caption("**Fix** under an image relabels or excludes it in the dataset. Each fix is written to the "
               "dataset's journal and shows on the Review page, where it can be undone too. The numbers on this "
               "page change only after you train again: a run is scored on the labels of the data version it "
               "trained on, and images fixed since that version are marked.")


def _pictures(gallery: Gallery, rows: pd.DataFrame) -> list[str | None]:
    """The file to show for each row: its thumbnail, or its Grad-CAM overlay for the predicted class (those
    not cached yet computed together, in batches); None for an image that cannot be read."""
    folder = workspace.dataset_dir(gallery.dataset)
    if not gallery.looked:
        out: list[str | None] = []
        for row in rows.itertuples(index=False):
            try:
                out.append(str(thumbnail_path(folder, row.path, row.hash, THUMB_PX)))
            except (ImageProblem, OSError):
                out.append(None)
        return out
    known = [str(p) in gallery.classes for p in rows["prediction"]]
    items = [(str(r.path), str(r.hash), gallery.classes.index(str(r.prediction)))
             for r, ok in zip(rows.itertuples(index=False), known) if ok]
    with st.spinner(f"Finding where the model looked in {len(items)} images…"):
        files = iter(predictor(gallery.run_id).overlay_files(folder, items))
    out = []
    for ok in known:  # a prediction outside the run's classes (an old table) has no overlay
        file = next(files) if ok else None
        out.append(str(file) if file else None)
    return out


def _fix(where: str, dataset: str, action: str, path: str, value=None, chosen_key: str | None = None,
         shown=None) -> None:
    """Make one edit in the dataset's journal and keep its one-line outcome for the next run; `shown` is the
    image's label (or excluded flag) as this page drew it: changed since, the edit is refused."""
    if chosen_key is not None:
        value = st.session_state.get(chosen_key)
    try:
        result = journal.edit(dataset, action, [path], value, source="evaluate", expect=None if shown is None else {path: shown})
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
                  on_click=_fix, args=(where, dataset, "relabel", row.path, pred), kwargs={"shown": label})
        others = [c for c in classes if c not in (label, pred)]
        if others:
            st.selectbox("Or another class", others, key=f"{base}.class")
            st.button("Relabel as this class", key=f"{base}.relabel", on_click=_fix,
                      args=(where, dataset, "relabel", row.path),
                      kwargs={"chosen_key": f"{base}.class", "shown": label})
        if excluded:
            st.button("Restore to the dataset", key=f"{base}.restore", on_click=_fix,
                      args=(where, dataset, "restore", row.path), kwargs={"shown": excluded})
        else:
            st.button("Exclude from the dataset", key=f"{base}.exclude", on_click=_fix,
                      args=(where, dataset, "exclude", row.path), kwargs={"shown": excluded})


def show_gallery(gallery: Gallery, where: str, rows: pd.DataFrame, captions: list[str]) -> None:
    """A grid of prediction rows with a Fix popover under each; unreadable files are counted, not fatal."""
    show_fix_message(where, gallery.dataset)
    editable = workspace.dataset_exists(gallery.dataset)
    manifest = cached.manifest(gallery.dataset) if editable else None
    notes = changes_since(rows, manifest) if editable else pd.Series("", index=rows.index)
    now = manifest.set_index("path") if editable else None
    classes = sorted(set(gallery.classes) | (set(manifest["label"].astype(str)) if editable else set()))
    items = [i for i in zip(rows.itertuples(index=False), captions, notes, _pictures(gallery, rows)) if i[3]]
    for start in range(0, len(items), PER_ROW):
        for col, (row, caption, note, picture) in zip(st.columns(PER_ROW), items[start:start + PER_ROW]):
            with col:
                st.image(picture, caption=caption, width=THUMB_PX)  # markdown-safe: callers build captions of plain(…)
                if note:
                    st.caption(f":material/check: {plain(note)}")
                if editable and now is not None and row.path in now.index:
                    _fix_controls(where, gallery.dataset, classes, row, now.loc[row.path])
    if len(items) < len(rows):
        st.warning(f"{len(rows) - len(items)} images could not be read; they may have been removed or damaged.")


def show_worst(worst: pd.DataFrame, gallery: Gallery) -> None:
    """The most confident wrong predictions (eval_charts.worst_mistakes): often a wrong label, sometimes a real
    blind spot."""
    if worst.empty:
        st.success("No mistakes on these images.")
        return
    show_gallery(gallery, "worst", worst, [f"really {plain(t)} → {plain(p)} · {eval_charts.percent(c)}" for t, p, c in
                                            zip(worst["label"], worst["prediction"], worst["confidence"])])


def cell_captions(rows: pd.DataFrame) -> list[str]:
    """File name and confidence of each image of a confusion cell."""
    names = rows["source"] if "source" in rows else rows["path"]  # tables saved before 'source' existed
    return [f"{plain(Path(str(n)).name)} · {eval_charts.percent(c)}" for n, c in zip(names, rows["confidence"])]


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


def cell_controls(split: str, result: dict, table: pd.DataFrame, gallery: Gallery) -> pd.DataFrame | None:
    """The confusion matrix and its cell picker; a click on a cell (or the picker) chooses the cell whose
    images come back (the most confident first, MAX_IMAGES at most); None when the matrix is empty."""
    classes, options = result["classes"], eval_charts.cell_options(result)
    tag = f"{gallery.run_id}.{split}{'.tta' if result.get('tta') else ''}"
    chart_key, cell_key = f"evaluate.confusion.{tag}", f"evaluate.cell.{tag}"
    st.plotly_chart(eval_charts.confusion_figure(result), key=chart_key, selection_mode="points",
                    on_select=partial(_clicked, chart_key, cell_key, classes, options))
    if not options:
        return None
    cell = st.selectbox("Images in a cell (or click one)", options, key=cell_key,
                        format_func=partial(_cell_label, classes))
    i, j = (int(v) for v in cell.split(","))
    rows = eval_charts.cell_rows(table, classes[i], classes[j])
    st.caption(f"{len(rows)} image{'s' if len(rows) != 1 else ''} really {plain(classes[i])}, predicted {plain(classes[j])}"
               + (f"; the {MAX_IMAGES} most confident shown." if len(rows) > MAX_IMAGES else "."))
    return rows.head(MAX_IMAGES)


@st.fragment
def show_images(run_id: str, dataset: str, split: str, result: dict, table: pd.DataFrame) -> None:
    """The Grad-CAM toggle, the confusion matrix with its cell's images, and the most confident mistakes: a
    click in here (a cell, a fix, the toggle) reruns only this fragment, not the metrics and curves around it."""
    gallery = Gallery(run_id, dataset, tuple(result["classes"]), overlay_controls())
    cell = cell_controls(split, result, table, gallery)
    worst = eval_charts.worst_mistakes(table)
    if gallery.looked:  # the overlays of both grids in one pass of the model, before either is drawn
        _pictures(gallery, pd.concat([r for r in (cell, worst) if r is not None]).drop_duplicates("path"))
    if cell is not None:
        show_gallery(gallery, "cell", cell, cell_captions(cell))
    st.subheader("Most confident mistakes")
    show_fix_help()
    show_worst(worst, gallery)
