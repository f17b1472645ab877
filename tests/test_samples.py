"""Tests for the built-in sample datasets."""

import io
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from imgcls.ingest.samples import SAMPLES, count_sample, iter_sample


@pytest.fixture(scope="module")
def shapes():
    """Generate the shapes sample once for the module."""
    return list(iter_sample("shapes", seed=0))


@pytest.fixture(scope="module")
def digits():
    """Generate the digits sample once for the module."""
    return list(iter_sample("digits"))


def _classes(entries):
    """Count entries per class folder."""
    return Counter(path.split("/")[0] for path, _ in entries)


def test_samples_have_descriptions():
    assert set(SAMPLES) == {"shapes", "digits"}
    assert all(isinstance(d, str) and d and "\n" not in d for d in SAMPLES.values())


def test_shapes_deterministic(shapes):
    assert list(iter_sample("shapes", seed=0)) == shapes


def test_shapes_other_seed_differs(shapes):
    other = list(iter_sample("shapes", seed=1))
    assert [p for p, _ in other] == [p for p, _ in shapes]
    assert sum(a[1] != b[1] for a, b in zip(other, shapes)) == len(shapes)


def test_shapes_classes(shapes):
    counts = _classes(shapes)
    assert len(counts) >= 4
    assert all(90 <= n <= 110 for n in counts.values())
    assert len({p for p, _ in shapes}) == len(shapes)
    assert all(p.endswith(".png") and p.count("/") == 1 for p, _ in shapes)


def test_shapes_decode_and_vary(shapes):
    sizes, colours = set(), []
    for _, data in shapes:
        img = Image.open(io.BytesIO(data))
        img.load()
        assert img.format == "PNG" and img.mode == "RGB"
        assert 32 <= min(img.size) and max(img.size) <= 256
        sizes.add(img.size)
        colours.append(np.asarray(img, dtype=float).reshape(-1, 3).mean(axis=0))
    assert len(sizes) > 20
    # Mean colours should spread widely, not cluster around one palette.
    assert np.asarray(colours).std(axis=0).min() > 20


def test_png_has_no_metadata(shapes):
    img = Image.open(io.BytesIO(shapes[0][1]))
    assert b"tIME" not in shapes[0][1] and not img.info.get("exif")


def test_digits(digits):
    counts = _classes(digits)
    assert sorted(counts) == [str(d) for d in range(10)]
    assert len(digits) == 1797
    assert digits[7][0].endswith("/0007.png")
    img = Image.open(io.BytesIO(digits[0][1]))
    img.load()
    assert img.mode == "L" and img.size[0] == img.size[1] >= 32
    assert len(np.unique(np.asarray(img))) > 2


def test_digits_decode(digits):
    for _, data in digits[::50]:
        Image.open(io.BytesIO(data)).load()


def test_count_sample_matches(shapes, digits):
    assert count_sample("shapes") == len(shapes)
    assert count_sample("digits") == len(digits)


@pytest.mark.parametrize("func", [iter_sample, count_sample])
def test_unknown_name_raises(func):
    with pytest.raises(ValueError, match="shapes"):
        func("nope")
