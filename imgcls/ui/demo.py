"""The shareable demo: publishing controls for the Evaluate page, and the demo view itself."""

from __future__ import annotations

import streamlit as st

from imgcls import demo, runnames, runs, workspace

from .eval_predict import predictor, ready_model, show_unfamiliar  # one model per run, shared with Evaluate
from .text import plain


def demo_link(run_id: str) -> str:
    """The address to share, built from the address this page was opened at."""
    base = (st.context.url or "").split("?")[0].rstrip("/")
    base = base.rsplit("/", 1)[0] if base.count("/") > 2 else base
    return f"{base}/demo?run={run_id}"


def publish_controls(run_id: str) -> None:
    """Publish or unpublish a run's demo, and show the link to copy."""
    if demo.is_published(run_id):
        st.success("This run's demo is published. Anyone who can reach this server can open the link; it shows "
                   "only a predict box, no dataset images and no other runs.")
        st.code(demo_link(run_id), language=None)
        if st.button("Unpublish the demo", key=f"demo.unpublish.{run_id}"):
            demo.unpublish(run_id)
            st.rerun()
    elif st.button("Publish demo", key=f"demo.publish.{run_id}", icon=":material/share:"):
        try:
            demo.publish(run_id)
            st.rerun()
        except workspace.WorkspaceError as exc:
            st.error(str(exc))


def show_bars(row: dict) -> None:
    """Top-k probabilities as labelled bars."""
    for name, p in row["top"]:
        st.progress(min(max(p, 0.0), 1.0), text=f"{name}: {p:.1%}")


def show_demo(run_id: str | None) -> None:
    """The predict view of one published run, or a friendly message."""
    if not demo.is_published(run_id):
        st.title("Demo")
        st.info("This demo link is not active: it may have been unpublished, or the address is incomplete. "
                "Ask the person who shared it for a new link.")
        return
    model = predictor(run_id)
    st.title("Try the classifier")
    status = runs.read_status(run_id)
    st.caption(f"Model: **{plain(runnames.display_name(run_id))}**"
               + (" · stopped early, its best model so far" if runs.stopped_early(status) else ""))
    st.write(f"It tells apart: **{', '.join(model.classes)}**. Upload a photo or take one; nothing is stored.")
    files = st.file_uploader("Photos", type=None, accept_multiple_files=True, key="demo.files")
    shot = st.camera_input("Or take a photo", key="demo.camera") if st.toggle("Use the camera", key="demo.cam") else None
    inputs = [(f.name, f.getvalue()) for f in files or []] + ([("camera.jpg", shot.getvalue())] if shot else [])
    threshold = st.slider("Answer 'not sure' below this confidence", 0.0, 1.0, 0.5, 0.05, key="demo.threshold")
    if inputs:
        ready_model(run_id)  # the first photo for this model also builds its unfamiliar-image check
    for row in model.predict(inputs, top_k=3, min_confidence=threshold):
        st.subheader(row["file"])
        if "error" in row:
            st.error(f"{row['file']} could not be read: {row['error']}")
        else:
            st.markdown(f"**{row['prediction']}**")
            show_unfamiliar(row)
            show_bars(row)

