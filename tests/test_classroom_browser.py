"""A class in a real browser with a real OpenID provider: a teacher makes a class and shares a dataset with a
hidden test split; two students join with the code, start from it, train on the Train page and submit to the
board; the server scores both on the hidden split and the board ranks them by those scores; no student's
workspace or page holds a hidden test image or the other student's work; the teacher opens a submission
read-only.
"""

from __future__ import annotations

import json
import os
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from signin_helpers import (CHROMIUM, CHROMIUM_FLAGS, App, app_text, colour_png, new_page, open_page,
                            rerun_after, run_app, sign_in)
from waiting import wait_for

if not CHROMIUM and not os.environ.get("IMGCLS_REQUIRE_BROWSER"):
    pytest.skip("no Chromium installed (apt-get install chromium)", allow_module_level=True)
if not os.environ.get("IMGCLS_REQUIRE_BROWSER"):
    pytest.importorskip("oidc_provider_mock")
playwright = pytest.importorskip("playwright.sync_api")

# close colours under heavy noise: a short run and a longer one are unlikely to score the same
COLOURS = {"tomato": (150, 105, 100), "sky": (105, 110, 150), "grass": (110, 145, 105)}
DATASET = "colours-class"
CLASS_NAME = "Period 3 vision"


@dataclass
class Person:
    sub: str
    name: str
    email: str
    page: object = None
    root: Path | None = None
    run_id: str = ""


def _noisy_zip(path: Path, per_class: int) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for k, (label, colour) in enumerate(COLOURS.items()):
            for i in range(per_class):
                zf.writestr(f"{label}/{i:03d}.png", colour_png(colour, 1000 * k + i, spread=110))
    return path


def _workspace_of(home: Path, sub: str) -> Path:
    found = [p for p in (home / "users").iterdir()
             if json.loads((p / "user.json").read_text()).get("subject") == sub]
    assert len(found) == 1, found
    return found[0]


def _import_zip(page, app: App, archive: Path) -> None:
    open_page(page, app.url + "/data")
    uploader = page.locator("[data-testid='stFileUploader']").filter(has_text="ZIP file").first
    rerun_after(page, lambda: uploader.locator("input[type='file']").set_input_files(str(archive)))
    rerun_after(page, lambda: page.get_by_role("button", name="Import ZIP").click(), seconds=120)
    page.get_by_text(f"Overview of {archive.stem}").first.wait_for(timeout=60_000)


def _class_folder(home: Path) -> Path:
    (folder,) = [p for p in (home / "classes").iterdir() if p.is_dir()]
    return folder


def _train_on_the_page(person: Person, app: App, epochs: int) -> str:
    """Start a linear run on the Train page with `epochs`, and wait for it to finish; its id."""
    page = person.page
    open_page(page, app.url + "/train")
    box = page.get_by_role("spinbutton", name="Epochs").first
    box.fill(str(epochs))
    rerun_after(page, lambda: box.press("Enter"))
    rerun_after(page, lambda: page.get_by_role("button", name="Start training").click())

    def finished():
        for status in (person.root / "runs").glob("*/status.json"):
            state = json.loads(status.read_text()).get("state")
            if state == "done":
                return status.parent.name
            assert state not in ("failed", "cancelled"), status.read_text()
        return None
    return wait_for(f"{person.name}'s run to finish", finished, 400, 0.5)


def _board(page) -> list[dict]:
    """The board's rows as the page shows them: column name → cell text."""
    table = page.locator("[data-testid='stTable'] table").filter(has_text="Rank").first
    table.wait_for(timeout=30_000)
    header = [c.strip() for c in table.locator("thead th").all_inner_texts()]
    return [dict(zip(header, (c.strip() for c in row.locator("th, td").all_inner_texts())))
            for row in table.locator("tbody tr").all()]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("classroom")
    home = tmp / "ws"
    home.mkdir()
    (home / "imgcls.toml").write_text('[roles]\nteacher = ["tess@example.org"]\n')
    teacher = Person("tess-sub", "Tess Teacher", "tess@example.org")
    students = [Person("sam-sub", "Sam Student", "sam@example.org"),
                Person("ria-sub", "Ria Student", "ria@example.org")]
    with run_app(tmp) as app, playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield app, browser, teacher, students, tmp
        finally:
            browser.close()


def test_a_class_from_sharing_to_the_board(world):
    app, browser, teacher, students, tmp = world
    try:
        _the_class(app, browser, teacher, students, tmp)
    except Exception:
        for i, person in enumerate([teacher, *students]):
            if person.page is not None:
                person.page.screenshot(path=str(tmp / f"failed-{i}.png"), full_page=True)
        print(app.log_tail())
        raise


