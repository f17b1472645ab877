"""The bundle's predict.py prepares every kind of image the app accepts exactly as the app does: the same
pixels, the same input tensor, the same probabilities (it copies the app's decoding, since it may not import
imgcls, so this is what keeps the two from drifting apart)."""

from __future__ import annotations

import importlib.util
import io

import numpy as np
import pytest
from PIL import Image
from test_train import SMALL, make_dataset

from imgcls.evaluate.export import export_run
from imgcls.evaluate.predict import Predictor
from imgcls.ingest.images import decode
from imgcls.train.run import TrainConfig, prepare_run, run
from imgcls.vision.imgcache import to_tensor

W, H = 90, 56  # not square, so a rotation or a crop in the wrong place changes the pixels


def _save(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def _rgb(seed: int = 0) -> np.ndarray:
    """A colourful gradient with noise: every pixel different, so any change in the pipeline shows."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:H, 0:W]
    base = np.stack([x * 255 // W, y * 255 // H, (x + y) * 255 // (W + H)], axis=-1)
    return np.clip(base + rng.integers(-30, 30, (H, W, 3)), 0, 255).astype(np.uint8)


def _sixteen(top: int = 65535) -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    return ((x * W + y) * top // (W * W + H)).astype(np.uint16)


def _alpha() -> np.ndarray:
    """Opaque on the left, half transparent in the middle, fully transparent on the right."""
    a = np.full((H, W), 255, np.uint8)
    a[:, W // 3:] = 128
    a[:, 2 * W // 3:] = 0
    return a


def _palette(transparent: bool) -> bytes:
    img = Image.fromarray(_rgb(1)).quantize(24)
    return _save(img, "PNG", **({"transparency": 3} if transparent else {}))


def _exif_rotated() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° clockwise to view
    return _save(Image.fromarray(_rgb(2)), "JPEG", quality=95, exif=exif)


KINDS = {  # name: (file name, bytes, the mode PIL opens it in); TRICKY: a plain convert("RGB") gets them wrong
    "16-bit PNG": ("a.png", lambda: _save(Image.fromarray(_sixteen()), "PNG"), "I;16"),
    "16-bit TIFF": ("a.tif", lambda: _save(Image.fromarray(_sixteen()), "TIFF"), "I;16"),
    "16-bit big-endian TIFF": ("a.tif", lambda: _save(Image.frombytes("I;16B", (W, H),
                                                                       _sixteen().astype(">u2").tobytes()), "TIFF"),
                               "I;16B"),
    "16-bit PNG of 8-bit values": ("a.png", lambda: _save(Image.fromarray(_sixteen(255)), "PNG"), "I;16"),
    "32-bit TIFF": ("a.tif", lambda: _save(Image.fromarray(_sixteen().astype(np.int32)), "TIFF"), "I"),
    "float TIFF": ("a.tif", lambda: _save(Image.fromarray(_sixteen().astype(np.float32) / 65535), "TIFF"), "F"),
    "CMYK JPEG": ("a.jpg", lambda: _save(Image.fromarray(_rgb(3)).convert("CMYK"), "JPEG", quality=95), "CMYK"),
    "palette PNG": ("a.png", lambda: _palette(False), "P"),
    "palette PNG with transparency": ("a.png", lambda: _palette(True), "P"),
    "RGBA PNG": ("a.png", lambda: _save(Image.fromarray(np.dstack([_rgb(4), _alpha()]), "RGBA"), "PNG"), "RGBA"),
    "LA PNG": ("a.png", lambda: _save(Image.fromarray(np.dstack([_rgb(5)[..., 0], _alpha()]), "LA"), "PNG"), "LA"),
    "EXIF-rotated JPEG": ("a.jpg", _exif_rotated, "RGB"),
    "greyscale JPEG": ("a.jpg", lambda: _save(Image.fromarray(_rgb(6)[..., 1], "L"), "JPEG"), "L"),
    "RGB PNG": ("a.png", lambda: _save(Image.fromarray(_rgb(7)), "PNG"), "RGB"),
}
TRICKY = {"16-bit PNG", "16-bit TIFF", "16-bit big-endian TIFF", "32-bit TIFF", "float TIFF",
          "palette PNG with transparency", "RGBA PNG", "LA PNG", "EXIF-rotated JPEG"}


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    """A trained run, its bundle (.pt2 and ONNX are enough here) and its predict.py imported as a module."""
    root = tmp_path_factory.mktemp("images")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLS_HOME", str(root / "home"))
        make_dataset(per_class=6)
        run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=3, **SMALL))
        run(run_id, echo=lambda _: None)
        predictor = Predictor(run_id, check_familiar=False)
        out = export_run(run_id, root / "bundle", predictor, only=set())
        spec = importlib.util.spec_from_file_location("bundle_predict", out / "predict.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield predictor, module, module.onnx_model()


def _written(tmp_path, kind: str):
    name, make, mode = KINDS[kind]
    data = make()
    assert Image.open(io.BytesIO(data)).mode == mode  # the file really is of that kind
    path = tmp_path / name
    path.write_bytes(data)
    return data, path


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_predict_py_prepares_each_kind_of_image_as_the_app_does(bundle, tmp_path, kind):
    predictor, module, model = bundle
    data, path = _written(tmp_path, kind)
    app_pixels = predictor.pre.prepare(decode(data))
    assert np.array_equal(module.square(module.load(path)), app_pixels)
    app_input = to_tensor(app_pixels[None], predictor.pre.mean, predictor.pre.std).numpy()
    assert np.array_equal(module.prepare(path), app_input)  # the same float32 tensor, bit for bit
    app = predictor.predict([(path.name, data)], familiar=False)[0]["probabilities"]
    mine = module.probabilities(path, model)
    assert np.abs(mine - np.array([app[c] for c in predictor.classes])).max() <= 1e-4


@pytest.mark.parametrize("kind", sorted(TRICKY))
def test_a_plain_rgb_conversion_would_fail_that_comparison(bundle, tmp_path, kind, monkeypatch):
    predictor, module, _ = bundle
    data, path = _written(tmp_path, kind)
    monkeypatch.setattr(module, "to_rgb", lambda img: img.convert("RGB"))  # no EXIF, alpha or 16-bit handling
    assert not np.array_equal(module.square(module.load(path)), predictor.pre.prepare(decode(data)))
