"""The shareable demo: publish and unpublish, and the demo page for a published, unpublished or no id."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls import demo, workspace
from imgcls.train import TrainConfig, prepare_run, run

from test_train import SMALL, _png, make_dataset

APP = str(Path(__file__).resolve().parents[1] / "app.py")
pytestmark = pytest.mark.usefixtures("app_home")


@pytest.fixture
def trained():
    make_dataset(per_class=10)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=10, **SMALL))
    run(run_id, echo=lambda _: None)
    return run_id


def open_demo(run_id: str | None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if run_id is not None:
        at.query_params["run"] = run_id
    return at.run()


def test_only_finished_runs_can_be_published(trained):
    queued = prepare_run(TrainConfig(dataset="toy", strategy="linear", **SMALL))
    with pytest.raises(workspace.WorkspaceError, match="saved model"):
        demo.publish(queued)
    demo.publish(trained)
    assert demo.is_published(trained) and not demo.is_published(queued)
    demo.unpublish(trained)
    assert demo.published() == []


def test_published_demo_predicts_and_shows_nothing_else(trained):
    demo.publish(trained)
    at = open_demo(trained)
    assert at.title[0].value == "Try the classifier"
    assert not at.selectbox  # no dataset picker, no settings: only the predict box
    assert at.caption[0].value == "Model: **toy linear 1**"  # its name, not its id
    at.file_uploader(key="demo.files").upload("red.png", _png((220, 40, 40), 7), "image/png").run()
    assert any(m.value == "**red**" for m in at.markdown)
    assert not at.warning  # an image like the training images: no warning
    assert not at.exception


def test_the_demo_warns_about_an_image_unlike_the_training_images(trained):
    from imgcls.predict import UNFAMILIAR
    from test_ood import stripes_png

    demo.publish(trained)
    at = open_demo(trained)
    at.file_uploader(key="demo.files").upload("stripes.png", stripes_png(), "image/png").run()
    assert [w.value for w in at.warning] == [UNFAMILIAR]
    assert not at.exception


def test_unpublished_unknown_and_stopped_links_get_a_friendly_message(trained):
    for run_id in (trained, "no-such-run", "../../etc"):
        at = open_demo(run_id)
        assert "not active" in at.info[0].value
        assert not at.exception
    demo.publish(trained)
    demo.unpublish(trained)
    assert "not active" in open_demo(trained).info[0].value


def test_without_a_run_the_app_opens_as_usual():
    at = open_demo(None)
    assert at.title[0].value != "Try the classifier"
    assert not at.exception


def test_a_run_stopped_early_is_published_and_its_demo_names_it():
    from imgcls import runnames
    from imgcls.ui.text import plain
    from test_runs import stopped_finetune

    make_dataset(per_class=12)
    run_id = stopped_finetune()
    runnames.rename_run(run_id, "my *first* [model]")
    demo.publish(run_id)
    at = open_demo(run_id)
    assert at.title[0].value == "Try the classifier"
    assert at.caption[0].value == f"Model: **{plain('my *first* [model]')}** · stopped early, its best model so far"
    at.file_uploader(key="demo.files").upload("red.png", _png((220, 40, 40), 7), "image/png").run()
    assert any(m.value in ("**red**", "**blue**") for m in at.markdown)  # it predicts with the kept model
    assert not at.exception
