"""Import engine: layouts, CSV labels, loose files, and every kind of bad input."""

from __future__ import annotations

import io
import json
import os
import unicodedata
import zipfile
from collections import Counter

import pytest

from imgcls.store import workspace
from imgcls.ingest.imports import ImportFailed, import_files, import_folder, import_sample, import_source, import_zip, last_report
from imgcls.ingest.sources import ImportLimits
from imgcls.ingest.splits import plan_counts

pytestmark = pytest.mark.usefixtures("imgcls_home")


def manifest(name):
    return workspace.read_manifest(name)


def skipped(report, reason=None):
    """{file: reason} of the files an import set aside (optionally only one reason)."""
    return {s["file"]: s["reason"] for s in report.skipped_files if reason is None or s["reason"] == reason}


def detail_of(report, file):
    return next(s["detail"] for s in report.skipped_files if s["file"] == file)


def assert_stored(name):
    """Every manifest row points at a stored image file; no staging folders are left behind."""
    df = manifest(name)
    folder = workspace.dataset_dir(name)
    for rel in df["path"]:
        assert (folder / rel).is_file(), rel
    assert not [p for p in workspace.datasets_dir().iterdir() if p.name.startswith(".")]
    return df


# --- layouts ----------------------------------------------------------------------------------


def test_zip_of_class_folders(mk):
    members = mk.class_members({"cats": 6, "dogs": 5})
    report = import_zip(mk.zip(members), "pets")
    out = report.to_json()
    assert out["name"] == "pets"
    assert out["images"] == 11
    assert out["classes"] == 2
    assert out["class_counts"] == {"cats": 6, "dogs": 5}
    assert sum(out["splits"].values()) == 11
    assert out["skipped"] == {} and out["skipped_files"] == [] and out["ignored"] == 0
    df = assert_stored("pets")
    assert sorted(df["source"]) == sorted(n for n, _ in members)
    assert dict(zip(df["source"], df["label"])) == {n: n.split("/")[0] for n, _ in members}
    assert set(df["split"]) <= {"train", "val", "test"}
    assert workspace.list_datasets() == ["pets"]
    assert last_report("pets")["images"] == 11


def test_zip_with_one_wrapper_folder(mk):
    members = mk.class_members({"ants": 3, "bees": 3}, prefix="hymenoptera/")
    report = import_zip(mk.zip(members), "bugs")
    assert report.class_counts == {"ants": 3, "bees": 3}
    assert set(manifest("bugs")["label"]) == {"ants", "bees"}


@pytest.mark.parametrize("val_folder", ["val", "valid", "validation", "Validation"])
def test_zip_with_split_folders_kept_as_given(mk, val_folder):
    members = (mk.class_members({"cats": 4, "dogs": 4}, prefix="train/", start=0)
               + mk.class_members({"cats": 2, "dogs": 1}, prefix=f"{val_folder}/", start=100)
               + mk.class_members({"cats": 1, "dogs": 3}, prefix="test/", start=200))
    report = import_zip(mk.zip(members), "split")
    assert report.splits == {"train": 8, "val": 3, "test": 4}
    assert report.class_counts == {"cats": 7, "dogs": 8}
    df = manifest("split")
    expected = {n: {"train": "train", "test": "test"}.get(n.split("/")[0], "val") for n, _ in members}
    assert dict(zip(df["source"], df["split"])) == expected
    assert set(df["label"]) == {"cats", "dogs"}


def test_zip_with_wrapper_and_split_folders(mk):
    members = (mk.class_members({"ants": 3, "bees": 3}, prefix="hymenoptera_data/train/", start=0)
               + mk.class_members({"ants": 2, "bees": 2}, prefix="hymenoptera_data/val/", start=50))
    report = import_zip(mk.zip(members), "hymenoptera")
    assert report.class_counts == {"ants": 5, "bees": 5}
    assert report.splits == {"train": 6, "val": 4, "test": 0}
    df = manifest("hymenoptera")
    assert set(df["label"]) == {"ants", "bees"}
    assert (df[df["source"].str.contains("/val/")]["split"] == "val").all()


