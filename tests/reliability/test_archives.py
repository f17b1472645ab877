"""Hostile archives and images: a ZIP directory that lies about sizes, entries that overlap, images with a
ZIP appended. Each input is built here, byte by byte where zipfile would not write it.

Cases that already held are tested where they were: tests/test_import.py (zip-slip names, symlink
members, plain ratio bombs, a member inflating past a small declared size, per-file, total and count caps,
nested archives, Deflate64, truncated and corrupt images, pixel bombs) and tests/test_images.py
(truncated JPEG, pixel cap, PNG header claiming a huge size)."""

from __future__ import annotations

import hashlib
import io
import random
import struct
import time
import tracemalloc
import zipfile
import zlib

import pytest
from PIL import Image

from imgcls.store import workspace
from imgcls.ingest.archive import export_dataset
from imgcls.ingest.imports import ImportFailed, import_zip
from imgcls.ingest.sources import READABLE_METHODS, ImportLimits, SourceError, list_zip, open_zip

pytestmark = pytest.mark.usefixtures("imgcls_home")
MB = 1024**2


# --- building archives by hand ----------------------------------------------------------------------


def flat_bmp(width: int, height: int, colour=(40, 90, 200)) -> bytes:
    """A one-colour 24-bit BMP, written directly (Pillow would take seconds for the big ones)."""
    row = bytes(colour[::-1]) * width
    body = (row + b"\0" * (-len(row) % 4)) * height
    return (b"BM" + struct.pack("<IHHI", 54 + len(body), 0, 0, 54)
            + struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(body), 2835, 2835, 0, 0) + body)


def deflate(data: bytes) -> bytes:
    comp = zlib.compressobj(9, zlib.DEFLATED, -15)
    return comp.compress(data) + comp.flush()


def local_header(name: bytes, crc: int, csize: int, usize: int, method: int = 8) -> bytes:
    return struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc, csize, usize, len(name), 0) + name


def central_record(name: bytes, crc: int, csize: int, usize: int, offset: int, method: int = 8) -> bytes:
    return struct.pack("<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, method, 0, 0, crc, csize, usize,
                       len(name), 0, 0, 0, 0, 0, offset) + name


def end_record(count: int, directory: bytes, directory_offset: int) -> bytes:
    return struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, count, count, len(directory), directory_offset, 0)


def hand_zip(members: list[tuple[str, bytes, bytes]], records=None) -> bytes:
    """A ZIP of (name, data, stored stream) members laid out one after another; `records` rewrites the
    central directory: a function of [(name, crc, csize, usize, offset)] giving the records to write."""
    body, entries = b"", []
    for name, data, stream in members:
        entries.append((name.encode(), zlib.crc32(data), len(stream), len(data), len(body)))
        body += local_header(name.encode(), zlib.crc32(data), len(stream), len(data)) + stream
    directory = b"".join(central_record(*e) for e in (records(entries) if records else entries))
    count = directory.count(b"PK\x01\x02")
    return body + directory + end_record(count, directory, len(body))


def patch_central(raw: bytes, name: str, **fields: int) -> bytes:
    """Rewrite compress_size/file_size of one member's central-directory record, as a lying tool would."""
    raw, at = bytearray(raw), raw.find(b"PK\x01\x02")
    where = {"compress_size": 20, "file_size": 24}
    while at >= 0:
        n = struct.unpack_from("<H", raw, at + 28)[0]
        if raw[at + 46:at + 46 + n] == name.encode():
            for key, value in fields.items():
                struct.pack_into("<I", raw, at + where[key], value)
        at = raw.find(b"PK\x01\x02", at + 4)
    return bytes(raw)


def good_members(mk) -> list[tuple[str, bytes]]:
    return mk.class_members({"cats": 2, "dogs": 2})


def measured(fn):
    """fn()'s result (or the exception it raised), its Python peak memory in bytes, and its seconds."""
    tracemalloc.start()
    started = time.perf_counter()
    try:
        result = fn()
    except (ImportFailed, SourceError) as exc:
        result = exc
    seconds = time.perf_counter() - started
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, peak, seconds


