"""Augmentation preview, pipeline code/YAML/upload, and label safety (rules and the measurement)."""

import io
import json

import albumentations as A
import numpy as np
import pytest
from PIL import Image, ImageDraw

from imgcls.augment import pipeline as augment, preview as augpreview, spec as augspec, labelsafety
from imgcls.augment.pipeline import PRESETS, build_pipeline, pipeline_to_dict
from imgcls.vision.imgcache import cache_size, center_crop
from imgcls.train.loops import fit_size

SIZE = 64
SIDE = cache_size(SIZE, 0.875)  # 73: the cached square, as training reads it
RNG = np.random.default_rng(0)
IMAGES = [RNG.integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8) for _ in range(3)]
MEDIUM = augspec.choices_from_pipeline(pipeline_to_dict(build_pipeline("medium", SIZE)))


def _same(a, b) -> bool:
    return all(np.array_equal(x["original"], y["original"]) and
               all(np.array_equal(u["image"], v["image"]) and u["applied"] == v["applied"]
                   for u, v in zip(x["augmented"], y["augmented"])) for x, y in zip(a, b))


def test_preview_is_the_same_for_a_seed_and_changes_with_another():
    first = augpreview.preview(IMAGES, MEDIUM, SIZE, k=4, seed=7)
    assert _same(first, augpreview.preview(IMAGES, MEDIUM, SIZE, k=4, seed=7))
    other = augpreview.preview(IMAGES, MEDIUM, SIZE, k=4, seed=8)
    assert not _same(first, other)
    assert all(np.array_equal(x["original"], y["original"]) for x, y in zip(first, other))


def test_tiles_have_the_models_shape_and_match_training_exactly():
    tiles = augpreview.preview(IMAGES, "heavy", SIZE, k=3, seed=1)
    assert len(tiles) == len(IMAGES) and all(len(t["augmented"]) == 3 for t in tiles)
    for img, tile in zip(IMAGES, tiles):
        assert np.array_equal(tile["original"], center_crop(img, SIZE))  # evaluation's centre crop
        for v in tile["augmented"]:
            assert v["image"].shape == (SIZE, SIZE, 3) and v["image"].dtype == np.uint8
    # the same saved pipeline, built the way training builds it and seeded alike, draws the same tile
    pipeline = augment.reseed(build_pipeline(augpreview.as_dict("heavy", SIZE), SIZE), augpreview.tile_seed(1, 2, 1))
    assert np.array_equal(fit_size(pipeline(image=IMAGES[2])["image"], SIZE), tiles[2]["augmented"][1]["image"])


def _flip_counts(pipeline, n=400) -> set:
    img = np.zeros((4, 4, 3), np.uint8)
    img[0, 0] = 255  # a mark in the top-left corner shows which flips were made
    seen = set()
    for _ in range(n):
        out = pipeline(image=img)["image"]
        seen.add((bool(out[0, -1].any() or out[-1, -1].any()), bool(out[-1, 0].any() or out[-1, -1].any())))
    return seen


FLIPS = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "VerticalFlip", "p": 0.5}]


def test_seeded_transforms_draw_independently():
    assert len(_flip_counts(augment.reseed(augspec.build(FLIPS, 4), 0))) == 4  # none, either, both


def test_training_pipelines_draw_independently():
    assert len(_flip_counts(build_pipeline(augpreview.as_dict(FLIPS, 4), 4, seed=0))) == 4


def test_captions_name_the_applied_transforms_with_their_drawn_values():
    choices = [{"name": "HorizontalFlip", "p": 1.0}, {"name": "Affine", "p": 1.0, "params": {"rotate": (7, 7)}},
               {"name": "ToGray", "p": 0.0}]
    applied = augpreview.preview(IMAGES[:1], choices, SIZE, k=2, seed=0)[0]["augmented"][0]["applied"]
    assert applied[0] == "HorizontalFlip: mirrored"
    assert applied[1].startswith("Affine: rotate 7.0°, scale")
    assert not any("ToGray" in a for a in applied)  # p = 0: never applied, never listed


