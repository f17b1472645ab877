"""The HTML health report: one self-contained, parseable page with every finding and user text escaped."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import numpy as np
import pandas as pd
from PIL import Image

from imgcls import health, workspace
from imgcls.data import import_files
from imgcls.report import render

EVIL = "<b>bees"


class Page(HTMLParser):
    """Collects tags, text and attribute values, and checks that every opened element is closed."""

    VOID = {"meta", "img", "br", "link", "input", "hr"}

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.attrs, self.tags = [], [], [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs += [v or "" for _, v in attrs]
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1] if self.stack else None}>"
        self.stack.pop()

    def handle_data(self, data):
        self.text.append(data)


def _png(seed: int, size=(48, 48)) -> bytes:
    import io

    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).resize(size, Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def _dataset(name: str = "rep") -> dict:
    import_files([(f"a{i}.png", _png(i)) for i in range(6)], name, "ants")
    import_files([(f"x<i>{i}.png", _png(50 + i)) for i in range(2)], name, EVIL)
    import_files([("dark.png", _dark())], name, "ants")
    folder, df = workspace.dataset_dir(name), workspace.read_manifest(name)
    copy = df.iloc[0].copy()  # an exact copy in another split: import would have dropped it
    copy["path"], copy["split"] = "images/copy.png", "val" if copy["split"] == "train" else "train"
    (folder / copy["path"]).write_bytes((folder / df.iloc[0]["path"]).read_bytes())
    workspace.write_manifest(folder, pd.concat([df, copy.to_frame().T], ignore_index=True))
    return health.check(name)


def _dark() -> bytes:
    import io

    buf = io.BytesIO()
    Image.new("RGB", (48, 48), (3, 3, 3)).save(buf, "PNG")
    return buf.getvalue()


def test_report_is_self_contained_and_escaped(imgcls_home):
    report = _dataset()
    assert report["findings"], "the dataset was built to have findings"
    page = render("rep", report)
    parser = Page()
    parser.feed(page)
    parser.close()
    assert not parser.stack, f"unclosed elements: {parser.stack}"
    text = "".join(parser.text)
    assert "Dataset health: rep" in text and f"{report['score']}/100" in text
    for f in report["findings"]:
        assert f["title"] in text and f["message"] in text
    assert EVIL in text  # shown as text …
    assert "<b>" not in page and "&lt;b&gt;bees" in page  # … never as markup
    assert "x<i>0.png" in text and "<i>" not in page
    assert "http" not in page.lower() and "<script" not in page and "<link" not in page
    images = [a for a in parser.attrs if a.startswith("data:image/jpeg;base64,")]
    # copies are shown with the images they copy, so a group may add pictures to a finding
    shown = sum(min(len(set(f["images"]).union(*f["groups"])), 24) for f in report["findings"])
    assert len(images) == shown
    assert {"exact_duplicate", "leakage"} <= {f["kind"] for f in report["findings"]}
    assert "class_imbalance" in {f["kind"] for f in report["findings"]}


def test_report_without_findings(imgcls_home):
    import_files([(f"a{i}.png", _png(i)) for i in range(3)], "calm", "ants")
    report = dict(health.check("calm"), findings=[])
    page = render("calm", report)
    assert "No problems found." in page


def test_cli_report_checks_again_when_stale(imgcls_home, tmp_path, capsys):
    from imgcls.__main__ import main

    _dataset("cli")
    df = workspace.read_manifest("cli")
    workspace.write_manifest(workspace.dataset_dir("cli"), df.assign(label="ants"))  # edits after the check
    out = tmp_path / "health.html"
    assert main(["report", "cli", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["out"] == str(out) and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not health.is_stale("cli", health.load("cli"))