def stored_files(home) -> list:
    return [p for p in (home / "datasets").rglob("*") if p.is_file()] if (home / "datasets").exists() else []


# --- a directory that lies about sizes ----------------------------------------------------------------


def test_compressed_sizes_declared_as_the_real_sizes_refuse_the_archive(mk, imgcls_home):
    """Three one-colour BMPs whose directory declares compressed size = real size: the ratio check saw
    1:1; each declared range now runs over the next member, so the archive is refused before reading."""
    bmps = {f"flat/{i}.bmp": flat_bmp(2000, 2000, (i, 100, 200)) for i in range(3)}
    raw = mk.zip(list(bmps.items()) + good_members(mk))
    for name, data in bmps.items():
        raw = patch_central(raw, name, compress_size=len(data))
    assert len(raw) < 200_000 < len(bmps["flat/0.bmp"])
    err, peak, seconds = measured(lambda: import_zip(raw, "lying", source="lying.zip"))
    assert isinstance(err, ImportFailed)
    assert str(err) == "lying.zip: its entries overlap, which only a crafted archive does; nothing was imported."
    assert peak < 2 * MB and seconds < 2
    assert mk.workspace_entries(imgcls_home) == [] and stored_files(imgcls_home) == []


def test_last_member_claiming_more_than_the_archive_holds_refuses_it(mk, imgcls_home):
    bmp = flat_bmp(2000, 2000)
    raw = patch_central(mk.zip(good_members(mk) + [("flat/last.bmp", bmp)]), "flat/last.bmp", compress_size=len(bmp))
    with pytest.raises(ImportFailed) as err:
        import_zip(raw, "overrun", source="overrun.zip")
    assert str(err.value) == ("overrun.zip: an entry claims more bytes than the archive holds, which only a "
                              "damaged or crafted archive does; nothing was imported.")
    assert mk.workspace_entries(imgcls_home) == []


