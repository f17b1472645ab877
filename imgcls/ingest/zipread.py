"""ZIP members read without trusting the archive's directory: entries that overlap are refused, and each
member is inflated in chunks and counted by the bytes it really gives, so a directory that understates
a member's size, overstates its compressed size or points many entries at one member cannot make the
server inflate, hold or write more than the caps allow."""

from __future__ import annotations

import importlib
import io
import struct
import threading
import zipfile
import zlib
from typing import Iterator

from imgcls.ingest.images import ImageProblem

CHUNK = 64 * 1024  # compressed bytes read, and inflated bytes made, per step
LOCAL_HEADER = 30  # bytes before a local header's name and extra field
COPY_METHODS = {zipfile.ZIP_STORED}


def _optional(module: str):
    try:
        return importlib.import_module(module)
    except ImportError:  # Python built without it: sources.READABLE_METHODS skips its members
        return None


bz2, lzma = _optional("bz2"), _optional("lzma")
# what a damaged stream raises: zlib.error, OSError (bz2), LZMAError, EOFError, ValueError
UNPACK_ERRORS = tuple(e for e in (zlib.error, OSError, EOFError, ValueError, getattr(lzma, "LZMAError", None)) if e)


class ArchiveRefused(Exception):
    """An archive that is not read any further; str() is one plain sentence."""


def _corrupt(detail: str) -> ImageProblem:
    return ImageProblem("corrupt archive member", detail)


def data_starts(zf: zipfile.ZipFile, label: str) -> dict[zipfile.ZipInfo, int]:
    """Where each member's compressed data begins, refusing an archive whose entries overlap (two directory
    records for one member, or one member's data running into another's) or run past the archive's data."""
    fp, starts, spans = zf.fp, {}, []
    size = fp.seek(0, io.SEEK_END)
    end_of_data = min(getattr(zf, "start_dir", size), size)  # where the central directory begins
    for info in zf.infolist():
        fp.seek(info.header_offset)
        head = fp.read(LOCAL_HEADER)
        if len(head) < LOCAL_HEADER or head[:4] != b"PK\x03\x04":
            continue  # reading it says it is damaged; it covers no bytes that another member could share
        name_len, extra_len = struct.unpack_from("<HH", head, 26)
        starts[info] = info.header_offset + LOCAL_HEADER + name_len + extra_len
        spans.append((info.header_offset, starts[info] + info.compress_size))
    spans.sort()
    if any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:])):
        raise ArchiveRefused(f"{label}: its entries overlap, which only a crafted archive does; nothing was imported.")
    if spans and max(end for _, end in spans) > end_of_data:
        raise ArchiveRefused(f"{label}: an entry claims more bytes than the archive holds, which only a damaged "
                             "or crafted archive does; nothing was imported.")
    return starts


class _Zlib:
    """zlib's raw deflate with the needs_input/max_length interface of the bz2 and lzma decompressors."""

    def __init__(self):
        self._d, self._tail, self.needs_input = zlib.decompressobj(-zlib.MAX_WBITS), b"", True

    eof = property(lambda self: self._d.eof)
    unused_data = property(lambda self: self._d.unused_data)

    def decompress(self, data: bytes, max_length: int) -> bytes:
        out = self._d.decompress(self._tail + data, max_length)
        self._tail = self._d.unconsumed_tail
        self.needs_input = not self._tail and len(out) < max_length
        return out


class _ZipLzma:
    """LZMA as ZIP stores it: a 4-byte version/size header and the LZMA1 properties, then a raw stream.

    The dictionary is never larger than the member's declared size (a decoder never looks further back
    than what it has made), so a header asking for a 4 GB dictionary cannot make the server allocate it."""

    def __init__(self, size: int):
        self._head, self._d, self._size = b"", None, size

    eof = property(lambda self: bool(self._d and self._d.eof))
    needs_input = property(lambda self: self._d is None or self._d.needs_input)
    unused_data = property(lambda self: self._d.unused_data if self._d else b"")

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._d is None:
            self._head += data
            if len(self._head) < 4 or len(self._head) < 4 + struct.unpack_from("<H", self._head, 2)[0]:
                return b""
            size = struct.unpack_from("<H", self._head, 2)[0]
            props, data = self._head[4:4 + size], self._head[4 + size:]
            if len(props) < 5:
                raise lzma.LZMAError("LZMA properties too short")
            lc, rest = props[0] % 9, props[0] // 9
            self._d = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=[{
                "id": lzma.FILTER_LZMA1, "lc": lc, "lp": rest % 5, "pb": rest // 5,
                "dict_size": max(min(int.from_bytes(props[1:5], "little"), self._size), 4096)}])
        return self._d.decompress(data, max_length)


