"""The fast inference path (vision.engine): the same answers as PyTorch, converted once, kept where it belongs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgcls.vision import engine
from imgcls.vision.features import embed

SIZE = 64


@pytest.fixture
def fresh(imgcls_home, monkeypatch):
    """No converted network held in memory, and OpenVINO's availability read anew."""
    monkeypatch.setattr(engine, "_loaded", type(engine._loaded)())
    engine.available.cache_clear()
    yield imgcls_home
    engine.available.cache_clear()


def _net(seed: int = 0) -> torch.nn.Module:
    from imgcls.vision.models import create_model

    torch.manual_seed(seed)
    return create_model("efficientnet_lite0", 3, pretrained=False).eval()


def _batch(n: int = 6) -> torch.Tensor:
    return torch.randn(n, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def test_converted_features_and_logits_are_pytorchs_own_answers(fresh):
    model, x = _net(), _batch()
    for kind, reference in (("features", embed(model, x)), ("logits", torch.no_grad()(model)(x))):
        run = engine.compiled(model, kind, SIZE, images=engine.MIN_IMAGES)
        assert run is not None
        got = run(x)
        assert got.shape == reference.shape
        assert float((got - reference).abs().max()) <= 1e-4 * float(reference.abs().max())
    # a batch of another size runs through the same converted network
    assert engine.compiled(model, "features", SIZE, images=1)(x[:5]).shape == (5, embed(model, x).shape[1])


def test_a_few_images_stay_in_pytorch_until_the_network_is_converted_once(fresh):
    model = _net()
    assert engine.compiled(model, "features", SIZE, images=engine.MIN_IMAGES - 1) is None
    assert not list((fresh / "cache" / "compiled").glob("*.xml"))
    assert engine.compiled(model, "features", SIZE, images=engine.MIN_IMAGES) is not None
    saved = list((fresh / "cache" / "compiled").glob("*.xml"))
    assert len(saved) == 1 and saved[0].with_suffix(".bin").stat().st_size > 1_000_000
    engine._loaded.clear()  # a new process: the converted network is read from disk, for any number of images
    assert engine.compiled(model, "features", SIZE, images=1) is not None


def test_trained_weights_get_their_own_conversion_and_the_last_layer_does_not_count_for_features(fresh):
    a, b = _net(0), _net(0)
    with torch.no_grad():
        b.get_classifier().weight.add_(1.0)
    assert engine.digest(a, "features") == engine.digest(b, "features")
    assert engine.digest(a, "logits") != engine.digest(b, "logits")
    with torch.no_grad():
        b.conv_stem.weight.mul_(1.01)  # what a training step does
    assert engine.digest(a, "features") != engine.digest(b, "features")


def test_published_weights_are_converted_into_the_machine_cache_and_trained_ones_into_the_workspace(
        fresh, machine_cache):
    from imgcls.vision.models import frozen_backbone

    public = frozen_backbone("efficientnet_lite0", pretrained=False, seed=5)
    assert engine.compiled(public, "features", SIZE, images=engine.MIN_IMAGES) is not None
    key = f"{engine.digest(public, 'features')}-{SIZE}.xml"
    assert (machine_cache / "compiled" / key).exists()
    assert not (fresh / "cache" / "compiled" / key).exists()
    private = _net(7)
    engine.compiled(private, "features", SIZE, images=engine.MIN_IMAGES)
    assert (fresh / "cache" / "compiled" / f"{engine.digest(private, 'features')}-{SIZE}.xml").exists()


def test_plain_torch_is_one_setting_away_and_a_failed_conversion_falls_back(fresh, monkeypatch):
    model = _net()
    monkeypatch.setenv(engine.ENV, "torch")
    engine.available.cache_clear()
    assert engine.compiled(model, "features", SIZE, images=10 ** 6) is None
    assert not engine.cpu_bf16()  # plain fp32 training too
    monkeypatch.delenv(engine.ENV)
    engine.available.cache_clear()

    def refuse(*_args):
        raise RuntimeError("an operator the converter does not know")

    monkeypatch.setattr(engine, "_convert", refuse)
    assert engine.compiled(model, "features", SIZE, images=10 ** 6) is None


def test_feature_extraction_and_prediction_agree_between_the_two_paths(fresh, monkeypatch):
    from imgcls.vision.features import extract
    from imgcls.vision.infer import predict_arrays

    model = _net()
    images = np.random.default_rng(2).integers(0, 256, (engine.MIN_IMAGES, SIZE + 8, SIZE + 8, 3), dtype=np.uint8)
    hashes = [f"h{i}" for i in range(len(images))]
    config = {"mean": [0.5] * 3, "std": [0.25] * 3}
    fast = extract(model, images, hashes, "fast", config, SIZE)
    fast_probs = predict_arrays(model, images, SIZE, config["mean"], config["std"], "cpu")
    assert list((fresh / "cache" / "compiled").glob("*.xml")), "the fast path was not taken"
    monkeypatch.setenv(engine.ENV, "torch")
    engine.available.cache_clear()
    slow = extract(model, images, hashes, "slow", config, SIZE)
    slow_probs = predict_arrays(model, images, SIZE, config["mean"], config["std"], "cpu")
    assert np.abs(fast - slow).max() <= 1e-4 * np.abs(slow).max()
    assert np.abs(fast_probs - slow_probs).max() <= 1e-4  # the export goldens' tolerance
    assert (fast_probs.argmax(1) == slow_probs.argmax(1)).all()
