"""The shareable demo: publishing controls for the Evaluate page, and the demo view itself.

The demo view opens exactly the run its link's token names, in its owner's workspace, and nothing else:
no sidebar, no other page, no dataset image. Whoever opens it works in no workspace of their own.
"""

from __future__ import annotations

import contextlib
import ctypes
import io

import streamlit as st
from PIL import Image, ImageOps
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.runtime.scriptrunner_utils.script_run_context import get_script_run_ctx

from imgcls.evaluate.predict import not_sure
from imgcls.share import demo, server as demoserver
from imgcls.store import access, runnames, runs, workspace
from imgcls.ui.common.signin import auth_configured
from imgcls.ui.common.text import plain
from imgcls.ui.evaluate.predict import (predictor, ready_model,  # one model per run, shared with Evaluate
                                        show_unfamiliar)

QUERY = demo.QUERY
EXPIRY_CHOICES = {"Never": None, "1 day": 1, "7 days": 7, "30 days": 30}
BASE_SETTING = "demo_base_url"
# What one visitor may hand the server: photos of up to MAX_FILE_MB each (the demo-only server refuses bigger
# uploads itself; this view also when the app serves a demo), and MAX_FILES of them at once.
MAX_FILE_MB = demoserver.MAX_UPLOAD_MB
MAX_FILES = 10  # photos answered per upload; the rest are refused with a sentence
KEPT = 10  # answers kept on the page, newest first: a thumbnail and a few numbers each, never the upload
PREVIEW_BYTES = 50_000  # the most a kept thumbnail weighs
ANSWERS, NOTES, BATCH = "demo.answers", "demo.notes", "demo.batch"  # session state of the demo view


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
        st.caption(f"The demo server is running (port {plain(status['port'])}): it serves only demos, nothing else of "
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
        until = f" until {plain(expires.replace('T', ' ')[:16])} UTC" if expires else ""
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
            st.error(plain(exc))


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
    batch = st.session_state.get(BATCH, 0)  # a new number after each answer: a fresh, empty uploader
    _drop_answered_uploads(batch)
    files = st.file_uploader("Photos", type=None, accept_multiple_files=True, key=_key("demo.files", batch),
                             max_upload_size=MAX_FILE_MB,
                             help=f"Up to {MAX_FILES} photos at once, {MAX_FILE_MB} MB each.")
    shot = st.camera_input("Or take a photo", key=_key("demo.camera", batch)) \
        if st.toggle("Use the camera", key="demo.cam") else None
    threshold = st.slider("Answer 'not sure' below this confidence", 0.0, 1.0, 0.5, 0.05, key="demo.threshold")
    uploads = [(f.name, f) for f in files or []] + ([("camera.jpg", shot)] if shot else [])
    if uploads:
        _answer(run_id, uploads, batch)  # ends in a rerun that draws the answers under an empty uploader
    for note in st.session_state.get(NOTES, []):
        st.warning(note)  # markdown-safe: _within_limits builds each note from plain(…) names
    for kept in st.session_state.get(ANSWERS, []):
        if kept["run"] == run_id:
            _show_answer(kept, threshold)


def _key(name: str, batch: int) -> str:
    return name if batch == 0 else f"{name}.{batch}"  # the first uploader keeps the plain key


def _answer(run_id: str, uploads: list, batch: int) -> None:
    """Predict the photos within the limits, keep only small answers, let go of every upload, and rerun."""
    taken, notes = _within_limits(uploads)
    inputs = [(name, f.getvalue()) for name, f in taken]
    _release([f for _, f in uploads])
    st.session_state[BATCH] = batch + 1  # the old uploader is not drawn again: Streamlit drops its files
    st.session_state[NOTES] = notes
    if inputs:
        rows = ready_model(run_id).predict(inputs, top_k=3)  # no threshold: the slider applies when shown
        answers = [{"run": run_id, "row": row, "preview": None if "error" in row else _preview(data)}
                   for (_, data), row in zip(inputs, rows)]
        st.session_state[ANSWERS] = (answers + st.session_state.get(ANSWERS, []))[:KEPT]
    st.rerun()


def _within_limits(uploads: list) -> tuple[list, list[str]]:
    """The uploads the demo answers (at most MAX_FILES, each at most MAX_FILE_MB), and a sentence for the rest."""
    taken, too_big, too_many = [], [], []
    for name, f in uploads:
        if f.size > MAX_FILE_MB * 1024**2:
            too_big.append(f"{plain(name)} ({f.size / 1024**2:.1f} MB)")
        elif len(taken) < MAX_FILES:
            taken.append((name, f))
        else:
            too_many.append(plain(name))
    notes = []
    if too_big:
        notes.append(f"Not read, over the demo's limit of {MAX_FILE_MB} MB per photo (a phone photo is 2–12 MB): "
                     f"{_listed(too_big)}. Make {'it' if len(too_big) == 1 else 'them'} smaller and upload again.")
    if too_many:
        notes.append(f"The demo answers at most {MAX_FILES} photos at once, so {len(too_many)} were left out: "
                     f"{_listed(too_many)}. Upload them again in another go.")
    return taken, notes


def _listed(names: list[str], shown: int = 5) -> str:
    more = len(names) - shown
    return ", ".join(names[:shown]) + (f" and {more} more" if more > 0 else "")


def _release(files: list) -> None:
    """Let go of the uploaded bytes now. Streamlit keeps a session's uploads in memory until the visitor
    removes them or the session ends, and a visitor who uploads and leaves the tab open holds them; its own
    chat and audio inputs remove theirs like this once read."""
    ctx = get_script_run_ctx()
    manager = ctx.uploaded_file_mgr if ctx else None
    if isinstance(manager, MemoryUploadedFileManager):
        for f in files:
            manager.remove_file(session_id=ctx.session_id, file_id=f.file_id)


def _drop_answered_uploads(batch: int) -> None:
    """In the run after an answer, forget the answered uploader's files now rather than when this run ends,
    and hand the freed memory back to the system: glibc keeps big freed blocks for reuse, and without this
    the server grew by about 100 MB with each round of three 15 MB photos (benchmarks/bench_demo_memory.py)."""
    if not batch:
        return
    dropped = [st.session_state.pop(_key(name, batch - 1), None) for name in ("demo.files", "demo.camera")]
    if any(value is not None for value in dropped):
        del dropped
        with contextlib.suppress(OSError, AttributeError):  # no glibc (macOS, musl): nothing to ask
            ctypes.CDLL(None).malloc_trim(0)


def _show_answer(kept: dict, threshold: float) -> None:
    """One kept answer: the visitor's photo (as a small thumbnail) beside what the model makes of it."""
    row = not_sure([kept["row"]], threshold)[0]
    st.subheader(plain(row["file"]))
    if "error" in row:
        st.error(f"{plain(row['file'])} could not be read: {plain(row['error'])}")
        return
    photo, answer = st.columns([1, 2])
    photo.image(kept["preview"], width=240)
    with answer:
        st.markdown(f"**{plain(row['prediction'])}**")
        show_unfamiliar(row)
        show_bars(row)


def _preview(data: bytes) -> bytes:
    """A small upright JPEG of an upload (any format the model reads, metadata dropped) to show back, of at
    most PREVIEW_BYTES: it is kept in the session while the full upload is not."""
    with Image.open(io.BytesIO(data)) as img:
        img = ImageOps.exif_transpose(img)
        img.thumbnail((480, 480))
        img = img.convert("RGB")
    for side, quality in ((480, 85), (360, 75), (240, 65), (160, 50)):
        img.thumbnail((side, side))
        buf = io.BytesIO()
        img.save(buf, format="JPEG", quality=quality)
        if buf.tell() <= PREVIEW_BYTES:
            break
    return buf.getvalue()
