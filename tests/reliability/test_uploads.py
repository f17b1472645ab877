"""Uploaded text files (pipeline JSON/YAML, label CSVs): a size cap and a nesting cap checked before the
parse, refusals in one sentence naming the file and the limit, and YAML read as plain data only."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.augment import preview as augpreview
from imgcls.ingest import imports as data, parsing
from imgcls.store import workspace
from imgcls.augment.pipeline import build_pipeline
from imgcls.ingest.imports import ImportFailed, import_zip
from imgcls.ui.common import nav

APP = str(Path(__file__).resolve().parents[2] / "app.py")
DEEP_JSON = ("[" * 200_000 + "]" * 200_000).encode()  # 400 kB: json.loads raised RecursionError on it
DEEP_YAML = ("[" * 50_000 + "]" * 50_000).encode()  # 100 kB: PyYAML's safe_load took minutes on it


def refused(content: bytes, name: str) -> tuple[str, float]:
    started = time.perf_counter()
    with pytest.raises(parsing.ParseRefused) as err:
        parsing.load_structured(content, name)
    return str(err.value), time.perf_counter() - started


# --- the Augment page ---------------------------------------------------------------------------------


def test_the_augment_page_refuses_deep_files_in_a_sentence(app_home):
    data.import_sample("shapes", "shapes")
    workspace.save_setting("active_dataset", "shapes")
    at = AppTest.from_file(APP, default_timeout=60).run()
    at.switch_page(nav.AUGMENT.path).run()
    at.button(key="augment.preset.medium").click().run()
    uploads = [("deep.json", DEEP_JSON, "400,000 bytes, over the limit of 100,000"),
               ("nested.json", ("[" * 30_000 + "]" * 30_000).encode(), "more than 32 levels deep"),
               ("deep.yaml", DEEP_YAML, "more than 32 levels deep")]
    for name, content, words in uploads:
        started = time.perf_counter()
        at.file_uploader(key="augment.upload").upload(name, content, "application/octet-stream").run()
        assert time.perf_counter() - started < 20  # the page's own rerun included; the parse took minutes
        assert not at.exception, name
        errors = [e.value for e in at.error]
        assert any(name in e and words in e and "The pipeline was not changed." in e for e in errors), errors
        assert at.slider(key="augment.Affine.p").value == 0.5  # still the medium preset


# --- the parser ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("content,name", [
    (("[" * 30_000 + "]" * 30_000).encode(), "brackets.json"),
    (('{"a":' * 12_000 + "1" + "}" * 12_000).encode(), "objects.json"),
    (DEEP_YAML, "flow.yaml"),
    (("- " * 40_000 + "x\n").encode(), "compact.yaml"),
    ("".join(" " * i + f"k{i}:\n" for i in range(400)).encode(), "indented.yaml"),
    (("a: " + "[" * 20 + "']]]]]]]]]]]]]]]]]]]]', " + "[" * 20 + "x" + "]" * 40 + "\n").encode(), "quoted.yaml"),
], ids=["json-arrays", "json-objects", "yaml-flow", "yaml-compact", "yaml-indent", "yaml-quoted-closers"])
def test_deep_nesting_is_refused_before_the_parse(content, name):
    message, seconds = refused(content, name)
    assert message == f"{name} nests more than 32 levels deep, over the limit for this file; it was not read."
    assert seconds < 1


def test_the_size_cap_comes_first():
    message, seconds = refused(DEEP_JSON, "deep.json")
    assert message == "deep.json is 400,000 bytes, over the limit of 100,000 for a pipeline file."
    assert seconds < 0.1


def test_yaml_tags_are_refused_and_nothing_runs(tmp_path):
    made = tmp_path / "made"
    content = f"transform: !!python/object/apply:os.mkdir ['{made}']\n".encode()
    message, _ = refused(content, "evil.yaml")
    assert message.startswith("evil.yaml uses the YAML tag 'tag:yaml.org,2002:python/object/apply:os.mkdir'")
    assert not made.exists()


def test_yaml_aliases_are_refused():
    laughs = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
    message, seconds = refused(laughs.encode(), "laughs.yaml")
    assert "uses YAML aliases" in message and seconds < 0.5


def test_pipelines_saved_by_the_page_still_load():
    pipeline = augpreview.as_dict("heavy", 224)
    assert parsing.load_structured(augpreview.to_json(pipeline).encode(), "p.json") == pipeline
    assert parsing.load_structured(augpreview.to_yaml(pipeline).encode(), "p.yaml") == pipeline
    assert parsing.load_structured(augpreview.to_yaml(pipeline).encode(), "p.txt") == pipeline


# --- a pipeline file named on the command line ----------------------------------------------------------


def test_a_pipeline_file_for_training_is_bounded_too(tmp_path):
    deep, big, good = tmp_path / "deep.yaml", tmp_path / "big.json", tmp_path / "mine.json"
    deep.write_bytes(DEEP_YAML)
    big.write_bytes(b" " * 200_000 + b"{}")
    good.write_text(json.dumps(augpreview.as_dict("light", 224)))
    with pytest.raises(ValueError, match="deep.yaml nests more than 32 levels deep"):
        build_pipeline(str(deep), 224)
    with pytest.raises(ValueError, match="big.json is 200,002 bytes, over the limit of 100,000"):
        build_pipeline(str(big), 224)
    assert [type(t).__name__ for t in build_pipeline(str(good), 224).transforms] == ["RandomResizedCrop",
                                                                                      "HorizontalFlip"]


# --- label CSVs ---------------------------------------------------------------------------------------


def test_label_csvs_are_capped_and_refused_plainly(mk, imgcls_home, monkeypatch):
    archive = mk.zip(mk.class_members({"cats": 2, "dogs": 2}))
    cases = [(b'cats/000.png,"' + b"x" * 200_000 + b'"\n', "not readable as CSV (field larger than field limit"),
             (b"cats/000.png,cat\n" * 200_002, "has more than 200,000 rows, the most one import can use")]
    for content, words in cases:
        with pytest.raises(ImportFailed, match=words.replace("(", r"\(")):
            import_zip(archive, "labelled", label_csv=content)
    monkeypatch.setattr(parsing, "MAX_CSV_BYTES", 1000)
    with pytest.raises(ImportFailed, match="is 1,700 bytes, over the limit of 1,000 for a label CSV"):
        import_zip(archive, "labelled", label_csv=b"cats/000.png,cat\n" * 100)
    assert mk.workspace_entries(imgcls_home) == []
