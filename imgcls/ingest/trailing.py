"""An image file without whatever was appended after the image's own end.

A JPEG with a ZIP appended is still a valid JPEG, and a valid ZIP: stored byte for byte, it would go out
again in every export as an archive nobody looked into. So what is stored (and hashed) ends where the
format says the image ends, found by walking its structure, never by searching for a marker:

- JPEG: after the EOI marker of the first picture, the one the decoder shows (all its metadata, EXIF
  orientation included, comes before it); a multi-picture JPEG (MPO: stereo pairs, gain maps) keeps the
  further pictures its index lists, each walked to its own EOI.
- PNG: after the IEND chunk (an animated PNG's frames come before it). GIF: after the trailer byte.
- WebP: after the RIFF chunk, whose size its header states.
- BMP without compression: after the pixel rows (and an embedded colour profile, if any).
- TIFF, and BMPs with RLE or embedded JPEG/PNG data, are kept as they are: their parts are found through
  offsets that may point anywhere in the file, so no end can be cut at safely.

Whenever the walk meets something it does not expect, the bytes are kept as they are, and decoding them
decides as before.
"""

from __future__ import annotations

import re
import struct

_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # a marker after entropy-coded data (not a restart)


def _jpeg_segments(data: bytes, pos: int):
    """(marker, segment start, end) of one JPEG picture from its SOI at pos, ending with its EOI."""
    pos += 2
    while pos + 2 <= len(data):
        if data[pos] != 0xFF:
            return
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == 0xD9:
            yield marker, pos, pos + 2
            return
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        if pos + 4 > len(data) or (length := int.from_bytes(data[pos + 2:pos + 4], "big")) < 2:
            return
        yield marker, pos, pos + 2 + length
        pos += 2 + length
        if marker == 0xDA:  # start of scan: entropy-coded data up to the next real marker
            found = _MARKER.search(data, pos)
            if not found:
                return
            pos = found.start()


def _jpeg_picture_end(data: bytes, pos: int) -> tuple[int | None, int | None]:
    """Where the picture starting at pos ends (after its EOI), and where its MPF index base is."""
    if data[pos:pos + 2] != b"\xff\xd8":
        return None, None
    mpf = None
    for marker, start, end in _jpeg_segments(data, pos):
        if marker == 0xE2 and data[start + 4:start + 8] == b"MPF\x00":
            mpf = start + 8  # the multi-picture index: a TIFF header whose offsets count from here
        if marker == 0xD9:
            return end, mpf
    return None, None


def _mp_offsets(data: bytes, base: int) -> list[int]:
    """Start offsets of the further pictures a multi-picture index lists (empty when it cannot be read)."""
    try:
        order = {b"II": "<", b"MM": ">"}[data[base:base + 2]]
        ifd = base + struct.unpack_from(order + "I", data, base + 4)[0]
        for i in range(struct.unpack_from(order + "H", data, ifd)[0]):
            tag, _, count, value = struct.unpack_from(order + "HHII", data, ifd + 2 + 12 * i)
            if tag == 0xB002:  # MP entries: 16 bytes each (attributes, size, offset, dependencies)
                entries = [struct.unpack_from(order + "III", data, base + value + 16 * k) for k in range(count // 16)]
                return [base + offset for _, _, offset in entries if offset]
    except (KeyError, struct.error):
        pass
    return []


def _jpeg_end(data: bytes) -> int | None:
    end, mpf = _jpeg_picture_end(data, 0)
    if end is None or mpf is None:
        return end
    for start in _mp_offsets(data, mpf):
        if end <= start < len(data):
            more, _ = _jpeg_picture_end(data, start)
            end = max(end, more or 0)
    return end


def _png_end(data: bytes) -> int | None:
    pos = 8
    while pos + 12 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        pos += 12 + length
        if kind == b"IEND":
            return pos
    return None


def _gif_end(data: bytes) -> int | None:
    def colour_table(flags: int) -> int:
        return 3 * (2 << (flags & 7)) if flags & 0x80 else 0

    if len(data) < 13:
        return None
    pos = 13 + colour_table(data[10])
    while pos < len(data):
        block = data[pos]
        if block == 0x3B:  # trailer
            return pos + 1
        if block == 0x21:  # extension: introducer and label, then sub-blocks
            pos += 2
        elif block == 0x2C and pos + 10 < len(data):  # image: descriptor, colour table, LZW code size
            pos += 10 + colour_table(data[pos + 9]) + 1
        else:
            return None
        while pos < len(data) and data[pos]:
            pos += 1 + data[pos]
        pos += 1
    return None


def _webp_end(data: bytes) -> int | None:
    if data[8:12] != b"WEBP":
        return None
    size = struct.unpack_from("<I", data, 4)[0]
    return 8 + size + (size & 1)


def _bmp_end(data: bytes) -> int | None:
    if len(data) < 54:
        return None
    offset, header = struct.unpack_from("<I I", data, 10)
    if header < 40:
        return None
    width, height, _, bits, compression = struct.unpack_from("<iiHHI", data, 18)
    if compression not in (0, 3, 6):  # RLE, JPEG and PNG data: kept as they are
        return None
    end = offset + (bits * abs(width) + 31) // 32 * 4 * abs(height)
    if header >= 124 and data[70:74] == b"DEBM" and len(data) >= 14 + 124:  # 'MBED': an embedded profile
        profile, size = struct.unpack_from("<II", data, 14 + 112)
        end = max(end, 14 + profile + size)
    return end


_ENDS = ((b"\xff\xd8\xff", _jpeg_end), (b"\x89PNG\r\n\x1a\n", _png_end), (b"GIF8", _gif_end),
         (b"RIFF", _webp_end), (b"BM", _bmp_end))


def image_end(data: bytes) -> int | None:
    """Where the image in data ends by its own structure, or None when that cannot be told safely."""
    for magic, end_of in _ENDS:
        if data.startswith(magic):
            try:
                return end_of(data)
            except (struct.error, IndexError):
                return None
    return None


def without_trailing(data: bytes) -> bytes:
    """The image bytes up to the image's own end: anything appended after it is not kept."""
    end = image_end(data)
    return data[:end] if end is not None and 0 < end < len(data) else data
