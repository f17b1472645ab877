"""AppTest of the Class page: what it says without sign-in, what a plain user and a teacher see, joining with a
code (and a wrong one), removing a student, and a frozen board refusing submissions."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from authhelpers import ISSUER, signed_in, signin_configured, write_config
from imgcls.classroom import classes, shared
from imgcls.ingest.imports import import_zip
from imgcls.store import access, workspace
from imgcls.ui.common import nav

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
TESS = access.User("tess-1", ISSUER, "Tess Teacher", "tess@example.test")
SAM = access.User("sam-2", ISSUER, "Sam Student", "sam@example.test")


def _open(user: access.User | None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if user is not None:
        at.user = signed_in(user.subject, user.name, user.email, user.issuer)
    at.run()
    at.switch_page(nav.CLASS.path).run()
    assert not at.exception, at.exception
    return at


def _text(at: AppTest) -> str:
    return "\n".join(str(e.value) for e in [*at.markdown, *at.caption, *at.info, *at.error, *at.success,
                                             *at.warning, *at.header, *at.subheader])


@pytest.fixture
def server(app_home, tmp_path, mk):
    """Sign-in on, Tess a teacher with a dataset of three classes, Sam a plain user."""
    write_config(app_home, '[roles]\nteacher = ["tess@example.test"]\n')
    for user in (TESS, SAM):
        access.register(user)
    with workspace.use(access.user_root(TESS)):
        import_zip(mk.zip(mk.class_members({"cats": 6, "dogs": 6, "owls": 6})), "pets")
    with signin_configured(tmp_path):
        yield app_home


def test_without_signin_the_page_says_classes_need_a_shared_server(app_home):
    at = _open(None)
    assert "Classes need a shared server with sign-in" in _text(at)
    assert not [b for b in at.button if "Create class" in b.label]


def test_a_plain_user_cannot_make_a_class_and_a_wrong_code_says_so(server):
    at = _open(SAM)
    text = _text(at)
    assert "Classes you teach" not in text and "Classes you joined" in text
    at.text_input(key="class.join.code").input("NOPE2345")
    at.button(key="FormSubmitter:class.join-Join").click().run()
    assert len(at.error) == 1 and "code" in at.error[0].value.lower(), [e.value for e in at.error]
    assert classes.joined_by(SAM.key) == []


def test_a_teacher_makes_a_class_and_a_student_joins_with_its_code(server):
    at = _open(TESS)
    at.text_input(key="class.create.name").input("Biology 2")
    at.button(key="FormSubmitter:class.create-Create class").click().run()
    (info,) = classes.taught_by(TESS.key)
    assert info.name == "Biology 2" and info.code in _text(at)
    assert any(info.code in str(c.value) for c in at.code)  # the join link, ready to copy

    at = _open(SAM)
    at.text_input(key="class.join.code").input(info.code.lower())  # codes are read in any case
    at.button(key="FormSubmitter:class.join-Join").click().run()
    assert "You joined **Biology 2**" in _text(at)
    assert SAM.key in classes.get(info.id).members
    assert "not shared a dataset with this class yet" in _text(at)

    # the teacher shares the dataset; the student now sees it, with its hidden test counted but not shown
    with workspace.use(access.user_root(TESS)):
        done = shared.share_dataset(info.id, TESS, "pets")
    at = _open(SAM)
    assert any(b.label == "Start from pets" for b in at.button)
    assert done["hidden_test"] > 0

    # the teacher removes the student: the class leaves the student's page
    at = _open(TESS)
    at.selectbox(key=f"class.remove.{info.id}").select(SAM.key).run()
    at.button(key=f"class.remove.go.{info.id}").click().run()
    assert SAM.key not in classes.get(info.id).members
    at = _open(SAM)
    assert not [b for b in at.button if b.label == "Start from pets"]


def test_a_frozen_board_takes_no_submission(server):
    info = classes.create(TESS, "Chemistry")
    classes.join(info.code, SAM)
    at = _open(TESS)
    at.button(key=f"class.freeze.{info.id}").click().run()
    assert classes.get(info.id).frozen
    at = _open(SAM)
    assert "The board is frozen" in _text(at)
    assert not [b for b in at.button if "Submit for scoring" in b.label]
