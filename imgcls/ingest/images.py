"""Decoding images the same way everywhere: EXIF orientation applied, every mode made RGB."""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

# Extensions we accept, and the decoders PIL may report for them (MPO is a camera JPEG).
IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".dib", ".gif", ".tif", ".tiff"}
IMAGE_FORMATS = {"JPEG", "MPO", "PNG", "WEBP", "BMP", "DIB", "GIF", "TIFF"}
DEFAULT_MAX_PIXELS = 40_000_000  # 40 megapixels: bigger than any phone photo, far below a decompression bomb


class ImageProblem(Exception):
    """An image we refuse to use; `reason` is a short category, str() the plain explanation."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class ImageInfo:
    """What an import needs to know about a decodable image."""

    format: str
    width: int
    height: int


def is_image_name(name: str) -> bool:
    """Whether a file name has one of the supported image extensions."""
    return Path(name).suffix.lower() in IMAGE_EXTENSIONS


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open and fully decode the first frame, refusing bombs and broken files."""
    if not data:
        raise ImageProblem("empty file", "the file is empty (0 bytes)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            img = Image.open(io.BytesIO(data))
            if img.format not in IMAGE_FORMATS:
                raise ImageProblem("unsupported format", f"unsupported image format ({img.format})")
            if img.width * img.height > max_pixels:
                raise ImageProblem(
                    "too many pixels",
                    f"{img.width}×{img.height} pixels is over the limit of {max_pixels:,} "
                    "(possible decompression bomb)",
                )
            img.seek(0)  # the first frame of a GIF or multi-page TIFF
            img.load()
        except ImageProblem:
            raise
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise ImageProblem("too many pixels", "too many pixels (possible decompression bomb)")
        except Image.UnidentifiedImageError:
            raise ImageProblem("corrupt image", "not a readable image (corrupt, or not an image at all)")
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            raise ImageProblem("corrupt image", f"corrupt or truncated image ({exc})")
    return img


def to_rgb(img: Image.Image) -> Image.Image:
    """Make any PIL image RGB: orientation from EXIF, alpha onto white, 16-bit scaled to 8-bit."""
    try:
        img = ImageOps.exif_transpose(img)
    except Exception:  # unreadable EXIF (struct.error, SyntaxError, …): the pixels are fine, keep them as stored
        pass
    if img.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode != "F" and arr.max() > 255 else 255.0
        if img.mode == "F":
            top = 1.0 if arr.max() <= 1.0 else 255.0
        arr = np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
        img = Image.fromarray(arr, "L")
    if img.mode == "P" or img.mode == "PA":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    return img.convert("RGB")


def decode(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Decode image bytes into an RGB PIL image, or raise ImageProblem."""
    try:
        return to_rgb(_open(data, max_pixels))
    except ImageProblem:
        raise
    except (OSError, ValueError) as exc:
        raise ImageProblem("corrupt image", f"corrupt or truncated image ({exc})")


def inspect(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[ImageInfo, Image.Image]:
    """Fully decode image bytes and return their format and upright size with the RGB image."""
    img = _open(data, max_pixels)
    fmt = "JPEG" if img.format == "MPO" else img.format
    try:
        rgb = to_rgb(img)
    except (OSError, ValueError) as exc:
        raise ImageProblem("corrupt image", f"corrupt or truncated image ({exc})")
    return ImageInfo(fmt, rgb.width, rgb.height), rgb


def load_rgb(path: str | Path, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read an image file from disk as RGB."""
    return decode(Path(path).read_bytes(), max_pixels)
