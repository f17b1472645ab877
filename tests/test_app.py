"""AppTest of every page and of the Data page's import flows, each in a fresh workspace."""

import ast
import io
import tomllib
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.ingest import imports as data
from imgcls.store import workspace
from imgcls.ui.common import nav
from apphelpers import metric, png

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGES = [page.path for page in nav.ALL]
DATA = nav.DATA.path
TIMEOUT = 60  # the first run imports plotly and pandas; a slow CI machine needs the headroom


pytestmark = pytest.mark.usefixtures("app_home")


def open_page(page: str) -> AppTest:
    """Run the app, then switch to one page and run it."""
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    if page != nav.HOME.path:
        at.switch_page(page).run()
    return at


@pytest.mark.parametrize("with_dataset", [False, True], ids=["empty", "with-dataset"])
@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders(page, with_dataset):
    if with_dataset:
        data.import_sample("shapes", "shapes")
        workspace.save_setting("active_dataset", "shapes")
    at = open_page(page)
    assert at.title, f"{page} shows no title"
    assert not at.error
    assert not at.exception


def test_placeholder_pages_nudge_to_data_without_a_dataset():
    at = open_page(nav.TRAIN.path)
    assert any("Data page" in i.value for i in at.info)
    assert not at.exception


def test_sample_button_imports_and_shows_counts():
    at = open_page(DATA)
    at.button(key="data.import.sample.shapes").click().run()
    assert not at.exception
    assert not at.error
    assert metric(at, "Images") == "500"
    assert metric(at, "Classes") == "5"
    assert int(metric(at, "Train")) + int(metric(at, "Validation")) + int(metric(at, "Test")) == 500
    assert any("Imported 500 images into 'shapes'" in s.value for s in at.success)
    assert workspace.settings()["active_dataset"] == "shapes"
    assert at.image, "the thumbnail grid shows no images"
    assert not at.exception


def test_sample_button_twice_just_activates_it():
    data.import_sample("shapes", "shapes")
    at = open_page(DATA)
    at.button(key="data.import.sample.shapes").click().run()
    assert any("already in your workspace" in s.value for s in at.success)
    assert metric(at, "Images") == "500"
    assert not at.exception


def test_home_start_with_sample_opens_data_page():
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.button(key="home.start_sample").click().run()
    assert not at.exception
    assert at.title[0].value == "Data"
    assert metric(at, "Images") == "500"
    assert metric(at, "Classes") == "5"
    assert workspace.dataset_exists("shapes")
    assert not at.exception


def test_missing_server_folder_is_a_plain_error(tmp_path):
    at = open_page(DATA)
    at.text_input(key="data.import.folder.path").input(str(tmp_path / "no-such-folder")).run()
    at.button(key="data.import.folder.button").click().run()
    assert len(at.error) == 1
    message = at.error[0].value
    assert "is not a folder on the server" in message and "Traceback" not in message
    assert workspace.list_datasets() == []
    assert not at.exception


def test_bad_dataset_name_is_a_plain_error(tmp_path):
    folder = tmp_path / "pics" / "red"
    folder.mkdir(parents=True)
    (folder / "a.png").write_bytes(png("red"))
    at = open_page(DATA)
    at.text_input(key="data.import.folder.path").input(str(tmp_path / "pics")).run()
    at.text_input(key="data.import.folder.name").input("../escape").run()
    at.button(key="data.import.folder.button").click().run()
    assert "cannot be a dataset name" in at.error[0].value
    assert not at.exception


def test_zip_upload_reports_skipped_files():
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(3):
            zf.writestr(f"red/{i}.png", png((200, 10 * i, 0)))
            zf.writestr(f"blue/{i}.png", png((0, 10 * i, 200)))
        zf.writestr("blue/notes.txt", "not an image")
        zf.writestr("blue/broken.png", b"\x89PNG broken")
    at = open_page(DATA)
    at.file_uploader(key="data.import.zip").upload("My pets (1).zip", buf.getvalue(), "application/zip").run()
    at.button(key="data.import.zip.button").click().run()
    assert not at.exception
    assert workspace.list_datasets() == ["My pets -1"]
    assert metric(at, "Images") == "6"
    assert metric(at, "Classes") == "2"
    assert any("2 files skipped" in s.value for s in at.success)
    skipped = at.dataframe[0].value
    assert sorted(skipped["File"]) == ["blue/broken.png", "blue/notes.txt"]
    assert set(skipped["Reason"]) == {"corrupt image", "unsupported format"}
    assert not at.exception


