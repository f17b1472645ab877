"""The shareable demo: publish and unpublish behind unguessable tokens, expiry, and the demo view for a
published, unpublished, expired or unknown link."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.share import demo
from imgcls.store import workspace
from imgcls.train.run import TrainConfig, prepare_run, run

from test_train import SMALL, _png, make_dataset

APP = str(Path(__file__).resolve().parents[1] / "app.py")
pytestmark = pytest.mark.usefixtures("app_home")


def published_tiny_run(home: Path, dataset: str = "toy", epochs: int = 3) -> tuple[str, str]:
    """A small trained linear run in the workspace at `home`, with its demo published: (run id, token)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLS_HOME", str(home))
        make_dataset(name=dataset, per_class=8 if epochs <= 3 else 10)
        run_id = prepare_run(TrainConfig(dataset=dataset, strategy="linear", epochs=epochs, **SMALL))
        run(run_id, echo=lambda _: None)
        return run_id, demo.publish(run_id)


@pytest.fixture
def trained():
    make_dataset(per_class=10)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=10, **SMALL))
    run(run_id, echo=lambda _: None)
    return run_id


def open_demo(token: str | None, param: str = "demo") -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if token is not None:
        at.query_params[param] = token
    return at.run()


def test_only_finished_runs_can_be_published(trained):
    queued = prepare_run(TrainConfig(dataset="toy", strategy="linear", **SMALL))
    with pytest.raises(workspace.WorkspaceError, match="saved model"):
        demo.publish(queued)
    token = demo.publish(trained)
    assert demo.is_published(trained) and not demo.is_published(queued)
    assert demo.publish(trained) == token  # publishing again keeps the link
    assert demo.open_demo(token).run_id == trained
    assert demo.unpublish(trained) == 1
    assert demo.published() == [] and demo.open_demo(token) is None


def test_tokens_are_unguessable_and_not_the_run_id(trained):
    tokens = set()
    for _ in range(3):
        tokens.add(demo.publish(trained))
        demo.unpublish(trained)
    assert len(tokens) == 3  # a fresh token each time the demo is published anew
    assert all(len(t) >= 32 and trained not in t for t in tokens)


def test_a_link_stops_working_when_it_expires(trained, monkeypatch):
    import datetime

    token = demo.publish(trained, expires_days=1)
    assert demo.open_demo(token) is not None and demo.expiry_of(trained)
    later = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=1, seconds=5)
    monkeypatch.setattr(demo, "_now", lambda: later)
    assert demo.open_demo(token) is None and not demo.is_published(trained)
    with pytest.raises(workspace.WorkspaceError, match="positive"):
        demo.publish(trained, expires_days=0)


def test_published_demo_predicts_and_shows_nothing_else(trained):
    at = open_demo(demo.publish(trained))
    assert at.title[0].value == "Try the classifier"
    assert not at.selectbox  # no dataset picker, no settings: only the predict box
    assert at.caption[0].value == "Model: **toy linear 1**"  # its name, not its id
    at.file_uploader(key="demo.files").upload("red.png", _png((220, 40, 40), 7), "image/png").run()
    assert any(m.value == "**red**" for m in at.markdown)
    assert not at.warning  # an image like the training images: no warning
    assert not at.exception


def test_the_demo_warns_about_an_image_unlike_the_training_images(trained):
    from imgcls.evaluate.predict import UNFAMILIAR
    from test_ood import stripes_png

    at = open_demo(demo.publish(trained))
    at.file_uploader(key="demo.files").upload("stripes.png", stripes_png(), "image/png").run()
    assert [w.value for w in at.warning] == [UNFAMILIAR]
    assert not at.exception


def _not_available(at: AppTest) -> bool:
    return (at.title[0].value == "Demo not available" and "does not open anything" in at.info[0].value
            and not at.selectbox and not at.button and not at.exception)


def test_unpublished_unknown_and_old_style_links_get_a_plain_page_and_nothing_else(trained):
    token = demo.publish(trained)
    for value in ("no-such-token", "../../etc", "", trained):
        assert _not_available(open_demo(value))
    # the old links named the run itself: guessable, so they open nothing now, published or not
    assert _not_available(open_demo(trained, param="run"))
    demo.unpublish(trained)
    assert _not_available(open_demo(token))


def test_without_a_run_the_app_opens_as_usual():
    at = open_demo(None)
    assert at.title[0].value != "Try the classifier"
    assert not at.exception


def test_a_run_stopped_early_is_published_and_its_demo_names_it():
    from imgcls.store import runnames
    from imgcls.ui.common.text import plain
    from test_runs import stopped_finetune

    make_dataset(per_class=12)
    run_id = stopped_finetune()
    runnames.rename_run(run_id, "my *first* [model]")
    at = open_demo(demo.publish(run_id))
    assert at.title[0].value == "Try the classifier"
    assert at.caption[0].value == f"Model: **{plain('my *first* [model]')}** · stopped early, its best model so far"
    at.file_uploader(key="demo.files").upload("red.png", _png((220, 40, 40), 7), "image/png").run()
    assert any(m.value in ("**red**", "**blue**") for m in at.markdown)  # it predicts with the kept model
    assert not at.exception