def test_padded_compressed_size_is_judged_by_the_bytes_really_used(mk, imgcls_home):
    """The directory declares 1/150 of each BMP's size as compressed, and that many bytes are really there
    (zeros after the deflate stream): the declared ratio passes, the bytes really inflated do not."""
    members = []
    for i in range(3):
        data = flat_bmp(1200, 1200, (i, 10, 10))  # 4.3 MB: above the 1 MB floor of the ratio check
        stream = deflate(data)
        members.append((f"flat/{i}.bmp", data, stream + bytes(len(data) // 150 - len(stream))))
    members += [(n, d, deflate(d)) for n, d in good_members(mk)]
    raw = hand_zip(members)
    report, peak, _ = measured(lambda: import_zip(raw, "padded"))
    skipped = {s["file"]: s for s in report.skipped_files}
    assert {f: s["reason"] for f, s in skipped.items()} == {f"flat/{i}.bmp": "zip bomb" for i in range(3)}
    assert "really takes in the archive" in skipped["flat/0.bmp"]["detail"]
    assert report.images == 4 and len(list((workspace.dataset_dir("padded") / "images").iterdir())) == 4
    assert peak < 2.5 * len(members[0][1])  # one member at a time, never the three together


@pytest.mark.parametrize("method", sorted(READABLE_METHODS), ids=lambda m: {0: "stored", 8: "deflate", 12: "bzip2",
                                                                             14: "lzma"}.get(m, str(m)))
def test_stream_past_a_small_declared_size_stops_at_it(mk, imgcls_home, method):
    """A member declaring 900 kB (under the ratio floor, so the listing lets it through) whose stream
    inflates to 20 MB: reading stops at 900 kB; zipfile's read() inflated all 20 MB in one call."""
    real = flat_bmp(8, 8)[:54] + bytes(20 * MB)
    if method == zipfile.ZIP_STORED:
        real = real[:3 * MB]  # stored bytes are in the archive: keep the test's file small
    raw = patch_central(mk.zip(good_members(mk) + [("cats/liar.bmp", real)], compression=method),
                        "cats/liar.bmp", file_size=900_000)
    report, peak, seconds = measured(lambda: import_zip(raw, "liar"))
    liar = next(s for s in report.skipped_files if s["file"] == "cats/liar.bmp")
    assert liar["reason"] == "corrupt archive member"
    assert "more than the 900,000 bytes the archive's directory declares" in liar["detail"]
    assert report.images == 4
    assert peak < 3 * MB, f"{peak:,} bytes held for a member that declares 900,000"
    assert seconds < 5


@pytest.mark.parametrize("method", sorted(READABLE_METHODS))
def test_every_readable_method_still_imports(mk, method):
    members = good_members(mk) + [("cats/flat.bmp", mk.encode(mk.solid((250, 250, 250), (64, 64)), "BMP"))]
    report = import_zip(mk.zip(members, compression=method), f"m{method}")
    assert report.skipped_files == [] and report.images == 5


def test_a_damaged_stream_is_skipped_plainly(mk):
    raw = bytearray(mk.zip(good_members(mk) + [("cats/broken.png", mk.png(9, (128, 128)))]))
    at = raw.find(b"cats/broken.png") + len("cats/broken.png")  # inside its deflate stream
    raw[at + 40:at + 60] = b"\xff" * 20
    report = import_zip(bytes(raw), "damaged")
    broken = next(s for s in report.skipped_files if s["file"] == "cats/broken.png")
    assert broken["reason"] == "corrupt archive member" and report.images == 4


def test_the_total_budget_counts_bytes_really_inflated(mk):
    """Each read is counted against the import's budget, so reading a member again cannot go past it."""
    data = mk.png(5, (200, 200))
    with open_zip(mk.zip([("a/x.png", data)]), "twice.zip") as zf:
        entry = list_zip(zf, ImportLimits(max_total_bytes=len(data) * 3 // 2), "twice.zip").entries[0]
        assert entry.read() == data
        with pytest.raises(SourceError) as err:
            entry.read()
    assert str(err.value).startswith(f"twice.zip unpacks to more than {len(data) * 3 // 2:,} bytes, the limit")
    assert str(err.value).endswith("nothing was imported.")


# --- entries that overlap -----------------------------------------------------------------------------


def test_many_records_pointing_at_one_member_refuse_the_archive(mk, imgcls_home):
    """100 directory records for one 1 MB member would inflate 100 MB; the archive is refused unread."""
    data = flat_bmp(8, 8)[:54] + random.Random(0).randbytes(MB)
    raw = hand_zip([("a/0.bmp", data, deflate(data))], records=lambda entries: entries * 100)
    assert len(zipfile.ZipFile(io.BytesIO(raw)).infolist()) == 100
    err, peak, seconds = measured(lambda: import_zip(raw, "same", source="same.zip"))
    assert str(err) == "same.zip: its entries overlap, which only a crafted archive does; nothing was imported."
    assert peak < MB and seconds < 1
    assert mk.workspace_entries(imgcls_home) == []


def test_a_member_inside_another_members_data_refuses_the_archive(mk, imgcls_home):
    """The 'quoted overlap': one stored member whose bytes hold another member's local header and data."""
    inner_data = mk.png(3)
    inner = local_header(b"b/inner.png", zlib.crc32(inner_data), len(inner_data), len(inner_data), 0) + inner_data
    outer = local_header(b"a/outer.png", zlib.crc32(inner), len(inner), len(inner), 0) + inner
    start = len(local_header(b"a/outer.png", 0, 0, 0))
    directory = (central_record(b"a/outer.png", zlib.crc32(inner), len(inner), len(inner), 0, 0)
                 + central_record(b"b/inner.png", zlib.crc32(inner_data), len(inner_data), len(inner_data), start, 0))
    raw = outer + directory + end_record(2, directory, len(outer))
    assert zipfile.ZipFile(io.BytesIO(raw)).read("b/inner.png") == inner_data  # zipfile reads both
    with pytest.raises(ImportFailed, match="its entries overlap, which only a crafted archive does"):
        import_zip(raw, "quoted")
    assert mk.workspace_entries(imgcls_home) == []


def test_an_archive_after_a_prefix_is_not_called_overlapping(mk):
    """A ZIP behind other bytes (a self-extractor, or a JPEG in front) has shifted offsets, not overlaps."""
    report = import_zip(mk.jpeg(1) + mk.zip(good_members(mk)), "prefixed")
    assert report.images == 4 and report.skipped_files == []


# --- images with something appended -------------------------------------------------------------------


def tail_zip(mk) -> bytes:
    return mk.zip([("secret.txt", b"not an image " * 100)])


def polyglot_cases(mk):
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90°: stored 48×32, shown 32×48
    frames = [mk.noise(i, (40, 30)) for i in range(3)]
    return {
        "photo.jpg": mk.encode(mk.noise(1, (48, 32)), "JPEG", exif=exif.tobytes()),
        "pic.png": mk.png(2),
        "anim.gif": mk.encode(frames[0].convert("P"), "GIF", save_all=True, append_images=[f.convert("P") for f in frames[1:]]),
        "pic.webp": mk.encode(mk.noise(4), "WEBP"),
        "pic.bmp": mk.encode(mk.noise(5), "BMP"),
        "stereo.jpg": mk.encode(frames[0], "MPO", save_all=True, append_images=frames[1:]),
    }


def test_an_appended_zip_is_not_stored_hashed_or_exported(mk, imgcls_home):
    images = polyglot_cases(mk)
    members = [(f"cats/{n}", data + tail_zip(mk)) for n, data in images.items()] + mk.class_members({"dogs": 2})
    for name, data in members[:len(images)]:
        assert zipfile.is_zipfile(io.BytesIO(data)), name  # each upload really is a ZIP too
    report = import_zip(mk.zip(members), "poly")
    assert report.skipped_files == []
    df = workspace.read_manifest("poly").set_index("source")
    folder = workspace.dataset_dir("poly")
    for name, original in images.items():
        row = df.loc[f"cats/{name}"]
        stored = (folder / row["path"]).read_bytes()
        assert stored == original, name
        assert row["hash"] == hashlib.sha256(stored).hexdigest() and row["bytes"] == len(original)
    assert (df.loc["cats/photo.jpg", "width"], df.loc["cats/photo.jpg", "height"]) == (32, 48)  # EXIF kept
    with Image.open(folder / df.loc["cats/stereo.jpg", "path"]) as mpo:
        assert mpo.n_frames == 3  # the later pictures of a multi-picture file are kept
    with zipfile.ZipFile(io.BytesIO(export_dataset("poly"))) as zf:
        exported = {n.rsplit("/", 1)[-1]: zf.read(n) for n in zf.namelist() if "/cats/" in n}
    assert exported == images


def test_an_appended_zip_makes_no_second_copy(mk):
    """The same picture with and without a ZIP behind it is one image: what is hashed is what is kept."""
    photo = mk.jpeg(7)
    report = import_zip(mk.zip(good_members(mk) + [("cats/plain.jpg", photo), ("cats/poly.jpg", photo + tail_zip(mk))]),
                        "dedup")
    assert [(s["file"], s["reason"]) for s in report.skipped_files] == [("cats/poly.jpg", "duplicate")]


def test_a_tiff_is_kept_as_it_is(mk):
    """TIFF parts are found through offsets that may point anywhere: no end can be cut at safely."""
    tiff = mk.encode(mk.noise(8), "TIFF") + b"appended"
    import_zip(mk.zip(good_members(mk) + [("cats/scan.tif", tiff)]), "tiff")
    row = workspace.read_manifest("tiff").set_index("source").loc["cats/scan.tif"]
    assert (workspace.dataset_dir("tiff") / row["path"]).read_bytes() == tiff