def _the_class(app, browser, teacher, students, tmp):
    # the teacher: a dataset, a class, its code, the dataset shared with a hidden test split
    teacher.page = new_page(browser)
    open_page(teacher.page, app.url + "/")
    sign_in(teacher.page, app, teacher.sub, teacher.name, teacher.email)
    _import_zip(teacher.page, app, _noisy_zip(tmp / f"{DATASET}.zip", per_class=16))
    page = teacher.page
    open_page(page, app.url + "/classroom")
    page.get_by_label("Name of a new class").fill(CLASS_NAME)
    rerun_after(page, lambda: page.get_by_role("button", name="Create class").click())
    code = re.search(r"join code is ([A-Z0-9]{8})", app_text(page)).group(1)
    rerun_after(page, lambda: page.get_by_role("tab", name="Datasets").click())
    rerun_after(page, lambda: page.get_by_role("button", name="Share with the class").click(), seconds=120)
    assert "held back as the hidden test" in app_text(page)
    folder = _class_folder(app.home)
    hidden = pd.read_csv(folder / "hidden" / DATASET / "manifest.csv", keep_default_na=False)
    assert len(hidden) >= 3 and set(hidden["label"]) == set(COLOURS)
    hidden_hashes, hidden_sources = set(hidden["hash"]), set(hidden["source"])

    # two students join with the link, start from the class dataset, train (different epochs) and submit
    for person, epochs, guess in zip(students, (3, 12), (60, 95)):
        person.page = new_page(browser)
        open_page(person.page, app.url + "/")
        sign_in(person.page, app, person.sub, person.name, person.email)
        person.root = _workspace_of(app.home, person.sub)
        page = person.page
        open_page(page, f"{app.url}/classroom?join={code}")
        assert page.get_by_label("Join a class with its code").input_value() == code
        rerun_after(page, lambda: page.get_by_role("button", name="Join").click())
        assert f"You joined {CLASS_NAME}" in app_text(page)
        rerun_after(page, lambda: page.get_by_role("button", name=f"Start from {DATASET}").click(), seconds=120)
        person.run_id = _train_on_the_page(person, app, epochs)
        open_page(page, app.url + "/classroom")
        slider = page.get_by_role("slider").first
        slider.focus()
        for _ in range(abs(guess - 80)):
            slider.press("ArrowRight" if guess > 80 else "ArrowLeft")
        rerun_after(page, lambda: page.get_by_role("button", name="Submit for scoring").click())
        assert "Submitted" in app_text(page)

    # the server scores both on the hidden split
    def scored():
        found = [(json.loads((p.parent / "submission.json").read_text()), json.loads(p.read_text()))
                 for p in folder.glob("submissions/*/score.json")]
        return found if len(found) == 2 else None
    scores = wait_for("both scores", scored, 400, 0.5)
    assert all(score["images"] == len(hidden) for _, score in scores)
    ranked = sorted(scores, key=lambda m: (-m[1]["accuracy"], -m[1]["macro_f1"]))

    # the board, as each student sees it, ranks them by the server's scores
    for person in students:
        page = person.page
        open_page(page, app.url + "/classroom")
        rows = _board(page)
        assert [r["Student"].removesuffix(" (you)") for r in rows] == [m["name"] for m, _ in ranked] or \
            ranked[0][1]["accuracy"] == ranked[1][1]["accuracy"]  # a tie may list either first
        for row in rows:
            meta, score = next(m for m in scores if m[0]["name"] == row["Student"].removesuffix(" (you)"))
            assert row["Accuracy"] == f"{score['accuracy']:.1%}" and row["Macro F1"] == f"{score['macro_f1']:.3f}"
            assert row["Predicted"] == f"{meta['expected']:.1%}"
        assert [r["Rank"] for r in rows] == (["1", "1"] if ranked[0][1]["accuracy"] == ranked[1][1]["accuracy"]
                                             and ranked[0][1]["macro_f1"] == ranked[1][1]["macro_f1"] else ["1", "2"])
        assert any("epochs" in r["Settings (against the baseline)"] for r in rows)
        assert sum(r["Student"].endswith("(you)") for r in rows) == 1
        assert "How well the class predicted" in app_text(page)

    # nobody but the teacher holds or sees a hidden test image, or the other student's work
    for person, other in ((students[0], students[1]), (students[1], students[0])):
        held = set()
        for manifest in person.root.glob("datasets/*/manifest.csv"):
            held |= set(pd.read_csv(manifest, keep_default_na=False)["hash"])
        assert held and not held & hidden_hashes
        names = {p.name for p in person.root.rglob("*") if p.is_file()}
        assert not names & {Path(s).name for s in hidden_sources} - {Path(s).name for s in _visible(folder)}
        for path in ("/data", "/review", "/evaluate", "/classroom"):
            open_page(person.page, app.url + path)
            text = app_text(person.page)
            assert other.run_id not in text and str(other.root) not in text
        for manifest in person.root.glob("datasets/*/manifest.csv"):  # no test split to predict on, image by image
            assert "test" not in set(pd.read_csv(manifest, keep_default_na=False)["split"])

    # the teacher opens the best submission read-only: its hidden-test numbers and mistakes
    page = teacher.page
    open_page(page, app.url + "/classroom")
    rerun_after(page, lambda: page.get_by_role("tab", name="Board").click())
    _open_first(page)
    page.get_by_text("(read-only)").first.wait_for(timeout=60_000)
    text = app_text(page)
    shown = text[text.index("(read-only)"):]
    assert f"{ranked[0][1]['accuracy']:.1%}" in shown and "Hidden test images" in shown, shown[:1500]
    assert page.locator("[data-testid='stPlotlyChart']").count() >= 1  # its confusion matrix (and curves)
    # a student opening the same submission gets its curves and nothing of the hidden images
    page = students[0].page
    open_page(page, app.url + "/classroom")
    _open_first(page)
    page.locator("[data-testid='stPlotlyChart']").first.wait_for(timeout=60_000)
    text = app_text(page)
    assert "(read-only)" not in text and "confident mistakes" not in text
    assert page.locator("[data-testid='stImage']").count() == 0


def _open_first(page) -> None:
    """Pick the board's first-ranked submission in "Open a submission"."""
    box = page.get_by_role("combobox", name="Open a submission").first
    box.scroll_into_view_if_needed()
    box.click()
    listbox = page.get_by_role("listbox").first
    listbox.wait_for(timeout=10_000)
    rerun_after(page, lambda: listbox.get_by_role("option").filter(has_text=re.compile(r"^1\. ")).first.click())


def _visible(folder: Path) -> set[str]:
    """The sources of the class dataset students may copy."""
    out = set()
    for manifest in folder.glob("datasets/*/manifest.csv"):
        out |= set(pd.read_csv(manifest, keep_default_na=False)["source"])
    return out
