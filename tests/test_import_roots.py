"""Folders on the server: imports read only the folders the operator lists, and never follow a symlink out."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.store import access, workspace
from imgcls.ingest.imports import ImportFailed, import_folder
from imgcls.ingest.sources import ImportLimits, list_folder
from imgcls.ui.common import nav
from imgcls.ui.common.text import plain
from authhelpers import ISSUER, signed_in, signin_configured, write_config

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")


def class_folder(mk, root: Path, start: int = 0) -> Path:
    """A folder of two classes, three unique images each."""
    for name, data in mk.class_members({"cats": 3, "dogs": 3}, start=start):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


@pytest.fixture
def layout(imgcls_home, tmp_path, mk):
    """An allowed root holding a photo folder, a folder outside it, and the config listing only the root."""
    allowed, outside = tmp_path / "shared", tmp_path / "private"
    class_folder(mk, allowed / "photos")
    class_folder(mk, outside, start=100)
    write_config(imgcls_home, f'import_roots = ["{allowed}"]\n')
    return allowed, outside


def test_a_folder_inside_a_root_is_imported(layout):
    allowed, _ = layout
    report = import_folder(allowed / "photos", "inside", signed_in=True)
    assert report.images == 6
    assert workspace.list_datasets() == ["inside"]


def test_a_folder_outside_the_roots_is_refused_before_reading(layout):
    allowed, outside = layout
    with pytest.raises(ImportFailed, match=f"outside the folders this server lets you import from: {allowed}"):
        import_folder(outside, "outside", signed_in=True)
    assert workspace.list_datasets() == []


def test_dot_dot_leading_out_of_a_root_is_refused(layout):
    allowed, outside = layout
    sneaky = allowed / "photos" / ".." / ".." / outside.name
    assert sneaky.is_dir()  # it exists: only the root rule refuses it
    with pytest.raises(ImportFailed, match="outside the folders"):
        import_folder(str(sneaky), "sneaky", signed_in=True)
    assert workspace.list_datasets() == []


def test_a_symlink_in_a_root_leading_out_is_refused(layout):
    allowed, outside = layout
    os.symlink(outside, allowed / "link")
    with pytest.raises(ImportFailed, match="outside the folders"):
        import_folder(allowed / "link", "linked", signed_in=True)
    assert workspace.list_datasets() == []


def test_roots_apply_to_one_person_too_once_listed(layout):
    _, outside = layout
    with pytest.raises(ImportFailed, match="outside the folders"):
        import_folder(outside, "outside")


def test_with_sign_in_and_no_roots_every_folder_is_refused(imgcls_home, tmp_path, mk):
    folder = class_folder(mk, tmp_path / "photos")
    with pytest.raises(ImportFailed, match="Importing from folders on the server is turned off here"):
        import_folder(folder, "x", signed_in=True)
    assert workspace.list_datasets() == []


def test_one_person_without_roots_imports_any_folder(imgcls_home, tmp_path, mk):
    folder = class_folder(mk, tmp_path / "anywhere")
    assert import_folder(folder, "mine").images == 6


def test_an_empty_list_of_roots_turns_folders_off_for_everyone(imgcls_home, tmp_path, mk):
    write_config(imgcls_home, "import_roots = []\n")
    folder = class_folder(mk, tmp_path / "photos")
    with pytest.raises(ImportFailed, match="turned off"):
        import_folder(folder, "x")


# --- symlinks inside an imported folder ------------------------------------------------------------


def test_symlinked_files_and_subfolders_leading_out_are_skipped_with_a_reason(imgcls_home, tmp_path, mk):
    folder = class_folder(mk, tmp_path / "photos")
    secret = class_folder(mk, tmp_path / "secret", start=200)
    os.symlink(secret / "cats" / "000.png", folder / "cats" / "stolen.png")
    os.symlink(secret / "dogs", folder / "dogs" / "more")  # a subfolder inside a class
    os.symlink(secret / "cats", folder / "birds")  # a whole class folder
    listing = list_folder(folder, ImportLimits())
    reasons = {s["file"]: s["reason"] for s in listing.skipped}
    assert reasons == {"cats/stolen.png": "symlink", "dogs/more": "symlink", "birds": "symlink"}
    assert not [e.name for e in listing.entries if "stolen" in e.name or e.name.startswith(("birds", "dogs/more"))]
    report = import_folder(folder, "photos")
    assert report.class_counts == {"cats": 3, "dogs": 3}
    stored = {p.read_bytes() for p in (workspace.dataset_dir("photos") / "images").iterdir()}
    assert not stored & {p.read_bytes() for p in secret.rglob("*.png")}


def test_a_pipe_in_the_folder_is_skipped_not_read(imgcls_home, tmp_path, mk):
    folder = class_folder(mk, tmp_path / "photos")
    os.mkfifo(folder / "cats" / "pipe.png")  # reading it would wait forever
    listing = list_folder(folder, ImportLimits())
    assert {s["file"]: s["reason"] for s in listing.skipped} == {"cats/pipe.png": "not a file"}


# --- the Folder tab ------------------------------------------------------------------------------------


@pytest.fixture
def signed_in_app(app_home, tmp_path):
    with signin_configured(tmp_path):
        at = AppTest.from_file(APP, default_timeout=60)
        at.user = signed_in("u-1", "Uma User", "uma@example.test")
        yield at


def test_the_folder_tab_says_folders_are_off_with_sign_in_and_no_roots(signed_in_app):
    at = signed_in_app.run()
    at.switch_page(nav.DATA.path).run()
    assert not at.exception
    assert any("Importing from folders on the server is turned off here" in i.value for i in at.info)
    assert not [t for t in at.text_input if t.key == "data.import.folder.path"]


def test_the_folder_tab_lists_the_roots_and_imports_inside_them(signed_in_app, app_home, tmp_path, mk):
    allowed = tmp_path / "shared"
    class_folder(mk, allowed / "photos")
    write_config(app_home, f'import_roots = ["{allowed}"]\n')
    at = signed_in_app.run()
    at.switch_page(nav.DATA.path).run()
    assert any(plain(str(allowed)) in c.value for c in at.caption)
    at.text_input(key="data.import.folder.path").set_value(str(allowed / "photos")).run()
    at.button(key="data.import.folder.button").click().run()
    assert not at.exception
    assert not at.error
    with workspace.use(access.user_root(access.User("u-1", ISSUER))):
        assert workspace.list_datasets() == ["photos"]
    assert not (app_home / "datasets" / "photos").exists()  # in the user's workspace, not the server's root