def test_system_and_hidden_files_are_ignored(mk):
    members = mk.class_members({"cats": 3, "dogs": 3}) + [
        ("__MACOSX/cats/._000.png", b"\0\5\26\7 resource fork"),
        ("cats/.DS_Store", b"\0\0\0\1Bud1"),
        ("dogs/Thumbs.db", b"\xd0\xcf\x11\xe0"),
        ("dogs/.hidden.png", mk.png(999)),
        (".git/config", b"[core]"),
    ]
    report = import_zip(mk.zip(members), "clean")
    assert report.ignored == 5
    assert report.images == 6
    assert report.skipped_files == []
    sources = set(manifest("clean")["source"])
    assert not any("MACOSX" in s or "/." in s or "Thumbs" in s for s in sources)


def test_images_outside_class_folders_are_skipped(mk):
    members = mk.class_members({"cats": 2, "dogs": 2}) + [("loose.png", mk.png(77))]
    report = import_zip(mk.zip(members), "loose")
    assert skipped(report) == {"loose.png": "not in a class folder"}
    assert report.images == 4


def test_folder_on_disk(tmp_path, mk):
    root = tmp_path / "photos"
    for name, data in mk.class_members({"cats": 3, "dogs": 4}):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    (root / "cats" / ".DS_Store").write_bytes(b"junk")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.png").write_bytes(mk.png(500))
    (root / "dogs" / "notes.txt").write_text("hello")
    (tmp_path / "secret.png").write_bytes(mk.png(501))
    os.symlink(tmp_path / "secret.png", root / "cats" / "link.png")
    (root / "dogs" / "inner.zip").write_bytes(mk.zip(mk.class_members({"x": 1})))
    report = import_folder(root, "disk")
    assert report.class_counts == {"cats": 3, "dogs": 4}
    assert report.ignored == 1  # the .DS_Store; hidden folders are not even entered
    assert skipped(report) == {"cats/link.png": "symlink", "dogs/notes.txt": "unsupported format",
                               "dogs/inner.zip": "nested archive"}
    df = assert_stored("disk")
    assert "cats/link.png" not in set(df["source"])


def test_folder_with_split_folders(tmp_path, mk):
    root = tmp_path / "data"
    members = mk.class_members({"a": 3, "b": 3}, prefix="train/") + mk.class_members({"a": 1, "b": 1}, prefix="test/", start=40)
    for name, data in members:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    report = import_folder(root, "disk-split")
    assert report.splits == {"train": 6, "val": 0, "test": 2}


def test_missing_folder_fails(tmp_path):
    with pytest.raises(ImportFailed, match="nowhere"):
        import_folder(tmp_path / "nowhere", "x")
    assert workspace.list_datasets() == []


def test_loose_files_into_a_class_then_a_second_class(mk):
    first = import_files([(f"IMG_{i}.png", mk.png(i)) for i in range(5)], "pets", "cats")
    assert first.class_counts == {"cats": 5}
    assert any("single class" in w for w in first.warnings)
    cats_before = manifest("pets").set_index("hash")["split"].to_dict()

    second = import_files([(f"dog{i}.jpg", mk.jpeg(100 + i)) for i in range(4)], "pets", "dogs")
    assert second.images == 4
    assert second.class_counts == {"cats": 5, "dogs": 4}
    assert not any("single class" in w for w in second.warnings)
    df = manifest("pets")
    for label, n in (("cats", 5), ("dogs", 4)):
        assert Counter(df[df["label"] == label]["split"]) == +Counter(plan_counts(n))

    # more cats: old images keep their split, the class is topped up to the planned proportions
    import_files([(f"more{i}.png", mk.png(200 + i)) for i in range(15)], "pets", "cats")
    df = manifest("pets")
    still = df.set_index("hash")["split"]
    assert all(still[h] == s for h, s in cats_before.items())
    assert Counter(df[df["label"] == "cats"]["split"]) == +Counter(plan_counts(20))
    assert len(df) == 24
    assert_stored("pets")


def test_loose_files_need_a_usable_class_name(mk):
    for bad in ("", "  ", "a/b", ".hidden"):
        with pytest.raises(ImportFailed):
            import_files([("x.png", mk.png(1))], "pets", bad)
    assert workspace.list_datasets() == []