def _decompressor(method: int, size: int):
    if method == zipfile.ZIP_DEFLATED:
        return _Zlib()
    if method == zipfile.ZIP_BZIP2:
        return bz2.BZ2Decompressor()
    if method == zipfile.ZIP_LZMA:
        return _ZipLzma(size)
    if method == getattr(zipfile, "ZIP_ZSTANDARD", None):  # Python 3.14+
        from compression import zstd

        return zstd.ZstdDecompressor()
    raise _corrupt(f"compressed with method {method}, which this app cannot read")


class MemberReader:
    """Reads the members of one listed archive within the caps, all of them drawing on one total budget."""

    def __init__(self, zf: zipfile.ZipFile, limits, label: str, starts: dict, ratio_floor: int):
        self.zf, self.limits, self.label, self.starts, self.ratio_floor = zf, limits, label, starts, ratio_floor
        self.budget = limits.max_total_bytes  # inflated bytes the whole import may still make
        self._lock = threading.Lock()  # a seek and its read belong together

    def _compressed(self, info: zipfile.ZipInfo) -> Iterator[bytes]:
        if info not in self.starts:
            raise _corrupt("its local header is missing or damaged")
        pos, left = self.starts[info], info.compress_size
        while left > 0:
            with self._lock:
                self.zf.fp.seek(pos)
                chunk = self.zf.fp.read(min(CHUNK, left))
            if not chunk:
                raise _corrupt("the archive ends inside it")
            pos, left = pos + len(chunk), left - len(chunk)
            yield chunk

    def _pieces(self, info: zipfile.ZipInfo, taken: list[int]) -> Iterator[bytes]:
        """The member's inflated bytes, at most CHUNK at a time; taken[0] counts the compressed bytes used."""
        if info.compress_type in COPY_METHODS:
            for chunk in self._compressed(info):
                taken[0] += len(chunk)
                yield chunk
            return
        dec = _decompressor(info.compress_type, info.file_size)
        for chunk in self._compressed(info):
            taken[0] += len(chunk)
            yield dec.decompress(chunk, CHUNK)
            while not dec.eof and not dec.needs_input:
                yield dec.decompress(b"", CHUNK)
            if dec.eof:  # whatever the directory says follows the stream is not part of it
                break
        while not dec.eof and not dec.needs_input:
            yield dec.decompress(b"", CHUNK)
        taken[0] -= len(dec.unused_data)

    def _check(self, info: zipfile.ZipInfo, made: int) -> None:
        """Stop the moment a member gives more than its directory entry, the per-file limit or the budget."""
        if made > info.file_size:
            raise _corrupt(f"it unpacks to more than the {info.file_size:,} bytes the archive's directory "
                           "declares (a damaged or crafted archive); reading stopped there")
        if made > self.limits.max_file_bytes:
            raise ImageProblem("too large", f"it unpacks to more than the per-file limit of "
                                            f"{self.limits.max_file_bytes:,} bytes; reading stopped there")
        if self.budget < 0:
            raise ArchiveRefused(f"{self.label} unpacks to more than {self.limits.max_total_bytes:,} bytes, the "
                                 "limit for one import (a ZIP bomb, or simply too big to import at once); "
                                 "nothing was imported.")

    def read(self, info: zipfile.ZipInfo) -> bytes:
        """One member's bytes, checked against its directory entry (size, checksum) and the caps."""
        out, crc, made, taken = io.BytesIO(), 0, 0, [0]
        try:
            for piece in self._pieces(info, taken):
                made += len(piece)
                self.budget -= len(piece)
                self._check(info, made)
                crc = zlib.crc32(piece, crc)
                out.write(piece)
        except UNPACK_ERRORS as exc:
            raise _corrupt(f"it could not be unpacked from the archive ({exc})") from None
        if made != info.file_size:
            raise _corrupt(f"it unpacks to {made:,} bytes, not the {info.file_size:,} its directory entry "
                           "declares (a damaged archive)")
        if crc != info.CRC:
            raise _corrupt("its checksum does not match (a damaged archive)")
        # The ratio of what it gave to what it really took: judged on the whole member, as the directory's
        # sizes are, because a photo with a flat first part compresses far more at first than overall.
        ratio = made / max(taken[0], 1)
        if made > self.ratio_floor and ratio > self.limits.max_ratio:
            raise ImageProblem("zip bomb", f"it unpacks {ratio:,.0f}:1 from the {taken[0]:,} bytes it really "
                                           f"takes in the archive, over the limit of {self.limits.max_ratio:,.0f}:1")
        return out.getvalue()