def test_loose_images_go_into_a_named_class():
    data.import_sample("shapes", "shapes")
    workspace.save_setting("active_dataset", "shapes")
    at = open_page(DATA)
    at.text_input(key="data.import.files.label").input("ellipse").run()
    at.file_uploader(key="data.import.files").set_value(
        [("e1.png", png("green"), "image/png"), ("e2.png", png("navy"), "image/png")]).run()
    at.button(key="data.import.files.button").click().run()
    assert not at.exception
    assert metric(at, "Images") == "502"
    assert metric(at, "Classes") == "6"
    assert not at.exception


def test_rename_then_delete_with_confirmation():
    data.import_sample("shapes", "shapes")
    at = open_page(DATA)
    at.text_input(key="data.manage.new_name").input("my shapes").run()
    at.button(key="data.manage.rename").click().run()
    assert workspace.list_datasets() == ["my shapes"]
    assert workspace.settings()["active_dataset"] == "my shapes"
    assert at.button(key="data.manage.delete").disabled  # not until the box is ticked
    at.checkbox(key="data.manage.delete_confirm.my shapes").check().run()
    at.button(key="data.manage.delete").click().run()
    assert workspace.list_datasets() == []
    assert not at.metric
    assert not at.exception


def test_active_dataset_survives_a_restart():
    data.import_sample("shapes", "shapes")
    data.import_files([("a.png", png("red")), ("b.png", png("blue"))], "tiny", "red")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.selectbox(key="sidebar.dataset").select("tiny").run()
    assert not at.exception
    again = AppTest.from_file(APP, default_timeout=TIMEOUT).run()  # a new session, as after a restart
    assert again.selectbox(key="sidebar.dataset").value == "tiny"
    again.switch_page(DATA).run()
    assert again.selectbox(key="data.dataset").value == "tiny"
    assert metric(again, "Images") == "2"
    assert not again.exception


def test_thumbnail_grid_pages_through_a_class():
    data.import_sample("shapes", "shapes")
    at = open_page(DATA)
    at.selectbox(key="data.grid.class.shapes").select("star").run()
    first = [c for c in at.caption if c.value.startswith("Images ")][0].value
    assert first.startswith("Images 1–24 of 100 in class 'star'")
    at.get("pagination")[0].set_value(5).run()
    last = [c for c in at.caption if c.value.startswith("Images ")][0].value
    assert last.startswith("Images 97–100 of 100")
    assert not at.exception


def test_config_file_enforces_serializable_state():
    conf = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text(encoding="utf-8"))
    assert conf["runner"]["enforceSerializableSessionState"] is True
    assert conf["browser"]["gatherUsageStats"] is False