def test_every_transform_is_described_when_applied():
    choices = [{"name": s.name, "p": 1.0} for s in augspec.SPECS]
    applied = augpreview.preview(IMAGES[:1], choices, SIZE, k=1, seed=3)[0]["augmented"][0]["applied"]
    assert [a.split(":")[0] for a in applied] == [s.name for s in augspec.SPECS]
    assert all(": " in a for a in applied), applied  # each has its drawn values in words


@pytest.mark.parametrize("pipeline", [*PRESETS, [{"name": s.name, "p": 0.4} for s in augspec.SPECS]],
                         ids=[*PRESETS, "every-transform"])
def test_python_code_rebuilds_an_equal_pipeline(pipeline):
    data = augpreview.as_dict(pipeline, SIZE)
    namespace = {}
    exec(augpreview.to_python(data), namespace)
    assert A.to_dict(namespace["pipeline"]) == A.to_dict(A.from_dict(data))


def test_json_and_yaml_round_trip_through_upload():
    data = augpreview.as_dict("heavy", SIZE)
    assert augpreview.from_upload(augpreview.to_json(data).encode(), "p.json") == data
    assert augpreview.from_upload(augpreview.to_yaml(data).encode(), "p.yaml") == data
    assert augpreview.from_upload(augpreview.to_yaml(data).encode(), "p.txt") == data  # sniffed


@pytest.mark.parametrize("content,name,words", [
    (b'{"transform": {"transforms": [', "broken.json", "not valid JSON"),
    (json.dumps(A.to_dict(A.Compose([A.Emboss(p=1.0)]))).encode(), "emboss.json", "Emboss"),
    (b"transform: [a, {b: c\n  - ]]", "garbage.yaml", "neither valid JSON nor valid YAML"),
    (b"- 1\n- 2\n", "list.yaml", "does not describe an augmentation pipeline"),
    (b"\x89PNG\r\n\x1a\n\x00\xff", "photo.json", "not a text file"),
    (b"a: &x [1, 2]\nb: *x\n", "alias.yaml", "aliases"),
    (json.dumps({"transform": {"__class_fullname__": "Compose", "transforms": [
        {"__class_fullname__": "GaussianBlur", "blur_limit": [4, 2], "p": 1}]}}).encode(), "blur.json",
     "the minimum (4) is above the maximum (2)"),
    (json.dumps({"transform": {"__class_fullname__": "Compose", "transforms": [
        {"__class_fullname__": "HorizontalFlip", "p": 3}]}}).encode(), "flip.json",
     "p: Input should be less than or equal to 1"),
], ids=["malformed-json", "unknown-transform", "yaml-garbage", "not-a-pipeline", "binary", "yaml-alias",
        "min-above-max", "albumentations-refuses"])
def test_bad_uploads_are_refused_in_plain_words(content, name, words):
    with pytest.raises(ValueError) as info:
        augpreview.from_upload(content, name)
    assert words in str(info.value) and name in str(info.value)
    assert "Traceback" not in str(info.value) and "[type=" not in str(info.value)


# --- label safety ---------------------------------------------------------------------------------

DIGITS = [str(d) for d in range(10)]


def test_flips_and_big_rotations_are_flagged_on_digits():
    choices = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "VerticalFlip", "p": 0.5},
               {"name": "RandomRotate90", "p": 0.5}, {"name": "Affine", "p": 0.5, "params": {"rotate": (-45, 45)}}]
    found = labelsafety.rule_warnings(choices, DIGITS)
    assert "VerticalFlip" in " ".join(found) and "'6' and '9'" in " ".join(found)
    assert "RandomRotate90" in " ".join(found) and "Affine" in " ".join(found)
    mirror = [w for w in found if w.startswith("**HorizontalFlip**")]
    assert len(mirror) == 1 and "never be shown" in mirror[0]  # no pair of digits mirrors into another
    letters = labelsafety.rule_warnings(choices[:1], ["b", "d", "x"])
    assert len(letters) == 1 and "'b' and 'd' are mirror images" in letters[0]
    small = [{"name": "Affine", "p": 0.5, "params": {"rotate": (-15, 15)}}]
    assert labelsafety.rule_warnings(small, DIGITS) == []
    assert labelsafety.rule_warnings(choices, ["cat", "dog", "bird"]) == []  # no natural 'up' to lose


