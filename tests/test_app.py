"""AppTest of every page and of the Data page's import flows, each in a fresh workspace."""

import ast
import io
import tomllib
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls import data, workspace
from imgcls.ui import nav
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
