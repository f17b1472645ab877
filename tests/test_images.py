"""Decoding: every supported format and mode becomes an upright RGB image with sensible pixels."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from imgcls.store import workspace
from imgcls.ingest.imports import import_zip
from imgcls.ingest.images import ImageProblem, decode, inspect, is_image_name, load_rgb

pytestmark = pytest.mark.usefixtures("imgcls_home")  # nothing here may touch a real workspace

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 200, 0), (0, 0, 255), (255, 255, 255)


def pixels(img: Image.Image) -> np.ndarray:
    assert img.mode == "RGB"
    return np.asarray(img).astype(int)


def close(a, b, tol=6) -> bool:
    return bool(np.all(np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)) <= tol))


@pytest.mark.parametrize("fmt,kw,tol", [
    ("JPEG", {"quality": 95}, 8), ("PNG", {}, 0), ("WEBP", {"lossless": True}, 0), ("BMP", {}, 0),
    ("GIF", {}, 40), ("TIFF", {}, 0),  # GIF stores a palette: near, maybe not exact
])
def test_each_format_decodes_to_rgb(mk, fmt, kw, tol):
    data = mk.encode(mk.solid((200, 40, 90), (32, 24)), fmt, **kw)
    info, rgb = inspect(data)
    assert info.format == fmt
    assert (info.width, info.height) == (32, 24)
    img = decode(data)
    assert img.size == (32, 24)
    assert close(pixels(img)[12, 16], (200, 40, 90), tol)
    assert close(pixels(rgb), pixels(img), 0)


def test_gif_first_frame_is_used(mk):
    data = mk.encode(mk.solid(RED), "GIF", save_all=True, append_images=[mk.solid(BLUE)], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert close(pixels(decode(data)).reshape(-1, 3).mean(axis=0), RED, 1)


def test_multipage_tiff_first_page_is_used(mk):
    data = mk.encode(mk.solid(GREEN), "TIFF", save_all=True, append_images=[mk.solid(BLUE)])
    assert close(pixels(decode(data))[0, 0], GREEN, 0)


def _left_red_right_blue(w=40, h=20) -> Image.Image:
    img = Image.new("RGB", (w, h), BLUE)
    img.paste(RED, (0, 0, w // 2, h))
    return img


def test_exif_orientation_applied(mk):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    data = mk.encode(_left_red_right_blue(), "JPEG", quality=95, exif=exif.tobytes())
    raw = Image.open(io.BytesIO(data))
    assert raw.size == (40, 20)
    info, _ = inspect(data)
    assert (info.width, info.height) == (20, 40)
    img = decode(data)
    assert img.size == (20, 40)
    px = pixels(img)
    assert close(px[5, 10], RED, 30)  # the left of the stored picture is the top of the upright one
    assert close(px[34, 10], BLUE, 30)


def test_exif_orientation_in_import_manifest(mk):
    exif = Image.Exif()
    exif[0x0112] = 6
    rotated = mk.encode(_left_red_right_blue(), "JPEG", exif=exif.tobytes())
    members = [("a/rot.jpg", rotated), ("a/x.png", mk.png(1)), ("b/y.png", mk.png(2))]
    import_zip(mk.zip(members), "exif")
    row = workspace.read_manifest("exif").set_index("source").loc["a/rot.jpg"]
    assert (row["width"], row["height"]) == (20, 40)
    assert row["format"] == "JPEG"


def _broken_exifs():
    exif = Image.Exif()
    exif[0x0112] = 6
    raw = exif.tobytes()
    assert raw.startswith(b"Exif\0\0MM\0*")
    return {"truncated": raw[:10], "bad-header": raw.replace(b"MM\0*", b"MMX*", 1)}


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "JPEG"])
@pytest.mark.parametrize("kind", ["truncated", "bad-header"])
def test_unreadable_exif_keeps_the_stored_pixels(mk, fmt, kind):
    data = mk.encode(_left_red_right_blue(), fmt, exif=_broken_exifs()[kind], **({"lossless": True} if fmt == "WEBP" else {}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        info, _ = inspect(data)
        img = decode(data)
    assert (info.width, info.height) == img.size == (40, 20)
    assert close(pixels(img)[10, 5], RED, 30) and close(pixels(img)[10, 35], BLUE, 30)


def test_import_goes_on_past_unreadable_exif(mk):
    members = [("a/bad.png", mk.encode(mk.noise(1), "PNG", exif=_broken_exifs()["truncated"])),
               ("a/bad.webp", mk.encode(mk.noise(2), "WEBP", exif=_broken_exifs()["bad-header"])),
               ("b/ok.png", mk.png(3))]
    report = import_zip(mk.zip(members), "exif-broken")
    assert report.images == 3 and report.skipped_files == []


def test_cmyk_jpeg_becomes_rgb(mk):
    data = mk.encode(Image.new("CMYK", (32, 32), (0, 255, 255, 0)), "JPEG", quality=95)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    assert close(pixels(decode(data))[16, 16], RED, 10)


def test_palette_png_becomes_rgb(mk):
    img = Image.new("P", (32, 32), 1)
    img.putpalette([0, 0, 0, 10, 120, 230] + [0] * 762)
    img.paste(0, (0, 0, 16, 32))
    data = mk.encode(img, "PNG")
    px = pixels(decode(data))
    assert close(px[5, 5], (0, 0, 0), 0) and close(px[5, 25], (10, 120, 230), 0)


def test_palette_png_with_transparency_onto_white(mk):
    img = Image.new("P", (32, 32), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 16, 32))
    data = mk.encode(img, "PNG", transparency=0)
    px = pixels(decode(data))
    assert close(px[5, 5], RED, 0) and close(px[5, 25], WHITE, 0)


def test_rgba_png_alpha_onto_white(mk):
    img = Image.new("RGBA", (32, 32), (255, 0, 0, 0))  # fully transparent red
    img.paste((0, 0, 255, 255), (0, 0, 10, 32))  # opaque blue
    img.paste((0, 0, 0, 128), (10, 0, 20, 32))  # half-transparent black
    px = pixels(decode(mk.encode(img, "PNG")))
    assert close(px[5, 5], BLUE, 0)
    assert close(px[5, 15], (127, 127, 127), 2)
    assert close(px[5, 25], WHITE, 0)


def test_la_png_onto_white(mk):
    img = Image.new("LA", (8, 8), (0, 0))
    px = pixels(decode(mk.encode(img, "PNG")))
    assert close(px[0, 0], WHITE, 0)


def test_16bit_grayscale_png_scaled_to_8bit(mk):
    ramp = np.tile(np.linspace(0, 65535, 32).round().astype(np.uint16), (8, 1))
    src = Image.fromarray(ramp)
    assert src.mode == "I;16"
    data = mk.encode(src, "PNG")
    assert Image.open(io.BytesIO(data)).mode.startswith("I")
    px = pixels(decode(data))
    assert px.shape == (8, 32, 3)
    assert (px[..., 0] == px[..., 1]).all() and (px[..., 1] == px[..., 2]).all()
    row = px[0, :, 0]
    assert row[0] == 0 and row[-1] == 255
    assert (np.diff(row) >= 0).all()
    assert abs(row[16] - 255 * 16 / 31) <= 2


def test_grayscale_and_bilevel_become_rgb(mk):
    gray = Image.new("L", (16, 16), 77)
    px = pixels(decode(mk.encode(gray, "PNG")))
    assert (px == 77).all()
    bilevel = Image.new("1", (16, 16), 1)
    assert (pixels(decode(mk.encode(bilevel, "PNG"))) == 255).all()


def test_rgb_png_pixels_exact(mk):
    src = mk.noise(3)
    assert (pixels(decode(mk.encode(src, "PNG"))) == np.asarray(src)).all()


def test_load_rgb_reads_from_disk(tmp_path, mk):
    path = tmp_path / "x.webp"
    path.write_bytes(mk.encode(mk.solid(GREEN), "WEBP", lossless=True))
    assert close(pixels(load_rgb(path))[0, 0], GREEN, 0)


@pytest.mark.parametrize("data,reason", [
    (b"", "empty file"),
    (b"plain text, not an image", "corrupt image"),
    (b"%PDF-1.4\n%%EOF", "corrupt image"),
])
def test_unreadable_bytes_raise_image_problem(data, reason):
    with pytest.raises(ImageProblem) as err:
        decode(data)
    assert err.value.reason == reason
    assert str(err.value)


def test_truncated_jpeg_raises(mk):
    data = mk.jpeg(5, (64, 64))
    with pytest.raises(ImageProblem) as err:
        decode(data[: len(data) * 2 // 3])
    assert err.value.reason == "corrupt image"


def test_unsupported_pil_format_refused(mk):
    data = mk.encode(mk.solid(RED), "PPM")
    with pytest.raises(ImageProblem) as err:
        decode(data)
    assert err.value.reason == "unsupported format" and "PPM" in str(err.value)


def test_pixel_cap(mk):
    data = mk.png(1, (50, 40))
    assert decode(data, max_pixels=2000).size == (50, 40)
    with pytest.raises(ImageProblem) as err:
        decode(data, max_pixels=1999)
    assert err.value.reason == "too many pixels" and "50×40" in str(err.value)


@pytest.mark.parametrize("size", [(8000, 6000), (100_000, 100_000)])
def test_png_header_claiming_huge_size(mk, size):
    with pytest.raises(ImageProblem) as err:
        decode(mk.png_claiming_size(*size))
    assert err.value.reason == "too many pixels"


def test_is_image_name():
    assert all(is_image_name(n) for n in ("a.jpg", "B.JPEG", "c.png", "d.webp", "e.bmp", "f.gif", "g.tif", "h.TIFF"))
    assert not any(is_image_name(n) for n in ("a.txt", "b.heic", "c.svg", "d.pdf", "noext", "e.png.zip"))


def test_every_format_imports_with_its_extension(mk):
    fmts = {"jpg": ("JPEG", {}), "png": ("PNG", {}), "webp": ("WEBP", {}), "bmp": ("BMP", {}),
            "gif": ("GIF", {}), "tiff": ("TIFF", {})}
    members = [(f"{'a' if i % 2 else 'b'}/img.{ext}", mk.encode(mk.noise(i), fmt, **kw))
               for i, (ext, (fmt, kw)) in enumerate(fmts.items())]
    report = import_zip(mk.zip(members), "formats")
    assert report.images == 6 and report.skipped_files == []
    df = workspace.read_manifest("formats").set_index("source")
    expected_ext = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "BMP": ".bmp", "GIF": ".gif", "TIFF": ".tif"}
    for name, _ in members:
        fmt = fmts[name.rsplit(".", 1)[1]][0]
        assert df.loc[name, "format"] == fmt
        assert df.loc[name, "path"].endswith(expected_ext[fmt])
        stored = workspace.dataset_dir("formats") / df.loc[name, "path"]
        assert decode(stored.read_bytes()).size == (32, 32)