def test_flags_vertical_flip_on_the_digits_sample(imgcls_home):
    from imgcls.ingest import imports as data
    from imgcls.store import workspace

    data.import_sample("digits", "digits")
    classes = sorted(workspace.read_manifest("digits")["label"].astype(str).unique())
    assert any("VerticalFlip" in w for w in labelsafety.rule_warnings([{"name": "VerticalFlip", "p": 0.5}], classes))


def _solid(rgb, n=4):
    return np.stack([np.clip(np.full((32, 32, 3), rgb) + RNG.normal(0, 8, (32, 32, 3)), 0, 255).astype(np.uint8)
                     for _ in range(n)])


def test_grey_and_hue_shifts_are_flagged_when_classes_differ_by_colour():
    colours = labelsafety.class_colours({"ripe": _solid((200, 30, 30)), "unripe": _solid((40, 180, 40))})
    choices = [{"name": "ToGray", "p": 0.2}, {"name": "HueSaturationValue", "p": 0.3,
                                              "params": {"hue_shift_limit": (-70, 70)}}]
    found = " ".join(labelsafety.rule_warnings(choices, ["ripe", "unripe"], colours))
    assert "ToGray" in found and "HueSaturationValue" in found
    gentle = [{"name": "HueSaturationValue", "p": 0.3, "params": {"hue_shift_limit": (-5, 5)}}]
    assert labelsafety.rule_warnings(gentle, ["ripe", "unripe"], colours) == []  # ±10° cannot make red green
    mixed = {label: np.concatenate([_solid((200, 30, 30), 2), _solid((40, 180, 40), 2)]) for label in "ab"}
    assert labelsafety.rule_warnings(choices, ["a", "b"], labelsafety.class_colours(mixed)) == []


def _arrow(up: bool, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    img = Image.new("RGB", (64, 64), tuple(int(v) for v in rng.integers(150, 255, 3)))
    x, y, s = (int(v) for v in (rng.integers(24, 40), rng.integers(26, 38), rng.integers(14, 20)))
    tip, base = (y - s, y + s) if up else (y + s, y - s)
    ImageDraw.Draw(img).polygon([(x, tip), (x - s, base), (x + s, base)], fill=(20, 20, 20))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_measurement_sees_that_an_upside_down_arrow_is_another_class(imgcls_home):
    from imgcls.ingest.imports import import_listing
    from imgcls.ingest.sources import list_memory

    files = [(f"{'up' if up else 'down'}/{i:03d}.png", _arrow(up, i + 100 * up)) for up in (True, False)
             for i in range(24)]
    import_listing(list_memory(files), "arrows", "generated")
    choices = [{"name": "HorizontalFlip", "p": 0.5}, {"name": "VerticalFlip", "p": 0.5}]
    result = labelsafety.measure("arrows", choices, per_train=16, per_val=6)
    assert result["transforms"] == ["HorizontalFlip", "VerticalFlip"] and result["classes"] == ["down", "up"]
    assert np.nanmean(result["clean"]) >= 0.8
    drop = dict(zip(result["transforms"], np.nanmean(np.array(result["drop"]), axis=1)))
    assert drop["VerticalFlip"] >= 0.5 > 0.2 >= drop["HorizontalFlip"]
    assert any("VerticalFlip" in line for line in labelsafety.worst(result))
    assert labelsafety.drop_figure(result).data[0].z.shape == (2, 2)
