"""AppTest of the Augment page: editor, seeded preview, save → training, upload errors."""

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.ingest import imports as data
from imgcls.store import runs, workspace
from imgcls.augment.pipeline import load_pipeline
from imgcls.train.run import TrainConfig, prepare_run
from imgcls.ui.common import nav

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
AUGMENT = nav.AUGMENT.path
TIMEOUT = 60

pytestmark = pytest.mark.usefixtures("app_home")


def open_augment(dataset: str | None = "shapes") -> AppTest:
    if dataset:
        data.import_sample(dataset, dataset)
        workspace.save_setting("active_dataset", dataset)
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page(AUGMENT).run()
    return at


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def test_page_renders_without_a_dataset():
    at = open_augment(None)
    assert at.title[0].value == "Augment"
    assert any("Data page" in i.value for i in at.info)
    assert not at.exception


def test_page_renders_the_light_preset_with_a_preview_grid():
    at = open_augment()
    assert not at.error
    assert at.slider(key="augment.HorizontalFlip.p").value == 0.5
    assert at.slider(key="augment.RandomResizedCrop.scale").value == (0.6, 1.0)  # a two-handle range
    assert len(at.image) == 4 * (1 + 3)  # 4 images, each beside 3 augmented versions
    assert any("the **light** preset" in c for c in captions(at))
    assert any("Not saved yet" in c for c in captions(at))
    assert not any("leave out the mirror" in c for c in captions(at))
    assert not at.exception


def test_changing_a_slider_changes_the_preview():
    at = open_augment()
    at.button(key="augment.preset.medium").click().run()
    before = [c for c in captions(at) if "Affine" in c]
    at.slider(key="augment.Affine.p").set_value(1.0).run()
    at.slider(key="augment.Affine.rotate").set_value((40.0, 40.0)).run()
    after = [c for c in captions(at) if "Affine" in c]
    assert after != before and len(after) == 4 * 3  # p = 1: every version is rotated…
    assert all("rotate 40.0°" in c for c in after)  # …by exactly the chosen angle
    assert any("your own pipeline" in c for c in captions(at))
    assert not at.exception


def test_resample_changes_the_draws_and_the_same_seed_repeats_them():
    at = open_augment()
    first = captions(at)
    at.button(key="augment.resample").click().run()
    assert captions(at) != first
    at.session_state["augment.seed"] = 0
    at.run()
    assert captions(at) == first
    assert not at.exception


def test_measure_button_shows_the_accuracy_heatmap():
    at = open_augment()
    at.button(key="augment.measure").click().run()
    assert at.button(key="augment.measure").disabled  # running in the background: one at a time
    deadline = time.time() + 180
    while not at.get("plotly_chart") and time.time() < deadline:
        time.sleep(0.5)
        at.run()  # what the page's polling fragment does every second
    assert not at.error
    charts = at.get("plotly_chart")
    assert len(charts) == 1
    figure = json.loads(charts[0].proto.spec)
    assert list(figure["data"][0]["y"]) == ["RandomResizedCrop", "HorizontalFlip"]
    assert any("linear classifier" in c for c in captions(at))
    assert not at.exception


def test_add_reorder_and_remove_transforms():
    at = open_augment()
    at.selectbox(key="augment.add.choice").set_value("VerticalFlip").run()
    at.button(key="augment.add").click().run()
    assert at.slider(key="augment.VerticalFlip.p").value == 0.5
    titles = [m.value for m in at.markdown if m.value.startswith("**3. ")]
    assert titles and "VerticalFlip" in titles[0]
    at.button(key="augment.VerticalFlip.up").click().run()
    assert any(m.value.startswith("**2. VerticalFlip") for m in at.markdown)
    at.button(key="augment.VerticalFlip.remove").click().run()
    assert not any("VerticalFlip" in m.value for m in at.markdown if m.value.startswith("**"))
    assert not at.exception


def test_digits_get_a_label_safety_warning_for_an_upside_down_flip():
    at = open_augment("digits")
    assert not at.warning
    # the light preset leaves out the mirror for characters, says so, and is still named as the preset
    assert at.slider(key="augment.RandomResizedCrop.scale").value == (0.6, 1.0)
    assert not [s for s in at.slider if s.key.startswith("augment.HorizontalFlip")]
    assert any("the **light** preset" in c for c in captions(at))
    assert any("leave out the mirror" in c for c in captions(at))
    at.selectbox(key="augment.add.choice").set_value("VerticalFlip").run()
    at.button(key="augment.add").click().run()
    assert any("VerticalFlip" in w.value and "'6' and '9'" in w.value for w in at.warning)
    assert not at.exception


