"""Import controls, one per source, and the runner that shows progress and plain errors."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Callable

import pandas as pd
import streamlit as st

from imgcls.ingest import imports as data, samples
from imgcls.ingest.imports import ImportFailed, ImportReport
from imgcls.store import access, workspace
from imgcls.store.workspace import WorkspaceError
from imgcls.ui.common import signin, state
from imgcls.ui.common.text import plain
from imgcls.ui.data import rows as dataset_rows

SOURCES = ["ZIP file", "Folder on the server", "Images into a class", "Webcam", "Samples"]


def default_name(text: str) -> str:
    """A usable dataset name made from a file or folder name ('My photos (1).zip' → 'My photos -1')."""
    stem = Path(text.strip().rstrip("/\\")).stem if text.strip() else ""
    return re.sub(r"[^\w .+-]+", "-", stem).strip(" .-")[:64]


def show_skipped(skipped: list[dict]) -> None:
    """Table of files an import set aside, with the reason for each."""
    table = pd.DataFrame(skipped, columns=["file", "reason", "detail"])
    st.dataframe(table.rename(columns={"file": "File", "reason": "Reason", "detail": "Detail"}),
                 hide_index=True, width="stretch")


def run_import(action: Callable[[Callable[[float, str], None]], ImportReport], what: str) -> dict | None:
    """Run one import under a progress bar; return its report, or show a plain error and return None."""
    bar = st.progress(0.0, text=f"Importing {plain(what)}…")

    def progress(fraction: float, text: str) -> None:
        bar.progress(min(max(float(fraction), 0.0), 1.0), text=plain(text[:120]))

    try:
        report = action(progress)
    except ImportFailed as exc:
        bar.empty()
        st.error(f"Nothing was imported: {plain(exc)}")
        if exc.report is not None and exc.report.skipped_files:
            st.markdown("These files were set aside:")
            show_skipped(exc.report.skipped_files)
        return None
    except WorkspaceError as exc:
        bar.empty()
        st.error(plain(exc))
        return None
    except OSError as exc:  # disk full, permission denied: the engine leaves the workspace unchanged
        bar.empty()
        st.error(f"The import stopped because of a problem reading or writing files: "
                 f"{plain(exc.strerror or exc)}. Nothing was changed.")
        return None
    bar.empty()
    return report.to_json()


def _name_controls(prefix: str, default: str) -> tuple[str, bool]:
    """Dataset name field (empty means the default) and the 'add to existing' switch."""
    typed = st.text_input("Dataset name", key=f"{prefix}.name", placeholder=default or "my-dataset",
                          help="Leave empty to use the name shown in grey, taken from the file or folder.")
    name = (typed or "").strip() or default
    add = st.checkbox("Add to the existing dataset of this name", key=f"{prefix}.add",
                      help="Off: a new dataset is made, and an existing name is refused.")
    if name and not add and workspace.dataset_exists(name):
        st.caption(f"A dataset named **{plain(name)}** already exists: choose another name or tick the box to add to it.")
    return name, add


def zip_import_controls() -> dict | None:
    """ZIP upload (class folders, optionally inside train/val/test folders, or a labels CSV)."""
    st.markdown("A ZIP with **one folder per class** (`cats/…`, `dogs/…`), optionally inside "
                "`train/`, `val/` and `test/` folders. Or a ZIP of images plus a CSV of "
                "`filename,label[,split]`.")
    upload = st.file_uploader("ZIP file", type=["zip"], key="data.import.zip")
    labels = st.file_uploader("Labels CSV (optional)", type=["csv"], key="data.import.zip.csv",
                              help="Rows of filename,label and optionally split (train, val or test).")
    name, add = _name_controls("data.import.zip", default_name(upload.name) if upload else "")
    if not st.button("Import ZIP", key="data.import.zip.button", type="primary"):
        return None
    if upload is None:
        st.warning("Choose a ZIP file first.")
        return None
    label_csv = labels.getvalue() if labels is not None else None
    return run_import(lambda progress: data.import_zip(
        upload, name, label_csv=label_csv, source=upload.name, add=add, progress=progress), upload.name)


def folder_import_controls() -> dict | None:
    """A folder on the server machine, laid out as class folders (only where the operator allows)."""
    signed_in = signin.auth_configured()
    try:
        off = access.folder_imports_off(signed_in)
    except WorkspaceError as exc:  # the operator's config file cannot be read
        off = str(exc)
    if off:
        st.info(plain(off), icon=":material/folder_off:")
        return None
    st.markdown("A folder **on the machine running this app**, with one subfolder per class "
                "(optionally inside `train/`, `val/` and `test/` folders).")
    roots = access.load_config().import_roots
    if roots:
        st.caption("Folders this server lets you import from: " + ", ".join(plain(r) for r in roots))
    path = st.text_input("Folder path on the server", key="data.import.folder.path",
                         placeholder=roots[0] if roots else "/home/me/photos")
    name, add = _name_controls("data.import.folder", default_name(path or ""))
    if not st.button("Import folder", key="data.import.folder.button", type="primary"):
        return None
    if not (path or "").strip():
        st.warning("Type the path of a folder on the server first.")
        return None
    return run_import(lambda progress: data.import_folder(
        path.strip(), name, add=add, progress=progress, signed_in=signed_in), path.strip())


def _class_controls(prefix: str) -> tuple[str, str]:
    """Which dataset (default: the active one) and which class new images go into."""
    active = state.active_dataset()
    typed = st.text_input("Dataset", key=f"{prefix}.dataset", placeholder=active or "my-images",
                          help="Leave empty to add to the dataset shown in grey; a new name makes a new dataset.")
    name = (typed or "").strip() or active or "my-images"
    label = st.text_input("Class name", key=f"{prefix}.label", placeholder="e.g. cats",
                          help="An existing class to add to, or a new class to create.")
    if workspace.dataset_exists(name):
        classes = list(dataset_rows.summary(name)["per_class"])
        st.caption(f"Classes in **{plain(name)}**: " + (", ".join(plain(c) for c in classes[:30]) or "none yet"))
    return name, (label or "").strip()


def files_import_controls() -> dict | None:
    """Loose images dropped into one class of a dataset."""
    st.markdown("Drop images into **one class**; run it again for each class.")
    name, label = _class_controls("data.import.files")
    files = st.file_uploader("Images", accept_multiple_files=True, key="data.import.files")
    if not st.button("Add images to class", key="data.import.files.button", type="primary"):
        return None
    if not files or not label:
        st.warning("Name the class and choose some images first.")
        return None
    return run_import(lambda progress: data.import_files(
        [(f.name, f.getvalue()) for f in files], name, label, progress=progress), f"{len(files)} images")


def camera_import_controls() -> dict | None:
    """Webcam shots, one at a time, into one class."""
    st.markdown("Take photos with your webcam and add each one to a class.")
    if not st.toggle("Turn on the camera", key="data.import.camera.on"):
        return None
    name, label = _class_controls("data.import.camera")
    shot = st.camera_input("Take a photo", key="data.import.camera")
    if not st.button("Add photo to class", key="data.import.camera.button", type="primary"):
        return None
    if shot is None or not label:
        st.warning("Name the class and take a photo first.")
        return None
    filename = f"webcam-{time.strftime('%Y%m%d-%H%M%S')}.jpg"
    return run_import(lambda progress: data.import_files(
        [(filename, shot.getvalue())], name, label, progress=progress), "the photo")


def sample_import_controls() -> dict | None:
    """Built-in sample datasets, one click each."""
    st.markdown("Small ready-made datasets to try every step without your own images.")
    for sample, description in samples.SAMPLES.items():
        text, button = st.columns([3, 1], vertical_alignment="center")
        text.markdown(f"**{sample}**: {description} ({samples.count_sample(sample):,} images).")
        if button.button(f"Import the {sample} sample", key=f"data.import.sample.{sample}"):
            if workspace.dataset_exists(sample):
                state.set_active(sample)
                state.flash(f"The {sample} sample is already in your workspace; it is now the active dataset.")
                st.rerun()
            return run_import(lambda progress, s=sample: data.import_sample(s, s, progress=progress),
                              f"the {sample} sample")
    return None


def import_controls() -> dict | None:
    """One tab per source; returns the report of an import that has just finished, if any."""
    tabs = st.tabs(SOURCES, key="data.import.source")  # keyed: the open tab survives reruns
    report = None
    for tab, controls in zip(tabs, [zip_import_controls, folder_import_controls, files_import_controls,
                                    camera_import_controls, sample_import_controls]):
        with tab:
            report = controls() or report
    return report


def start_sample_controls() -> bool:
    """Home's 'Start with a sample' button: import shapes if missing; True once it is active."""
    if not st.button("Start with a sample", key="home.start_sample", type="primary"):
        return False
    if not workspace.dataset_exists("shapes"):
        report = run_import(lambda progress: data.import_sample("shapes", "shapes", progress=progress),
                            "the shapes sample")
        if report is None:
            return False
        state.after_import(report)
        return True
    state.set_active("shapes")
    return True