def test_add_a_zip_to_an_existing_dataset(mk):
    import_zip(mk.zip(mk.class_members({"cats": 3, "dogs": 3})), "pets")
    report = import_zip(mk.zip(mk.class_members({"birds": 3}, start=50)), "pets", add=True)
    assert report.images == 3
    assert report.class_counts == {"birds": 3, "cats": 3, "dogs": 3}
    assert len(manifest("pets")) == 9
    history = (workspace.dataset_dir("pets") / "imports.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["images"] for line in history] == [6, 3]


def test_failed_add_leaves_dataset_as_it_was(mk):
    import_zip(mk.zip(mk.class_members({"cats": 3, "dogs": 3})), "pets")
    folder = workspace.dataset_dir("pets")
    before = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    bad = mk.zip([("cats/broken.png", b"not an image"), ("dogs/000.png", mk.class_members({"dogs": 1}, start=3)[0][1])])
    with pytest.raises(ImportFailed, match="No usable images") as err:
        import_zip(bad, "pets", add=True)
    assert skipped(err.value.report) == {"cats/broken.png": "corrupt image", "dogs/000.png": "duplicate"}
    after = {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    assert after == before
    assert mk.workspace_entries(workspace.home()) == ["pets"]


def test_existing_name_refused_without_add(mk):
    import_zip(mk.zip(mk.class_members({"cats": 3, "dogs": 3})), "pets")
    before = manifest("pets")
    with pytest.raises(ImportFailed, match="already exists"):
        import_zip(mk.zip(mk.class_members({"cats": 2, "dogs": 2}, start=100)), "pets")
    with pytest.raises(ImportFailed, match="already exists"):
        import_sample("shapes", "pets")
    assert manifest("pets").equals(before)
    assert mk.workspace_entries(workspace.home()) == ["pets"]


def test_bad_dataset_name_fails_plainly(mk):
    with pytest.raises(ImportFailed, match="cannot be a dataset name"):
        import_zip(mk.zip(mk.class_members({"a": 2, "b": 2})), "../escape")
    with pytest.raises(ImportFailed, match="cannot be a dataset name"):
        import_files([("x.png", mk.png(1))], "a/b", "cats")
    assert mk.workspace_entries(workspace.home()) == []


def test_import_source_sample_zip_and_folder(tmp_path, mk):
    zpath = mk.zip(mk.class_members({"a": 2, "b": 2}), tmp_path / "my photos.zip")
    assert import_source(str(zpath)).name == "my photos"
    folder = tmp_path / "dir"
    for name, data in mk.class_members({"a": 2, "b": 2}, start=10):
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    assert import_source(str(folder), "from-dir").images == 4
    with pytest.raises(ImportFailed, match="does not exist"):
        import_source(str(tmp_path / "missing.zip"), "m")
    with pytest.raises(ImportFailed, match="unknown sample"):
        import_source("sample:nope", "s")
    with pytest.raises(ImportFailed, match="labels.csv"):
        import_source(str(zpath), "with-labels", labels=str(tmp_path / "labels.csv"))
    assert workspace.list_datasets() == ["from-dir", "my photos"]


# --- CSV labels -------------------------------------------------------------------------------


@pytest.mark.parametrize("header", [True, False])
def test_csv_labels_next_to_a_zip(mk, header):
    images = [(f"img_{i:02d}.png", mk.png(i)) for i in range(9)]
    labels = {f"img_{i:02d}.png": ("cat" if i % 2 else "dog") for i in range(8)}  # img_08 has no row
    text = ("filename,label\n" if header else "") + "".join(f"{f},{lab}\n" for f, lab in labels.items())
    report = import_zip(mk.zip(images), "csv", label_csv=text.encode())
    assert report.class_counts == {"cat": 4, "dog": 4}
    assert skipped(report) == {"img_08.png": "not in the CSV"}
    df = manifest("csv")
    assert dict(zip(df["source"], df["label"])) == labels


def test_csv_labels_for_a_folder(tmp_path, mk):
    root = tmp_path / "unsorted"
    root.mkdir()
    for i in range(6):
        (root / f"{i}.png").write_bytes(mk.png(i))
    labels = tmp_path / "labels.csv"
    labels.write_text("".join(f"{i}.png,{'odd' if i % 2 else 'even'}\n" for i in range(5)), encoding="utf-8")
    report = import_source(str(root), "unsorted", labels=str(labels))
    assert report.class_counts == {"even": 3, "odd": 2}
    assert skipped(report) == {"5.png": "not in the CSV"}


def test_csv_with_split_column_and_folders_in_zip(mk):
    images = [(f"all/img_{i}.jpg", mk.jpeg(i)) for i in range(6)]
    rows = [("all/img_0.jpg", "0", "train"), ("img_1.jpg", "0", "validation"), ("img_2.jpg", "0", "test"),
            ("img_3.jpg", "1", "train"), ("img_4.jpg", "1", "valid"), ("img_5.jpg", "1", "test")]
    text = "file,label,split\r\n" + "".join(",".join(r) + "\r\n" for r in rows)
    report = import_zip(mk.zip(images), "digits", label_csv=("\ufeff" + text).encode("utf-8"))
    assert report.class_counts == {"0": 3, "1": 3}
    assert report.splits == {"train": 2, "val": 2, "test": 2}
    df = manifest("digits")
    assert df["label"].tolist() == ["0", "0", "0", "1", "1", "1"]
    assert df["split"].tolist() == ["train", "val", "test", "train", "val", "test"]


def test_bad_csv_refused(mk):
    with pytest.raises(ImportFailed, match="row 2"):
        import_zip(mk.zip([("a.png", mk.png(1))]), "csv", label_csv=b"a.png,cat\nb.png\n")
    with pytest.raises(ImportFailed, match="UTF-8"):
        import_zip(mk.zip([("a.png", mk.png(1))]), "csv", label_csv=b"\xff\xfe\x00bad")
    assert mk.workspace_entries(workspace.home()) == []


# --- bad input --------------------------------------------------------------------------------


def test_path_traversal_members_skipped(tmp_path, mk):
    members = mk.class_members({"cats": 2, "dogs": 2}) + [
        ("../evil.png", mk.png(90)), ("/abs.png", mk.png(91)), ("cats/../../up.png", mk.png(92)),
        ("..\\win.png", mk.png(93)), ("C:/drive.png", mk.png(94)), ("dogs\\003.png", mk.png(95)),
    ]
    raw = mk.zip(members)
    names = zipfile.ZipFile(io.BytesIO(raw)).namelist()
    assert "../evil.png" in names and "/abs.png" in names
    report = import_zip(raw, "trav")
    assert skipped(report) == {"../evil.png": "unsafe path", "/abs.png": "unsafe path",
                               "cats/../../up.png": "unsafe path", "..\\win.png": "unsafe path",
                               "C:/drive.png": "unsafe path"}
    assert "outside" in detail_of(report, "../evil.png")
    assert report.images == 5  # a Windows-style 'dogs\\003.png' is an ordinary member of class 'dogs'
    assert report.class_counts == {"cats": 2, "dogs": 3}
    assert not list(tmp_path.rglob("evil.png")) and not list(tmp_path.rglob("abs.png"))
    assert not (tmp_path / "home" / "evil.png").exists()


def test_symlink_member_skipped(mk):
    info = zipfile.ZipInfo("cats/link.png")
    info.external_attr = (0o120777 << 16)
    members = mk.class_members({"cats": 2, "dogs": 2}) + [(info, "/etc/passwd")]
    report = import_zip(mk.zip(members), "links")
    assert skipped(report) == {"cats/link.png": "symlink"}
    assert report.images == 4


def test_total_size_over_cap_refuses_whole_import(tmp_path, mk):
    path = mk.zip(mk.class_members({"cats": 5, "dogs": 5}), tmp_path / "big.zip")
    with pytest.raises(ImportFailed) as err:
        import_zip(path, "big", limits=ImportLimits(max_total_bytes=10_000))
    assert "big.zip" in str(err.value) and "over the limit" in str(err.value)
    assert mk.workspace_entries(workspace.home()) == []


def test_file_count_over_cap_refuses_whole_import(tmp_path, mk):
    path = mk.zip(mk.class_members({"cats": 4, "dogs": 4}), tmp_path / "many.zip")
    with pytest.raises(ImportFailed) as err:
        import_zip(path, "many", limits=ImportLimits(max_files=5))
    assert "many.zip" in str(err.value) and "8 files" in str(err.value)
    assert mk.workspace_entries(workspace.home()) == []


def test_member_over_compression_ratio_is_skipped(mk):
    members = mk.class_members({"cats": 2, "dogs": 2}) + [("cats/zeros.png", bytes(4 * 1024 * 1024))]
    report = import_zip(mk.zip(members), "ratio")
    assert skipped(report) == {"cats/zeros.png": "zip bomb"}
    assert report.images == 4


def test_member_lying_about_its_size_is_skipped(mk):
    """A member whose header claims 100 bytes but inflates to megabytes is cut off and refused."""
    raw = bytearray(mk.zip(mk.class_members({"cats": 2, "dogs": 2}) + [("cats/liar.png", bytes(2 * 1024 * 1024))]))
    name = b"cats/liar.png"
    for sig, size_at in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        start = 0
        while True:
            at = raw.find(sig, start)
            if at < 0:
                break
            name_at = at + (30 if sig == b"PK\x03\x04" else 46)
            if raw[name_at:name_at + len(name)] == name:
                raw[at + size_at:at + size_at + 4] = (100).to_bytes(4, "little")
            start = at + 4
    assert raw.count((100).to_bytes(4, "little")) >= 2
    report = import_zip(bytes(raw), "liar")
    assert skipped(report) == {"cats/liar.png": "corrupt archive member"}
    assert report.images == 4


def test_member_over_per_file_cap_is_skipped(mk):
    members = mk.class_members({"cats": 2, "dogs": 2}) + [("cats/huge.png", mk.png(50, (256, 256)))]
    report = import_zip(mk.zip(members), "perfile", limits=ImportLimits(max_file_bytes=100_000))
    assert skipped(report) == {"cats/huge.png": "too large"}


def test_flat_uncompressed_images_are_not_zip_bombs(mk):
    """A white BMP or TIFF deflates several hundred times; it is still a picture, not a bomb."""
    members = [("sketch/white.bmp", mk.encode(mk.solid((255, 255, 255), (256, 256)), "BMP")),
               ("sketch/white.tif", mk.encode(mk.solid((250, 250, 250), (256, 256)), "TIFF")),
               ("photo/p.png", mk.png(1))]
    report = import_zip(mk.zip(members), "flat")
    assert report.skipped_files == []
    assert report.class_counts == {"photo": 1, "sketch": 2}


def with_method(raw: bytes, member: str, method: int) -> bytes:
    """The ZIP with one member's compression method rewritten in both of its headers (9 = Deflate64)."""
    raw, name = bytearray(raw), member.encode()
    for sig, method_at, name_at in ((b"PK\x03\x04", 8, 30), (b"PK\x01\x02", 10, 46)):
        at = raw.find(sig)
        while at >= 0:
            if raw[at + name_at:at + name_at + len(name)] == name:
                raw[at + method_at:at + method_at + 2] = method.to_bytes(2, "little")
            at = raw.find(sig, at + 4)
    return bytes(raw)


def test_member_compressed_as_deflate64_is_skipped_plainly(mk):
    raw = with_method(mk.zip(mk.class_members({"cats": 2, "dogs": 2}) + [("cats/odd.png", mk.png(70))]),
                      "cats/odd.png", 9)
    with zipfile.ZipFile(io.BytesIO(raw)) as zf, pytest.raises(NotImplementedError):
        zf.read("cats/odd.png")  # what reading it would do
    report = import_zip(raw, "d64")
    assert skipped(report) == {"cats/odd.png": "unsupported compression"}
    assert "Deflate64" in detail_of(report, "cats/odd.png") and "re-zip" in detail_of(report, "cats/odd.png")
    assert report.images == 4 and len(assert_stored("d64")) == 4


def test_nested_zip_skipped(mk):
    inner = mk.zip(mk.class_members({"x": 2}, start=60))
    members = mk.class_members({"cats": 2, "dogs": 2}) + [("cats/more.zip", inner), ("dogs/old.tar.gz", b"\x1f\x8b")]
    report = import_zip(mk.zip(members), "nested")
    assert skipped(report) == {"cats/more.zip": "nested archive", "dogs/old.tar.gz": "nested archive"}
    assert report.images == 4


def test_not_a_zip_refused(tmp_path, mk):
    path = tmp_path / "holiday.zip"
    path.write_bytes(b"this is a text file, not a zip")
    with pytest.raises(ImportFailed, match="holiday.zip.*not a ZIP"):
        import_zip(path, "holiday")
    with pytest.raises(ImportFailed, match="not a ZIP"):
        import_zip(mk.png(1), "holiday")
    assert mk.workspace_entries(workspace.home()) == []


@pytest.mark.parametrize("members", [[], [("__MACOSX/._a.png", b"x"), (".DS_Store", b"x")]], ids=["empty", "junk-only"])
def test_empty_archive_refused(tmp_path, mk, members):
    path = mk.zip(members, tmp_path / "nothing.zip")
    with pytest.raises(ImportFailed, match="nothing.zip") as err:
        import_zip(path, "nothing")
    assert "No usable images" in str(err.value)
    assert mk.workspace_entries(workspace.home()) == []


def test_archive_of_only_bad_files_refused_with_reasons(tmp_path, mk):
    path = mk.zip([("cats/a.png", b"not a png"), ("dogs/b.txt", b"hello")], tmp_path / "bad.zip")
    with pytest.raises(ImportFailed) as err:
        import_zip(path, "bad")
    assert skipped(err.value.report) == {"cats/a.png": "corrupt image", "dogs/b.txt": "unsupported format"}
    assert mk.workspace_entries(workspace.home()) == []


def test_truncated_and_corrupt_images_skipped(mk):
    good_jpeg, good_png = mk.jpeg(80, (64, 64)), mk.png(81)
    corrupt_png = bytearray(good_png)
    corrupt_png[60:80] = b"\xff" * 20  # inside the IDAT data: the checksum no longer matches
    members = mk.class_members({"cats": 2, "dogs": 2}) + [
        ("cats/truncated.jpg", good_jpeg[: len(good_jpeg) // 2]),
        ("dogs/corrupt.png", bytes(corrupt_png)),
        ("dogs/halfpng.png", good_png[: len(good_png) // 2]),
        ("cats/text.png", b"just some text pretending to be a PNG"),
    ]
    report = import_zip(mk.zip(members), "broken")
    assert skipped(report) == {"cats/truncated.jpg": "corrupt image", "dogs/corrupt.png": "corrupt image",
                               "dogs/halfpng.png": "corrupt image", "cats/text.png": "corrupt image"}
    assert report.images == 4
    assert_stored("broken")


def test_zero_byte_file_skipped(mk):
    report = import_zip(mk.zip(mk.class_members({"cats": 2, "dogs": 2}) + [("cats/empty.jpg", b"")]), "zero")
    assert skipped(report) == {"cats/empty.jpg": "empty file"}
    assert "empty" in detail_of(report, "cats/empty.jpg")


def test_non_image_files_unsupported(mk):
    members = mk.class_members({"cats": 2, "dogs": 2}) + [
        ("cats/notes.txt", b"hello"), ("cats/doc.pdf", b"%PDF-1.4\n%%EOF"),
        ("dogs/logo.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>"), ("dogs/IMG_0001.HEIC", b"\0\0\0\x18ftypheic"),
        ("dogs/README", b"no extension"),
    ]
    report = import_zip(mk.zip(members), "formats")
    assert skipped(report) == {f: "unsupported format" for f in
                               ("cats/notes.txt", "cats/doc.pdf", "dogs/logo.svg", "dogs/IMG_0001.HEIC", "dogs/README")}
    assert "HEIC" in detail_of(report, "dogs/IMG_0001.HEIC")
    assert "'.pdf'" in detail_of(report, "cats/doc.pdf")
    assert report.images == 4


def test_image_with_wrong_extension_stored_by_its_real_format(mk):
    members = mk.class_members({"cats": 2, "dogs": 2}) + [("cats/really_png.jpg", mk.png(70))]
    import_zip(mk.zip(members), "ext")
    row = manifest("ext").set_index("source").loc["cats/really_png.jpg"]
    assert row["format"] == "PNG" and row["path"].endswith(".png")


def test_pixel_cap_skips_big_images(mk):
    members = mk.class_members({"cats": 2, "dogs": 2}) + [("cats/big.png", mk.png(71, (100, 100)))]
    report = import_zip(mk.zip(members), "pixels", limits=ImportLimits(max_pixels=5_000))
    assert skipped(report) == {"cats/big.png": "too many pixels"}
    assert "100×100" in detail_of(report, "cats/big.png")
    assert report.images == 4


def test_png_header_claiming_huge_size_skipped(mk):
    bomb = mk.png_claiming_size(100_000, 100_000)
    assert len(bomb) < 200
    members = mk.class_members({"cats": 2, "dogs": 2}) + [("dogs/bomb.png", bomb)]
    report = import_zip(mk.zip(members), "bomb")
    assert skipped(report) == {"dogs/bomb.png": "too many pixels"}
    assert report.images == 4


def test_exact_duplicates_kept_once(mk):
    same = mk.png(42)
    members = mk.class_members({"cats": 2, "dogs": 2}) + [("cats/dup1.png", same), ("cats/dup2.png", same)]
    report = import_zip(mk.zip(members), "dups")
    assert skipped(report) == {"cats/dup2.png": "duplicate"}
    assert "cats/dup1.png" in detail_of(report, "cats/dup2.png")
    assert report.images == 5
    # the same file again in a later import is also a duplicate
    again = import_files([("again.png", same), ("new.png", mk.png(43))], "dups", "dogs")
    assert skipped(again) == {"again.png": "duplicate"}
    assert len(manifest("dups")) == 6
    assert manifest("dups")["hash"].is_unique


def test_single_class_dataset_imported_with_warning(mk):
    report = import_zip(mk.zip(mk.class_members({"only": 5})), "solo")
    assert report.class_counts == {"only": 5}
    assert any("single class" in w and "two" in w for w in report.warnings)
    assert workspace.list_datasets() == ["solo"]


def test_unicode_and_spaces_in_names_kept_as_labels(tmp_path, mk):
    members = [("Ünïcødé class/photo 1 é.png", mk.png(1)), ("Ünïcødé class/photo 2.png", mk.png(2)),
               ("猫/写真.jpg", mk.jpeg(3)), ("猫/写真 2.jpg", mk.jpeg(4))]
    report = import_zip(mk.zip(members), "Ünï data 1")
    assert report.class_counts == {"Ünïcødé class": 2, "猫": 2}
    assert workspace.list_datasets() == ["Ünï data 1"]
    df = manifest("Ünï data 1")
    assert set(df["source"]) == {n for n, _ in members}

    # a folder whose names are NFD (as macOS writes them) gives the same NFC labels
    root = tmp_path / "nfd"
    label = unicodedata.normalize("NFD", "Ünïcødé class")
    (root / label).mkdir(parents=True)
    (root / label / unicodedata.normalize("NFD", "é.png")).write_bytes(mk.png(10))
    (root / "猫").mkdir()
    (root / "猫" / "x.png").write_bytes(mk.png(11))
    report = import_folder(root, "nfd")
    assert report.class_counts == {"Ünïcødé class": 1, "猫": 1}
    assert "Ünïcødé class/é.png" in set(manifest("nfd")["source"])


def test_progress_is_reported(mk):
    seen = []
    import_zip(mk.zip(mk.class_members({"a": 5, "b": 5})), "prog", progress=lambda f, t: seen.append(f))
    assert seen and seen[-1] == 1.0
    assert seen == sorted(seen)


def test_stray_image_inside_a_wrapper_folder_does_not_hide_the_classes(mk):
    members = mk.class_members({"cats": 3, "dogs": 3}, prefix="wrap/") + [("wrap/stray.png", mk.png(99))]
    report = import_zip(mk.zip(members), "stray")
    assert report.class_counts == {"cats": 3, "dogs": 3}
    assert skipped(report) == {"wrap/stray.png": "not in a class folder"}


def test_csv_with_unknown_split_value_is_reported(mk):
    images = mk.zip([("a.png", mk.png(1)), ("b.png", mk.png(2)), ("c.png", mk.png(3))])
    labels = b"filename,label,split\na.png,cat,train\nb.png,dog,holdout\nc.png,dog,val\n"
    report = import_zip(images, "splitcsv", label_csv=labels)
    assert skipped(report) == {"b.png": "unknown split"}
    assert "holdout" in detail_of(report, "b.png")


def test_same_image_under_two_labels_is_called_a_conflict(mk):
    same = mk.png(7)
    members = mk.class_members({"cats": 2, "dogs": 2}) + [("cats/x.png", same), ("dogs/x.png", same)]
    report = import_zip(mk.zip(members), "clash")
    detail = detail_of(report, "dogs/x.png")
    assert "'cats'" in detail and "'dogs'" in detail


def test_default_name_from_an_awkward_file_name(tmp_path, mk):
    src = mk.zip(mk.class_members({"cats": 3, "dogs": 3}), tmp_path / "my photos (1).zip")
    report = import_source(str(src))
    assert report.name == workspace.suggest_name("my photos (1)")
    assert workspace.check_name(report.name) == report.name