def test_saved_pipeline_is_what_the_next_training_run_records():
    at = open_augment()
    at.button(key="augment.preset.heavy").click().run()
    at.slider(key="augment.GaussNoise.p").set_value(0.45).run()
    at.button(key="augment.save").click().run()
    assert any("Saved the augmentation pipeline" in s.value for s in at.success)
    saved = load_pipeline("shapes")
    noise = [t for t in saved["transform"]["transforms"] if t["__class_fullname__"] == "GaussNoise"]
    assert noise[0]["p"] == 0.45
    run_id = prepare_run(TrainConfig(dataset="shapes", strategy="linear"))
    assert runs.read_config(run_id)["augment_pipeline"] == saved
    # a new session (a refresh, another day) opens the saved pipeline again
    again = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    again.switch_page(AUGMENT).run()
    assert again.slider(key="augment.GaussNoise.p").value == 0.45
    assert any("Saved: every training run" in c for c in captions(again))
    assert not again.exception
    assert not at.exception


def test_malformed_upload_shows_an_error_and_keeps_the_pipeline():
    at = open_augment()
    at.button(key="augment.preset.medium").click().run()
    at.file_uploader(key="augment.upload").upload("mine.json", b'{"transform": [', "application/json").run()
    assert any("mine.json" in e.value and "not valid JSON" in e.value for e in at.error)
    assert at.slider(key="augment.Affine.p").value == 0.5  # still the medium preset
    assert any("the **medium** preset" in c for c in captions(at))
    assert not at.exception


def test_a_good_upload_replaces_the_pipeline():
    at = open_augment()
    pipeline = {"__version__": "2.0.8", "transform": {"__class_fullname__": "Compose", "p": 1.0, "transforms": [
        {"__class_fullname__": "ToGray", "p": 0.3}]}}
    at.file_uploader(key="augment.upload").upload("gray.json", json.dumps(pipeline).encode(),
                                                   "application/json").run()
    assert not at.error
    assert at.slider(key="augment.ToGray.p").value == 0.3
    assert any("Opened gray.json" in s.value for s in at.success)
    assert not at.exception


def test_one_image_mode_shows_more_versions_of_one_image():
    at = open_augment()
    at.button_group(key="augment.show").set_value("One image").run()
    assert len(at.image) == 1 + 7
    first = captions(at)
    at.slider(key="augment.one.k").set_value(3).run()
    assert len(at.image) == 1 + 3 and captions(at) != first
    assert not at.exception


def test_switching_dataset_loads_its_own_pipeline():
    data.import_sample("digits", "digits")
    at = open_augment()  # shapes, active
    at.button(key="augment.preset.heavy").click().run()
    at.button(key="augment.save").click().run()
    at.button_group(key="augment.show").set_value("One image").run()
    at.selectbox(key="sidebar.dataset").set_value("digits").run()
    assert not at.error
    assert any("the **light** preset" in c for c in captions(at))  # digits has nothing saved
    at.button_group(key="augment.show").set_value("Some classes").run()
    assert len(at.image) == 16
    at.selectbox(key="sidebar.dataset").set_value("shapes").run()
    assert any("the **heavy** preset" in c for c in captions(at))
    assert not at.exception


def test_tile_captions_wrap_between_words_and_a_row_holds_at_most_four_tiles():
    from imgcls.ui.augment import views as augment_views

    at = open_augment()
    at.slider(key="augment.k").set_value(6).run()
    assert len(at.image) == 4 * (1 + 6)
    tiles = [c for c in captions(at) if "RandomResizedCrop" in c.replace("\u200b", "")]
    assert tiles, "the light preset's crop is described under its tiles"
    # a long transform name has invisible break points between its words, so it never wraps mid-word
    assert all("Random\u200bResized\u200bCrop" in c for c in tiles)
    assert not [c for c in captions(at) if "RandomResizedCrop" in c]
    # seven tiles of one image wrap onto two rows instead of seven narrow columns
    assert min(col.weight for col in at.columns) >= 1 / augment_views.PER_ROW - 1e-9
    assert not at.exception


def test_images_slider_counts_images_per_class():
    at = open_augment()
    at.multiselect(key="augment.classes").set_value(["circle", "star"]).run()
    at.slider(key="augment.per_class").set_value(3).run()
    originals = [c for c in captions(at) if "original, as the model sees it" in c]
    assert sorted(originals) == sorted(["**circle** · original, as the model sees it"] * 3
                                       + ["**star** · original, as the model sees it"] * 3)
    assert len(at.image) == 6 * (1 + 3)
    assert at.slider(key="augment.per_class").label == "Images per class"
    assert not at.exception


def test_class_colours_are_read_only_when_a_colour_transform_is_chosen(monkeypatch):
    from imgcls.augment import labelsafety

    calls = []
    real = labelsafety.class_colours
    monkeypatch.setattr(labelsafety, "class_colours", lambda images: calls.append(len(images)) or real(images))
    at = open_augment()  # light: a crop and a flip, no rule looks at colours
    assert calls == []
    at.selectbox(key="augment.add.choice").set_value("ToGray").run()
    at.button(key="augment.add").click().run()
    assert calls == [5]  # the five shapes classes, once (then cached)
    assert not at.exception
