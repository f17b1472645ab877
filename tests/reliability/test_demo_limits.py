"""The public demo view bounds what a visitor hands the server: photos of up to 20 MB, 10 at once; refused
ones get a sentence and no answer, and once answered the uploads are let go, keeping only small answers."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
from streamlit.runtime.memory_uploaded_file_manager import MemoryUploadedFileManager
from streamlit.testing.v1 import AppTest

from imgcls.share import server as demoserver
from imgcls.store import workspace
from imgcls.ui import demo as demo_view

from test_train import _png

DEMO_APP = str(Path(__file__).resolve().parents[2] / "demo_app.py")


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A workspace holding a small trained run with a published demo: (home, token, run id)."""
    from test_demo import published_tiny_run

    home = tmp_path_factory.mktemp("demo-limits") / "ws"
    run_id, token = published_tiny_run(home)
    return home, token, run_id


@pytest.fixture
def visit(published, monkeypatch):
    """Open the demo server's page on the published link, as a visitor: a fresh AppTest, already run."""
    from streamlit import config

    home, token, _ = published
    monkeypatch.setenv("IMGCLS_HOME", str(home))
    monkeypatch.setattr(workspace, "_resolver", workspace._resolver)  # demo_app.py installs its own
    old = config.get_option("runner.enforceSerializableSessionState")
    config.set_option("runner.enforceSerializableSessionState", True)  # as the server runs it

    def open_page() -> AppTest:
        at = AppTest.from_file(DEMO_APP, default_timeout=90)
        at.query_params["demo"] = token
        return at.run()

    yield open_page
    config.set_option("runner.enforceSerializableSessionState", old)


def uploader(at: AppTest):
    boxes = [u for u in at.file_uploader if u.key.startswith("demo.files")]
    assert len(boxes) == 1, [u.key for u in at.file_uploader]
    return boxes[0]


def answered(at: AppTest) -> list[str]:
    return [h.value for h in at.subheader]


def test_more_than_ten_photos_at_once_are_refused_with_a_sentence(visit):
    at = visit()
    box = uploader(at)
    names = [f"photo{i:02d}.png" for i in range(13)]
    for i, name in enumerate(names):
        box.upload(name, _png((220, 40, 40) if i % 2 else (40, 40, 220), 100 + i), "image/png")
    box.run()
    assert not at.exception
    assert answered(at) == names[:demo_view.MAX_FILES]  # the first ten, in the order given
    notes = [w.value for w in at.warning]
    assert len(notes) == 1 and "at most 10 photos at once" in notes[0] and "3 were left out" in notes[0]
    for name in names[demo_view.MAX_FILES:]:
        assert name in notes[0]
    assert len(at.markdown) >= 10 and any(m.value in ("**red**", "**blue**") for m in at.markdown)


def test_a_photo_over_the_size_limit_is_refused_and_the_others_answered(visit):
    at = visit()
    box = uploader(at)
    assert box.proto.max_upload_size_mb == demoserver.MAX_UPLOAD_MB == 20  # the browser refuses it first
    big = _png((220, 40, 40), 1) + b"\0" * (20 * 1024**2)  # a valid PNG padded past 20 MB
    box.upload("huge.png", big, "image/png").upload("red.png", _png((220, 40, 40), 2), "image/png").run()
    assert not at.exception
    assert answered(at) == ["red.png"]  # nothing answered for the refused photo
    notes = [w.value for w in at.warning]
    assert len(notes) == 1 and "huge.png (20.0 MB)" in notes[0] and "limit of 20 MB per photo" in notes[0]
    assert "**red**" in [m.value for m in at.markdown]


def test_answered_uploads_are_let_go_and_only_small_answers_kept(visit, monkeypatch):
    removed = []
    real_remove = MemoryUploadedFileManager.remove_file

    def remove_file(self, session_id, file_id):  # the real removal, recorded
        removed.append(file_id)
        return real_remove(self, session_id, file_id)

    from imgcls.evaluate.predict import Predictor

    predicted = []
    real_predict = Predictor.predict

    def predict(self, files, *args, **kwargs):  # the real prediction, counted
        files = list(files)
        predicted.append([name for name, _ in files])
        return real_predict(self, files, *args, **kwargs)

    monkeypatch.setattr(MemoryUploadedFileManager, "remove_file", remove_file)
    monkeypatch.setattr(Predictor, "predict", predict)
    at = visit()
    first = uploader(at)
    photo = _big_photo()
    first.upload("blue.jpg", photo, "image/jpeg").upload("bad.png", b"not an image", "image/png").run()
    assert not at.exception
    assert len(removed) == 2  # both uploads released as soon as they were read
    second = uploader(at)
    assert second.key != first.key and second.value in (None, [])  # a fresh, empty uploader
    assert first.key not in at.session_state  # the answered uploader's files are forgotten, not kept
    assert answered(at) == ["blue.jpg", "bad.png"]
    assert any("could not be read" in e.value for e in at.error)
    kept = at.session_state[demo_view.ANSWERS]
    assert all(a["preview"] is None or len(a["preview"]) <= demo_view.PREVIEW_BYTES for a in kept)
    assert len(pickle.dumps(kept)) < demo_view.PREVIEW_BYTES + 20_000  # answers, not the upload
    assert len(photo) > 3 * demo_view.PREVIEW_BYTES  # so the check above says something
    # the answers stay on the page while the visitor moves the threshold: nothing is predicted again
    at.slider(key="demo.threshold").set_value(1.0).run()
    assert answered(at) == ["blue.jpg", "bad.png"] and "**not sure**" in [m.value for m in at.markdown]
    assert predicted == [["blue.jpg", "bad.png"]]
    assert not at.exception


def test_answers_are_bounded_newest_first(visit):
    at = visit()
    for batch in range(3):
        box = uploader(at)
        for i in range(5):
            box.upload(f"b{batch}n{i}.png", _png((220, 40, 40), 300 + 10 * batch + i), "image/png")
        box.run()
    assert not at.exception
    assert answered(at) == [f"b2n{i}.png" for i in range(5)] + [f"b1n{i}.png" for i in range(5)]
    assert len(at.session_state[demo_view.ANSWERS]) == demo_view.KEPT


def _big_photo() -> bytes:
    """A 1600×1200 JPEG of noise: far bigger than a kept thumbnail may be."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.random.default_rng(0).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=95)
    return buf.getvalue()
