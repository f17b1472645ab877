"""The shareable demo: publishing controls for the Evaluate page, and the demo view itself.

The demo view opens exactly the run its link's token names, in its owner's workspace, and nothing else:
no sidebar, no other page, no dataset image. Whoever opens it works in no workspace of their own.
"""

from __future__ import annotations

import io

import streamlit as st
from PIL import Image, ImageOps

from imgcls import access, demo, demoserver, runnames, runs, workspace

from .eval_predict import predictor, ready_model, show_unfamiliar  # one model per run, shared with Evaluate
from .signin import auth_configured
from .text import plain

QUERY = demo.QUERY
EXPIRY_CHOICES = {"Never": None, "1 day": 1, "7 days": 7, "30 days": 30}
BASE_SETTING = "demo_base_url"


def base_url() -> str:
    """The address others reach the demos at: the operator's config, else the owner's own setting, else a
    guess (the main app's address with sign-in; this machine's network address and the demo server's port
    without it)."""
    config = access.load_config()
    chosen = config.public_url if auth_configured() else config.demo_url
    if chosen:
        return chosen
    saved = workspace.settings().get(BASE_SETTING)
    if saved:
        return saved
    if auth_configured():  # this tab's own origin: right when the owner uses the public address too
        parts = (st.context.url or "").split("/")
        return "/".join(parts[:3]) if len(parts) >= 3 else ""
    return demo.guess_base_url()


def _base_controls() -> None:
    config = access.load_config()
    if config.public_url if auth_configured() else config.demo_url:
        return  # the operator set it for everyone
    with st.expander("The address others use to reach this server"):
        st.caption("Links are built from it. Set it once: the name or address of this machine as others see "
                   "it, such as `http://192.168.1.20:8502` or `https://demo.my-school.org`.")
        value = st.text_input("Public address", value=base_url(), key="demo.base_url")
        if st.button("Save the address", key="demo.base_url.save"):
            if not value.startswith(("http://", "https://")):
                st.error("The address starts with http:// or https://.")
            else:
                workspace.save_setting(BASE_SETTING, value.strip().rstrip("/"))
                st.rerun()


def _server_controls() -> None:
    """Without sign-in the demos are served by a separate demo-only server; start it from here."""
    if auth_configured():
        return
    status = demoserver.status()
    if status:
        st.caption(f"The demo server is running (port {status['port']}): it serves only demos, nothing else of "
                   "this workspace.")
    else:
        st.warning("The link works once the demo server runs: a separate server that shows only demos, so "
                   "visitors reach nothing else of your workspace.")
        if st.button("Start the demo server", key="demo.server.start", icon=":material/play_arrow:"):
            demoserver.start()
            st.rerun()


def publish_controls(run_id: str) -> None:
    """Publish or unpublish a run's demo, and show the link to copy."""
    token = demo.token_of(run_id)
    if token:
        expires = demo.expiry_of(run_id)
        until = f" until {expires.replace('T', ' ')[:16]} UTC" if expires else ""
        st.success(f"This run's demo is published{until}. Anyone with the link can open it; it shows only a "
                   "predict box for this model: no dataset images, no other runs, no other page.")
        st.code(demo.link(token, base_url()), language=None)
        _server_controls()
        _base_controls()
        if st.button("Unpublish the demo", key=f"demo.unpublish.{run_id}"):
            demo.unpublish(run_id)
            st.rerun()
        return
    expiry = st.selectbox("The link stops working after", list(EXPIRY_CHOICES), key=f"demo.expiry.{run_id}")
    if st.button("Publish demo", key=f"demo.publish.{run_id}", icon=":material/share:"):
        try:
            demo.publish(run_id, EXPIRY_CHOICES[expiry])
            st.rerun()
        except workspace.WorkspaceError as exc:
            st.error(str(exc))


def show_bars(row: dict) -> None:
    """Top-k probabilities as labelled bars."""
    for name, p in row["top"]:
        st.progress(min(max(p, 0.0), 1.0), text=f"{plain(name)}: {p:.1%}")


def show_demo(token: str | None) -> None:
    """The predict view of the run a demo token opens, or a plain page saying the demo is not available."""
    opened = demo.open_demo(token)
    if opened is None:
        st.title("Demo not available")
        st.info("This demo link does not open anything: it may have been unpublished or have expired, or the "
                "address is incomplete. Ask the person who shared it for a new link.")
        return
    with workspace.use(opened.root):
        _show_run(opened.run_id)


def _show_run(run_id: str) -> None:
    model = predictor(run_id)
    st.title("Try the classifier")
    status = runs.read_status(run_id)
    st.caption(f"Model: **{plain(runnames.display_name(run_id))}**"
               + (" · stopped early, its best model so far" if runs.stopped_early(status) else ""))
    st.write(f"It tells apart: **{', '.join(plain(c) for c in model.classes)}**. Upload a photo or take one; "
             "nothing is stored.")
    files = st.file_uploader("Photos", type=None, accept_multiple_files=True, key="demo.files")
    shot = st.camera_input("Or take a photo", key="demo.camera") if st.toggle("Use the camera", key="demo.cam") else None
    inputs = [(f.name, f.getvalue()) for f in files or []] + ([("camera.jpg", shot.getvalue())] if shot else [])
    threshold = st.slider("Answer 'not sure' below this confidence", 0.0, 1.0, 0.5, 0.05, key="demo.threshold")
    if inputs:
        ready_model(run_id)  # the first photo for this model also builds its unfamiliar-image check
    for (name, data), row in zip(inputs, model.predict(inputs, top_k=3, min_confidence=threshold)):
        st.subheader(plain(row["file"]))
        if "error" in row:
            st.error(f"{plain(row['file'])} could not be read: {plain(row['error'])}")
            continue
        photo, answer = st.columns([1, 2])
        photo.image(_preview(data), width=240)  # the visitor's own photo, beside what the model makes of it
        with answer:
            st.markdown(f"**{plain(row['prediction'])}**")
            show_unfamiliar(row)
            show_bars(row)


def _preview(data: bytes) -> bytes:
    """A small upright JPEG of an upload (any format the model reads, metadata dropped) to show back."""
    with Image.open(io.BytesIO(data)) as img:
        img = ImageOps.exif_transpose(img)
        img.thumbnail((480, 480))
        buf = io.BytesIO()
        img.convert("RGB").save(buf, format="JPEG", quality=85)
    return buf.getvalue()
