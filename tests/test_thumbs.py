"""Thumbnails: made once per content hash and size, reused afterwards, the right size."""

import hashlib
import os

import pytest
from PIL import Image

from imgcls.store import workspace
from imgcls.vision.thumbs import thumbnail_path


@pytest.fixture()
def dataset(tmp_path, monkeypatch):
    """A dataset folder with one 300×150 PNG, in a fresh workspace."""
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "ws"))
    folder = tmp_path / "ws" / "datasets" / "tiny"
    (folder / "images").mkdir(parents=True)
    path = folder / "images" / "wide.png"
    Image.new("RGB", (300, 150), (200, 30, 30)).save(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return folder, "images/wide.png", digest


def test_thumbnail_is_a_square_jpeg_of_the_whole_image(dataset):
    folder, rel, digest = dataset
    thumb = thumbnail_path(folder, rel, digest, size=128)
    with Image.open(thumb) as img:
        assert img.format == "JPEG"
        assert img.size == (128, 128)
        rgb = img.convert("RGB")
        # The 2:1 image fills the width and the middle half of the height; the rest is padding.
        assert rgb.getpixel((64, 64))[0] > 150 and rgb.getpixel((64, 64))[1] < 80
        assert rgb.getpixel((64, 10)) == pytest.approx((240, 242, 246), abs=6)
        assert rgb.getpixel((2, 40))[0] > 150 and rgb.getpixel((125, 88))[0] > 150
    assert thumb.is_relative_to(workspace.cache_dir("thumbs"))


def test_thumbnail_is_made_once_then_reused(dataset):
    folder, rel, digest = dataset
    first = thumbnail_path(folder, rel, digest)
    past = 1_000_000_000  # set an old mtime: a rewrite would move it to now
    os.utime(first, ns=(past, past))
    (folder / rel).unlink()  # reuse must not even read the source image again
    again = thumbnail_path(folder, rel, digest)
    assert again == first
    assert again.stat().st_mtime_ns == past


def test_thumbnail_is_keyed_by_content_hash_and_size(dataset):
    folder, rel, digest = dataset
    small = thumbnail_path(folder, rel, digest, size=32)
    big = thumbnail_path(folder, rel, digest, size=64)
    assert small != big and digest in small.name and digest in big.name
    with Image.open(small) as img:
        assert img.size == (32, 32)
    # Same content under another file name and dataset: the same cached thumbnail.
    other = folder.parent / "copy"
    (other / "images").mkdir(parents=True)
    (other / "images" / "x.png").write_bytes((folder / rel).read_bytes())
    assert thumbnail_path(other, "images/x.png", digest, size=32) == small
    # Another content hash gets its own file.
    assert thumbnail_path(folder, rel, "f" * 64, size=32) != small


def test_no_temporary_files_are_left_behind(dataset):
    folder, rel, digest = dataset
    thumbnail_path(folder, rel, digest)
    leftovers = [p for p in workspace.cache_dir("thumbs").rglob("*") if p.is_file() and p.suffix != ".jpg"]
    assert leftovers == []


def test_small_images_are_enlarged_to_fill_the_square(tmp_path, monkeypatch):
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "ws"))
    (tmp_path / "images").mkdir()
    Image.new("RGB", (16, 8), (0, 0, 255)).save(tmp_path / "images" / "tiny.png")
    thumb = thumbnail_path(tmp_path, "images/tiny.png", "a" * 64, size=64)
    with Image.open(thumb) as img:
        assert img.size == (64, 64)
        assert img.convert("RGB").getpixel((2, 32))[2] > 200  # the image reaches the left edge
