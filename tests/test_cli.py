"""The command line, run as a user would: `python -m imgcls …` in a fresh IMGCLS_HOME."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(imgcls_home, tmp_path):
    """Run the CLI in a subprocess; returns (returncode, stdout, stderr)."""
    env = dict(os.environ, IMGCLS_HOME=str(imgcls_home), PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "imgcls", *map(str, args)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, encoding="utf-8", timeout=120)
        return proc.returncode, proc.stdout, proc.stderr

    return run


def last_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])


def assert_plain_failure(rc, stderr, *words):
    assert rc != 0
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("imgcls: ")
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0]


def test_import_sample_json(cli, imgcls_home):
    rc, out, err = cli("import", "sample:shapes", "--json")
    assert rc == 0, err
    report = last_json(out)
    for key in ("name", "images", "classes", "splits", "skipped", "class_counts", "skipped_files", "warnings"):
        assert key in report
    assert report["name"] == "shapes"
    assert report["images"] == 500 and report["classes"] == 5
    assert set(report["splits"]) == {"train", "val", "test"} and sum(report["splits"].values()) == 500
    assert report["skipped"] == {}
    assert (imgcls_home / "datasets" / "shapes" / "manifest.csv").is_file()

    rc, out, err = cli("datasets", "--json")
    assert rc == 0, err
    listing = last_json(out)
    assert listing["datasets"] == ["shapes"]
    assert Path(listing["home"]) == imgcls_home.resolve()


def test_import_zip_with_skips_and_labels(cli, mk, tmp_path):
    zpath = mk.zip(mk.class_members({"cats": 3, "dogs": 3}) + [("cats/notes.txt", b"hi"), ("dogs/e.png", b"")],
                   tmp_path / "pets.zip")
    rc, out, err = cli("import", zpath, "--json")
    assert rc == 0, err
    report = last_json(out)
    assert report["name"] == "pets" and report["images"] == 6
    assert report["skipped"] == {"unsupported format": 1, "empty file": 1}

    # human-readable output names what was skipped
    rc, out, err = cli("import", zpath, "--name", "pets text")
    assert rc == 0, err
    assert "Imported 6 images into 'pets text'" in out
    assert "cats/notes.txt" in out and "dogs/e.png" in out

    flat = mk.zip([(f"{i}.jpg", mk.jpeg(i)) for i in range(6)], tmp_path / "flat.zip")
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\n" + "".join(f"{i}.jpg,{i % 2}\n" for i in range(6)), encoding="utf-8")
    rc, out, err = cli("import", flat, "--labels", labels, "--name", "digits", "--json")
    assert rc == 0, err
    assert last_json(out)["class_counts"] == {"0": 3, "1": 3}


def test_import_folder_and_add(cli, mk, tmp_path):
    root = tmp_path / "photos"
    for name, data in mk.class_members({"a": 3, "b": 3}):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    rc, out, err = cli("import", root, "--json")
    assert rc == 0, err
    assert last_json(out)["name"] == "photos"
    more = mk.zip(mk.class_members({"c": 3}, start=50), tmp_path / "more.zip")
    rc, out, err = cli("import", more, "--name", "photos", "--json")
    assert_plain_failure(rc, err, "already exists")
    assert last_json(out) == {"error": err.strip()[len("imgcls: "):]}
    rc, out, err = cli("import", more, "--name", "photos", "--add", "--json")
    assert rc == 0, err
    assert last_json(out)["classes"] == 3


def test_unicode_names_round_trip(cli, mk, tmp_path):
    zpath = mk.zip([("猫/写真.jpg", mk.jpeg(1)), ("Ünïcødé class/photo 1 é.png", mk.png(2))], tmp_path / "ünï.zip")
    rc, out, err = cli("import", zpath, "--name", "Ünï 猫", "--json")
    assert rc == 0, err
    report = last_json(out)
    assert report["name"] == "Ünï 猫"
    assert report["class_counts"] == {"Ünïcødé class": 1, "猫": 1}
    assert last_json(cli("datasets", "--json")[1])["datasets"] == ["Ünï 猫"]


def test_caps_from_the_command_line(cli, mk, tmp_path):
    zpath = mk.zip(mk.class_members({"a": 3, "b": 3}), tmp_path / "six.zip")
    rc, out, err = cli("import", zpath, "--max-files", "5", "--json")
    assert_plain_failure(rc, err, "six.zip", "limit")
    rc, out, err = cli("import", zpath, "--max-pixels", "100", "--json")
    assert_plain_failure(rc, err, "No usable images")
    rc, out, err = cli("datasets", "--json")
    assert last_json(out)["datasets"] == []


def test_failures_are_one_plain_line(cli, tmp_path):
    rc, out, err = cli("import", tmp_path / "missing.zip", "--json")
    assert_plain_failure(rc, err, "missing.zip", "does not exist")
    assert "error" in last_json(out)

    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    rc, out, err = cli("import", text)
    assert_plain_failure(rc, err, "notes.zip", "not a ZIP")
    assert out == ""

    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    rc, out, err = cli("import", empty)
    assert_plain_failure(rc, err, "empty.zip")

    rc, out, err = cli("import", "sample:nope")
    assert_plain_failure(rc, err, "nope")

    rc, out, err = cli("import", "sample:shapes", "--name", "../bad")
    assert_plain_failure(rc, err, "cannot be a dataset name")

    rc, out, err = cli("import", text, "--labels", tmp_path / "missing.csv")
    assert_plain_failure(rc, err, "missing.csv")

    rc, out, err = cli("rename", "ghost", "other")
    assert_plain_failure(rc, err, "ghost")

    rc, out, err = cli("datasets", "--json")
    assert last_json(out)["datasets"] == []


def test_rename_and_delete(cli, mk, tmp_path):
    for name, start in (("one", 0), ("two", 20)):
        zpath = mk.zip(mk.class_members({"a": 2, "b": 2}, start=start), tmp_path / f"{name}.zip")
        assert cli("import", zpath, "--json")[0] == 0

    rc, out, err = cli("rename", "one", "two")
    assert_plain_failure(rc, err, "already exists")
    rc, out, err = cli("rename", "one", "three", "--json")
    assert rc == 0, err
    assert last_json(out) == {"old": "one", "new": "three"}

    rc, out, err = cli("delete", "three")
    assert_plain_failure(rc, err, "--yes")
    assert last_json(cli("datasets", "--json")[1])["datasets"] == ["three", "two"]

    rc, out, err = cli("delete", "three", "--yes", "--json")
    assert rc == 0, err
    assert last_json(out) == {"deleted": "three"}
    rc, out, err = cli("datasets")
    assert out.split() == ["two"]
    rc, out, err = cli("delete", "three", "--yes")
    assert_plain_failure(rc, err, "three")


def test_datasets_when_empty(cli):
    rc, out, err = cli("datasets")
    assert rc == 0 and "No datasets yet" in out
    rc, out, err = cli("datasets", "--json")
    assert rc == 0 and last_json(out)["datasets"] == []
