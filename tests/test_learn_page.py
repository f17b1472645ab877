"""AppTest of the Learn page: filters, feature maps and the ImageNet guess render for the embedded backbone."""

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.ingest import imports as data
from imgcls.store import workspace
from imgcls.store.markdown import plain
from imgcls.ui.learn import learning
from imgcls.ui.common import nav

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")

pytestmark = pytest.mark.usefixtures("app_home")


def open_learn() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page(nav.LEARN.path).run()
    return at


def test_learn_page_shows_inside_views_on_a_dataset_image():
    data.import_sample("shapes", "shapes")
    workspace.save_setting("active_dataset", "shapes")
    at = open_learn()
    assert not at.exception
    markdown = " ".join(m.value for m in at.markdown)
    for stage in ("Early stage", "Middle stage", "Late stage"):
        assert stage in markdown
    assert "first layer" in markdown
    assert at.selectbox(key=learning.PICK).value.startswith("images/")
    # the filter grid, then per stage the input and its most active maps
    assert len(at.get("image")) == 1 + 3 * (1 + learning.SHOWN_MAPS)
    assert len(at.get("plotly_chart")) == 1
    assert "Train a model" in " ".join(c.value for c in at.caption)
    assert not at.error


def test_learn_page_without_a_dataset_asks_for_an_image():
    at = open_learn()
    assert not at.exception
    assert any("Upload a photo" in i.value for i in at.info)


def test_session_export_and_code_panels():
    data.import_sample("shapes", "shapes")
    workspace.save_setting("active_dataset", "shapes")
    at = open_learn()
    labels = [b.label for b in at.get("download_button")]
    assert "Download as a Python script" in labels and "Download as a Jupyter notebook" in labels
    at.switch_page(nav.DATA.path).run()
    assert any("import_sample('shapes', DATASET)" in c.value for c in at.code)
    assert any(e.label == "Why deep learning needs data" for e in at.expander)
    assert not at.exception


def test_an_experiment_runs_from_the_page_and_shows_its_measured_conclusion():
    from test_experiments import make_dataset

    from imgcls.lab import experiments
    from imgcls.ui.learn import experimenting

    name = make_dataset("toy", per_class=12)
    workspace.save_setting("active_dataset", name)
    at = open_learn()
    at.radio(key=experimenting.KIND).set_value("label-noise").run()
    assert any(e.label == "Why wrong labels hurt" for e in at.expander)
    at.button(key="learn.experiment.start.label-noise").click().run()
    assert not at.exception
    [info] = experiments.list_experiments(name)
    deadline = time.time() + 180
    while experiments.status(info["id"]).get("state") in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert experiments.status(info["id"])["state"] == "done"
    at.run()
    result = experiments.result(info["id"])
    assert [s.value for s in at.success if s.value == plain(result["conclusion"])]  # it quotes class names
    assert any("run_experiment(ExperimentConfig(kind='label-noise'" in c.value for c in at.code)
    assert not at.exception


def test_every_step_page_shows_code_that_compiles():
    data.import_sample("shapes", "shapes")
    workspace.save_setting("active_dataset", "shapes")
    at = AppTest.from_file(APP, default_timeout=120).run()
    for page in (nav.DATA, nav.REVIEW, nav.AUGMENT, nav.TRAIN):
        at.switch_page(page.path).run()
        blocks = [c.value for c in at.code if "DATASET" in c.value]
        assert blocks, f"no code panel on {page.title}"
        for code in blocks:
            compile(code, page.title, "exec")
        assert not at.exception


def test_an_experiment_that_cannot_start_says_why_plainly(monkeypatch):
    from test_experiments import make_dataset

    from imgcls.lab import experiments
    from imgcls.ui.learn import experimenting

    workspace.save_setting("active_dataset", make_dataset("toy", per_class=12))
    refused = workspace.WorkspaceError("The dataset 'toy' is being changed by another job; try again shortly.")
    monkeypatch.setattr(experiments, "start", lambda config: (_ for _ in ()).throw(refused))
    at = open_learn()
    at.radio(key=experimenting.KIND).set_value("label-noise").run()
    at.button(key="learn.experiment.start.label-noise").click().run()
    assert any(e.value == f"The experiment could not start: {refused}" for e in at.error)
    assert not at.exception


def test_feature_maps_lie_beside_the_input_at_its_size_with_what_to_look_for(monkeypatch):
    from imgcls.vision import inside

    sides = []
    real = inside.enlarge
    monkeypatch.setattr(inside, "enlarge", lambda m, side, smooth=True: sides.append(side) or real(m, side, smooth))
    data.import_sample("shapes", "shapes")
    workspace.save_setting("active_dataset", "shapes")
    at = open_learn()
    # every map is drawn at the input's own size (224 px for the default backbone), beside the input
    assert sides == [224] * (3 * learning.SHOWN_MAPS)
    inputs = [img for img in at.get("image") if img.captions == ["input, 224×224"]]
    assert len(inputs) == 3
    said = [c.value for c in at.caption]
    for stage, look in inside.STAGE_LOOK.items():
        assert f"What to look for: {look}" in said, stage
    assert not at.exception
