"""Augmentation spec and presets: every transform builds, round-trips and keeps images well-formed."""

import json

import albumentations as A
import numpy as np
import pytest

from imgcls.augment import spec as augspec
from imgcls.augment.pipeline import PRESETS, build_pipeline, pipeline_to_dict

IMAGE = np.random.default_rng(0).integers(0, 256, (256, 256, 3), dtype=np.uint8)


@pytest.mark.parametrize("spec", augspec.SPECS, ids=lambda s: s.name)
def test_every_spec_entry_builds_runs_and_round_trips(spec):
    pipeline = augspec.build([{"name": spec.name, "p": 1.0}], img_size=224, seed=3)
    out = pipeline(image=IMAGE)["image"]
    assert out.dtype == np.uint8 and out.ndim == 3 and out.shape[2] == 3
    saved = A.to_dict(pipeline)
    again = A.from_dict(json.loads(json.dumps(saved)))
    assert A.to_dict(again) == saved
    choices = augspec.choices_from_pipeline(saved)
    assert [c["name"] for c in choices] == [spec.name]
    assert A.to_dict(augspec.build(choices, img_size=224, seed=3)) == saved


def test_spec_covers_twenty_transforms_in_every_group():
    assert len(augspec.SPECS) >= 20
    assert {s.group for s in augspec.SPECS} == set(augspec.GROUPS)
    assert all(s.explain.endswith(".") for s in augspec.SPECS)


@pytest.mark.parametrize("preset", PRESETS)
def test_presets_keep_shape_and_dtype(preset):
    pipeline = build_pipeline(preset, 224, seed=0)
    out = pipeline(image=IMAGE)["image"]
    assert out.dtype == np.uint8
    assert out.shape == ((256, 256, 3) if preset == "none" else (224, 224, 3))
    assert A.to_dict(build_pipeline(pipeline_to_dict(pipeline), 224)) == A.to_dict(pipeline)


@pytest.mark.parametrize("preset", ["light", "medium", "heavy"])
def test_presets_mirror_photos_but_not_characters(preset):
    def names(classes):
        return [type(t).__name__ for t in build_pipeline(preset, 64, classes=classes).transforms]

    for classes in (None, ["ants", "bees"], ["0", "1", "ants", "bees"]):
        assert "HorizontalFlip" in names(classes)
    digits, letters = names([str(d) for d in range(10)]), names(["a", "b", "c"])
    assert "HorizontalFlip" not in digits and digits == letters
    assert [n for n in names(None) if n != "HorizontalFlip"] == digits  # the rest of the preset is kept


def test_min_above_max_is_refused_and_values_are_clamped():
    rotate = next(p for p in augspec.BY_NAME["Affine"].params if p.name == "rotate")
    with pytest.raises(ValueError, match="minimum"):
        augspec.clean_value(rotate, (30, -30))
    assert augspec.clean_value(rotate, (-500, 500)) == (-180.0, 180.0)
    kernel = augspec.BY_NAME["GaussianBlur"].params[0]
    assert augspec.clean_value(kernel, (4, 6)) == (5, 7)  # kernel sizes are odd


def test_unknown_transform_in_a_pipeline_is_refused():
    data = A.to_dict(A.Compose([A.Emboss(p=1.0)]))
    with pytest.raises(ValueError, match="Emboss"):
        augspec.choices_from_pipeline(data)
    with pytest.raises(ValueError, match="Unknown transform"):
        augspec.make_transform("NoSuchThing")


def test_malformed_pipeline_file_gets_a_plain_message(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"transform": {"__class_fullname__": "Compose", "transforms": [{"nope": 1}]}}')
    with pytest.raises(ValueError, match="bad.json"):
        build_pipeline(str(bad), 224)


def test_a_saved_crop_follows_the_run_image_size():
    saved = pipeline_to_dict(augspec.build([{"name": "RandomResizedCrop", "p": 1.0}], img_size=256))
    assert build_pipeline(saved, 64, seed=0)(image=IMAGE)["image"].shape == (64, 64, 3)
