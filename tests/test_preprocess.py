"""One preprocessing identity: its keys name the caches already on disk, its sizes, its two constructors agree,
and a health check followed by a default linear run decodes and embeds each image once."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import json

import numpy as np
import pytest
from PIL import Image

from imgcls.vision import features, imgcache
from imgcls.health import check as health, scan as healthscan
from imgcls.store import runs, workspace
from imgcls.ingest.imports import import_files
from imgcls.vision.preprocess import Preprocess, weights_id
from imgcls.train.run import TrainConfig, prepare_run, run

LITE0 = {"input_size": [3, 224, 224], "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406],
         "std": [0.229, 0.224, 0.225], "crop_pct": 0.875, "crop_mode": "center"}
# a default linear run's config.json, as far as preprocessing goes
FIXTURE = {"backbone": "efficientnet_lite0", "strategy": "linear", "img_size": 256, "data_config": LITE0,
           "weights": "efficientnet-lite0-57934424.pth"}


def _old_key(backbone: str, weights: str, config: dict, img_size: int) -> str:
    """Feature caches were named so before there was a Preprocess; they must still be found."""
    text = json.dumps({"backbone": backbone, "weights": weights, "config": config, "img_size": img_size},
                      sort_keys=True)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def test_keys_are_those_of_the_caches_on_disk():
    pre = Preprocess.for_run(FIXTURE)
    assert pre.feature_key() == _old_key("efficientnet_lite0", FIXTURE["weights"], LITE0, 256)
    assert pre.feature_key() == "72281c8a5cb418e4"  # the folder name under cache/features of such runs
    extra = {"transform": "blur", "strength": 2.0}  # the lab's transformed copies: a cache of their own
    assert pre.feature_key(extra) == _old_key("efficientnet_lite0", FIXTURE["weights"], {**LITE0, **extra}, 256)
    assert pre.feature_key(extra) != pre.feature_key()
    run_specific = dataclasses.replace(pre, weights="run:abc:1")
    assert run_specific.feature_key() == _old_key("efficientnet_lite0", "run:abc:1", LITE0, 256)


def test_sizes_follow_the_crop():
    assert Preprocess.for_run(FIXTURE).side == 292  # floor(256 / 0.875)
    assert Preprocess.for_run({**FIXTURE, "img_size": 224}).side == 256
    pre = Preprocess.for_backbone("resnet18")  # crop 0.95 at its native 224
    assert (pre.img_size, pre.side, pre.crop_pct) == (224, 235, 0.95)
    assert Preprocess.for_backbone("efficientnet_lite0", 300).side == 342


def test_weights_ids():
    assert weights_id("efficientnet_lite0") == FIXTURE["weights"]  # the bundled file's name
    assert weights_id("resnet18") == "timm:resnet18"
    assert weights_id("resnet18", pretrained=False) == "random"  # a run trained from scratch
    assert weights_id("resnet18", pretrained=False, seed=3) == "random-init-seed3"  # the lab's seeded weights
    assert Preprocess.for_backbone("resnet18", pretrained=False, seed=3).weights == "random-init-seed3"


def test_the_backbone_data_config_is_kept_and_cannot_be_changed_from_outside():
    pre = Preprocess.for_backbone("efficientnet_lite0", 256)
    assert pre == Preprocess.for_run(FIXTURE) and hash(pre) == hash(Preprocess.for_run(FIXTURE))
    assert pre.data_config == LITE0 and (pre.mean, pre.std, pre.interpolation) == (LITE0["mean"], LITE0["std"],
                                                                                  "bicubic")
    pre.data_config["crop_pct"] = 0.5
    assert pre.crop_pct == 0.875
    with pytest.raises(dataclasses.FrozenInstanceError):
        pre.img_size = 224  # type: ignore[misc]
    assert Preprocess.for_run(pre.as_config()) == pre


def test_a_data_config_alone_prepares_images_but_caches_no_features():
    pre = Preprocess.from_data_config(LITE0)
    assert (pre.img_size, pre.side) == (224, 256)
    with pytest.raises(ValueError, match="no backbone weights"):
        pre.feature_key()


def test_prepare_is_the_centre_of_the_cached_square(imgcls_home, tmp_path):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (300, 420, 3), dtype=np.uint8))
    (tmp_path / "a.png").write_bytes(_png_bytes(img))
    pre = Preprocess.for_run(FIXTURE)
    out = pre.prepare(img)
    assert out.shape == (256, 256, 3) and out.dtype == np.uint8
    cached = pre.load_images(tmp_path, ["a.png"], ["a"])  # what training reads
    assert cached.shape == (1, 292, 292, 3)
    assert np.array_equal(imgcache.center_crop(cached[0], 256), out)


def _png_bytes(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _dataset(name: str = "toy", per_class: int = 8) -> str:
    rng = np.random.default_rng(0)
    for label, colour in (("red", (220, 40, 40)), ("blue", (40, 40, 220))):
        files = []
        for i in range(per_class):
            arr = np.clip(np.array(colour) + rng.integers(-40, 40, (48, 48, 3)), 0, 255).astype(np.uint8)
            files.append((f"{label}{i}.png", _png_bytes(Image.fromarray(arr))))
        import_files(files, name, label)
    return name


@pytest.mark.parametrize("strategy", ["linear", "finetune", "full", "scratch"])
@pytest.mark.parametrize("backbone,img_size", [("efficientnet_lite0", None), ("resnet18", 96)])
def test_a_runs_config_gives_the_preprocessing_it_was_made_with(imgcls_home, strategy, backbone, img_size):
    _dataset()
    config = runs.read_config(prepare_run(TrainConfig(dataset="toy", backbone=backbone, strategy=strategy,
                                                      img_size=img_size)))
    expected = Preprocess.for_backbone(backbone, config["img_size"], pretrained=strategy != "scratch")
    assert Preprocess.for_run(config) == expected
    assert expected.weights == config["weights"] and expected.data_config == config["data_config"]


def test_health_check_then_default_linear_run_decode_and_embed_each_image_once(imgcls_home, monkeypatch,
                                                                              plain_torch):
    _dataset()
    paths = workspace.read_manifest("toy")["path"].tolist()
    decoded, embedded = collections.Counter(), []
    real_load, real_embed = imgcache.load_rgb, features.embed
    monkeypatch.setattr(imgcache, "load_rgb", lambda path: decoded.update([path.name]) or real_load(path))
    monkeypatch.setattr(features, "embed", lambda model, x: embedded.append(len(x)) or real_embed(model, x))

    report = health.check("toy")
    assert report["images_checked"] == len(paths)
    assert sum(embedded) == len(paths)
    # the run's defaults but its length: the epochs change nothing in what is decoded or embedded
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=3))
    run(run_id, echo=lambda _: None)

    config = runs.read_config(run_id)
    assert Preprocess.for_run(config) == healthscan.preprocess()
    assert sorted(decoded) == sorted(p.split("/")[-1] for p in paths)
    assert set(decoded.values()) == {1}, decoded
    assert sum(embedded) == len(paths), embedded  # the run read every feature from the health check's cache
    assert runs.read_status(run_id)["state"] == "done"


def test_a_health_check_at_another_size_shares_nothing(imgcls_home, monkeypatch, plain_torch):
    """The counter above can fail: a check at the backbone's native size makes the run decode and embed again."""
    _dataset()
    n = len(workspace.read_manifest("toy"))
    embedded = []
    real_embed = features.embed
    monkeypatch.setattr(features, "embed", lambda model, x: embedded.append(len(x)) or real_embed(model, x))
    health.check("toy", img_size=224)
    assert sum(embedded) == n
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=3))
    run(run_id, echo=lambda _: None)
    images = runs.read_config(run_id)["images"]
    assert sum(embedded) == n + images["train"] + images["val"]  # the run's own images, again
