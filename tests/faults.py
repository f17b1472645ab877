"""Faults planted in a dataset with known truth, shared by the health tests and benchmarks/bench_health.py."""

from __future__ import annotations

import io

from PIL import Image


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    """The image as a file of format `fmt`."""
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


# how a near copy of a photo is made (tag → image → the copy's file): resized, re-saved as JPEG, cropped 2%
NEAR_COPIES = {
    "resized": lambda im: encode(im.resize((int(im.width * .8), int(im.height * .8)), Image.BICUBIC), "PNG"),
    "jpeg": lambda im: encode(im, "JPEG", quality=90),
    "cropped": lambda im: encode(im.crop((round(im.width * .02), round(im.height * .02),
                                          round(im.width * .98), round(im.height * .98))), "PNG"),
}
