"""The HTML health report: one self-contained, parseable page with every finding and user text escaped."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from imgcls.health import check as health
from imgcls.store import journal, versions, workspace
from imgcls.ingest.imports import import_files
from imgcls.health.report import render

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
    copy["source"] = "copies/copy.png"
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
    from imgcls.cli import main

    _dataset("cli")
    df = workspace.read_manifest("cli")
    workspace.write_manifest(workspace.dataset_dir("cli"), df.assign(label="ants"))  # edits after the check
    out = tmp_path / "health.html"
    assert main(["report", "cli", "--out", str(out), "--json"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["out"] == str(out) and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert not health.is_stale("cli", health.load("cli"))


def _total_row(page: str) -> list[int]:
    row = re.search(r'<tr class="total">(.*?)</tr>', page).group(1)
    return [int(v) for v in re.findall(r"<td>(\d+)</td>", row)]


def _figure_of(page: str, source_name: str) -> str:
    """The <figure> of the first thumbnail whose caption names this file."""
    at = page.index(f">{source_name}</span>")
    return page[page.rindex("<figure", 0, at):page.index("</figure>", at)]


def test_a_report_states_the_version_it_describes(imgcls_home):
    report = _dataset("cur")
    assert report["version"] == versions.dataset_version("cur")  # recorded when the check ran
    assert health.load("cur")["version"] == report["version"]
    page = render("cur", report)
    body = page[page.index("<body>"):]
    assert 'class="stale"' not in page and body.startswith("<body><h1>")
    assert f"Describes dataset version {report['version']['label']}, the current one" in page
    # the class table and "N images checked" tell the same story
    assert f"{report['images_checked']} images checked" in page
    assert _total_row(page)[-1] == report["images_checked"]


def test_a_report_downloaded_after_edits_says_so_at_its_top_and_marks_each_change(imgcls_home):
    report = _dataset("ed")
    rows = workspace.read_manifest("ed").set_index("path")
    copies = next(f for f in report["findings"] if f["kind"] == "exact_duplicate")["groups"][0]
    dark = next(f for f in report["findings"] if f["kind"] == "dark")["images"][0]
    relabelled, moved = copies
    journal.edit("ed", "relabel", [relabelled], "wasps")
    journal.edit("ed", "move", [moved], "test" if rows.at[moved, "split"] != "test" else "train")
    journal.edit("ed", "exclude", [dark])
    from imgcls.ui.review import export as review_export

    page = review_export._report_html("ed")  # what the Review page's download button hands over
    body = page[page.index("<body>"):]
    assert body.startswith('<body><div class="stale"><strong>This report is out of date.</strong>')
    banner = body[:body.index("</div>")]
    now = versions.dataset_version("ed")
    assert report["version"]["label"] in banner and now["label"] in banner  # from which version, and now
    assert "1 image relabelled, 1 moved to another split, 1 excluded" in banner
    name = lambda path: Path(rows.at[path, "source"]).name  # noqa: E731
    figure = _figure_of(page, name(relabelled))
    assert f"<br>{rows.at[relabelled, 'label']} · " in figure  # the label the finding was made with …
    assert "relabelled wasps since the check" in figure  # … and what it is now
    assert "moved to" in _figure_of(page, name(moved))
    dark_figure = _figure_of(page, name(dark))
    assert 'class="excluded"' in dark_figure and "excluded since the check" in dark_figure
    checked, current = _total_row(page)[-2:]
    assert checked == report["images_checked"] and current == now["images"]
    assert health.check("ed") and 'class="stale"' not in render("ed", health.load("ed"))


def test_copies_are_shown_as_whole_groups_with_each_members_role(imgcls_home):
    report = _dataset("grp")
    leak = next(f for f in report["findings"] if f["kind"] == "leakage")
    page = render("grp", report)
    section = page[page.index(leak["title"]):]
    section = section[:section.index("</section>")]
    group = re.search(r'<div class="group">(.*?)</div></div>', section + "</div>").group(1)
    assert group.count("<figure") == len(leak["groups"][0]) == 2
    assert "training copy" in group and "held out: act on this one" in group
    assert "train" in group and ("validation" in group or "test" in group)
