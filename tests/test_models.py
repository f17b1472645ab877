"""Backbones: the bundled Lite0 weights really recognise ImageNet images; failures are plain."""

import time

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as skdata
from timm.data import create_transform

from imgcls.vision import models
from imgcls.vision.models import BackboneUnavailable, create_model, data_config, list_backbones

CAT_CLASSES = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO, CUP = 967, 968


@pytest.fixture(scope="module")
def imagenet_lite0():
    """Lite0 with the bundled weights and its 1000-class ImageNet head."""
    return create_model("efficientnet_lite0", 1000).eval()


def top1(model, image: np.ndarray) -> int:
    """ImageNet class index the model gives a uint8 RGB image, preprocessed its own way."""
    transform = create_transform(**data_config(model))
    batch = transform(Image.fromarray(image)).unsqueeze(0)
    with torch.no_grad():
        return int(model(batch).argmax(dim=1))


def test_bundled_weights_recognise_a_cat(imagenet_lite0):
    assert top1(imagenet_lite0, skdata.chelsea()) in CAT_CLASSES


def test_bundled_weights_recognise_coffee(imagenet_lite0):
    assert top1(imagenet_lite0, skdata.coffee()) in (ESPRESSO, CUP)


def test_new_head_keeps_the_bundled_backbone():
    model = create_model("efficientnet_lite0", 3).eval()
    with torch.no_grad():
        out = model(torch.zeros(2, 3, 224, 224))
    assert out.shape == (2, 3)
    bundled = torch.load(models.bundled_weights_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.conv_stem.weight, next(iter(bundled.values())))
    assert torch.equal(model.bn2.running_var, bundled["_bn1.running_var"])


def test_unpretrained_model_needs_no_weights():
    model = create_model("resnet18", 5, pretrained=False)
    assert model.num_classes == 5


def test_data_config_is_plain_json(imagenet_lite0):
    config = data_config(imagenet_lite0)
    assert config == data_config("efficientnet_lite0")
    assert config["input_size"] == [3, 224, 224]
    assert config["interpolation"] == "bicubic"
    assert set(config) >= {"input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode"}


def test_offline_backbone_fails_plainly_and_quickly(monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    # huggingface_hub reads these at import; an empty cache rules out weights from earlier runs.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(BackboneUnavailable) as info:
        create_model("resnet18", 3)
    assert time.monotonic() - start < 10
    message = str(info.value)
    assert "resnet18" in message and "efficientnet_lite0" in message
    assert "Traceback" not in message and "\n" not in message


def test_list_backbones():
    backbones = {b["name"]: b for b in list_backbones()}
    assert backbones["efficientnet_lite0"]["weights"] == "bundled"
    assert set(backbones) == set(models.BACKBONES)
    for entry in backbones.values():
        assert entry["params_millions"] > 0
        assert entry["weights"] in {"bundled", "cached", "download on first use"}
        assert entry["description"] and "\n" not in entry["description"]
    assert 4 < backbones["efficientnet_lite0"]["params_millions"] < 5


def test_unknown_backbone_lists_known_names():
    with pytest.raises(ValueError, match="efficientnet_lite0"):
        create_model("not_a_backbone", 3)


def test_cached_weights_load_without_network(monkeypatch, tmp_path):
    from huggingface_hub import constants
    from safetensors.torch import save_file

    # A hand-made hub cache entry, laid out the way huggingface_hub stores downloads.
    reference = create_model("resnet18", 1000, pretrained=False).state_dict()
    snapshot = tmp_path / "models--timm--resnet18.a1_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    save_file(reference, str(snapshot / "model.safetensors"))
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)

    weights = {b["name"]: b["weights"] for b in list_backbones()}
    assert weights["resnet18"] == "cached"
    model = create_model("resnet18", 3)
    assert torch.equal(model.conv1.weight, reference["conv1.weight"])
    assert model.get_classifier().out_features == 3


def test_one_frozen_backbone_is_shared_and_its_random_weights_are_seeded():
    pretrained = models.frozen_backbone("efficientnet_lite0")
    # the health check, the augmentation measurement and the lab ask in their own words: one model
    assert models.frozen_backbone("efficientnet_lite0", True, 5, "cpu") is pretrained
    assert not pretrained.training
    assert torch.equal(pretrained.conv_stem.weight, create_model("efficientnet_lite0", 2).conv_stem.weight)
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    first = models.frozen_backbone("resnet18", pretrained=False, seed=1)
    assert torch.equal(torch.rand(3), expected_next)  # the caller's random stream is left alone
    models._frozen.cache_clear()
    again = models.frozen_backbone("resnet18", pretrained=False, seed=1)
    assert again is not first and torch.equal(again.conv1.weight, first.conv1.weight)
    other = models.frozen_backbone("resnet18", pretrained=False, seed=2)
    assert not torch.equal(other.conv1.weight, first.conv1.weight)
    models._frozen.cache_clear()