def test_only_the_ui_package_imports_streamlit():
    for path in (ROOT / "imgcls").rglob("*.py"):
        if "ui" in path.relative_to(ROOT / "imgcls").parts[:-1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            assert not any(n.split(".")[0] == "streamlit" for n in names), f"{path} imports streamlit"


def test_a_thumbnail_opens_large_with_its_details():
    data.import_sample("shapes", "shapes")
    at = open_page(DATA)
    at.selectbox(key="data.grid.class.shapes").select("star").run()
    row = workspace.read_manifest("shapes").query("label == 'star' and not excluded").iloc[2]
    name = Path(row["source"]).name
    assert at.button(key="data.open.2").label.endswith(name)
    at.button(key="data.open.2").click().run()
    details = [m.value for m in at.markdown if m.value.startswith(f"**{name}**")]
    assert details, "the opened image names its file"
    split = {"train": "training", "val": "validation", "test": "test"}[row["split"]]
    assert f"Label **star** · {split} split · {row['width']}×{row['height']} px" in details[0]
    assert f"{row['bytes'] / 1024:,.0f} kB" in details[0]
    assert not at.exception


def test_data_card_sends_to_the_experiment_that_draws_its_curve():
    data.import_sample("shapes", "shapes")
    at = open_page(DATA)
    [card] = [e for e in at.expander if e.label == "Why deep learning needs data"]
    said = " ".join(c.value for c in card.caption)
    assert "Learn page" in said and "How much data is enough?" in said
    at.button(key="concept.data-size.measure").click().run()
    assert at.title[0].value == "Learn"
    assert at.radio(key="learn.experiment.kind").value == "data-size"
    assert not at.exception


def test_page_icon_needs_no_network():
    from streamlit.string_util import is_emoji

    tree = ast.parse((ROOT / "app.py").read_text(encoding="utf-8"))
    icons = [kw.value.value for node in ast.walk(tree) if isinstance(node, ast.Call)
             for kw in node.keywords if kw.arg == "page_icon"]
    # a material icon as the favicon is fetched from Google's font server; an emoji is drawn locally
    assert icons and all(is_emoji(icon) for icon in icons)


def test_libraries_are_imported_in_the_background_only_while_no_page_draws(monkeypatch):
    import time

    from imgcls.ui.common import preload

    loaded = []
    monkeypatch.setattr(preload, "MODULES", ("first", "second"))
    monkeypatch.setattr(preload, "QUIET_S", 0.3)
    monkeypatch.setattr(preload, "_thread", None)
    monkeypatch.setattr(preload, "_import", lambda name: loaded.append((name, time.monotonic())))
    monkeypatch.setattr(preload, "_warm_up", lambda: loaded.append(("warm-up", time.monotonic())))
    with preload.page_run():
        time.sleep(0.4)
        assert loaded == [] and preload._thread is None  # nothing starts while the first page draws
    thread = preload._thread
    with preload.page_run():  # the user opens another page at once: the import waits for it too
        time.sleep(0.4)
        assert loaded == []
    ended = preload._last_end  # when the second page finished drawing
    thread.join(timeout=10)
    assert [name for name, _ in loaded] == ["first", "second", "warm-up"]
    assert loaded[0][1] - ended >= 0.3
    assert preload.start_in_background() is thread  # one thread per server process


def test_home_and_data_pages_do_not_import_the_ml_libraries():
    import os
    import subprocess
    import sys

    data.import_sample("shapes", "shapes")
    workspace.save_setting("active_dataset", "shapes")
    code = (
        "import sys\nfrom imgcls.ui.common import preload\npreload.start_in_background = lambda: None\n"
        "from streamlit.testing.v1 import AppTest\n"
        f"at = AppTest.from_file({APP!r}, default_timeout=120).run()\n"
        f"at.switch_page({DATA!r}).run()\nassert not at.exception, at.exception\n"
        "assert at.metric, 'the Data page drew no overview'\n"
        "print(sorted(m for m in ('torch', 'timm', 'albumentations') if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    # importing torch costs seconds: the pages that need no model must not pay for it
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_the_warm_up_pass_runs_offline_on_the_default_backbone(monkeypatch):
    import socket

    from imgcls.ui.common import preload

    def refuse(*args, **kwargs):
        raise AssertionError("the warm-up tried to reach the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    preload._warm_up()  # random weights: a forward and a backward pass, nothing downloaded


def test_importing_the_libraries_sends_nothing_out():
    import os
    import subprocess
    import sys

    code = ("import urllib.request\ncalls = []\n"
            "urllib.request.OpenerDirector.open = lambda self, url, *a, **k: calls.append(url)\n"
            "import imgcls, albumentations\nprint(calls)\n")
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={**env, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"  # albumentations' update check would ask pypi.org


def test_long_file_names_are_shortened_under_a_thumbnail():
    from imgcls.ui.common.widgets import _short

    short = _short("IMG_20240101_123456789.jpg")
    assert len(short) <= 18 and short.startswith("IMG_2") and short.endswith("789.jpg") and "…" in short
    assert _short("0001.png") == "0001.png"
