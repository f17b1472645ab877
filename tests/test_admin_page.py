"""AppTest of the Admin page: the users table and the limits forms for an admin; a refusal for anyone else."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.store import access, quotas, workspace
from imgcls.ingest.imports import import_zip
from imgcls.ui.common import nav
from authhelpers import ISSUER, signed_in, signin_configured, write_config

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
PAGE = str(ROOT / nav.ADMIN.path)
ADA = access.User("ada-1", ISSUER, "Ada Admin", "ada@example.test")
BOB = access.User("bob-2", ISSUER, "Bob Builder", "bob@example.test")
REFUSED = "This page is for the server's administrators"


@pytest.fixture
def server(app_home, tmp_path, mk):
    """Sign-in on, Ada an admin, Bob a user with one dataset of five images."""
    write_config(app_home, 'import_roots = []\n[roles]\nadmin = ["ada@example.test"]\n')
    for user in (ADA, BOB):
        access.register(user)
    with workspace.use(access.user_root(BOB)):
        import_zip(mk.zip(mk.class_members({"cats": 2, "dogs": 3})), "pets")
    with signin_configured(tmp_path):
        yield app_home


def as_user(user: access.User, script: str = APP) -> AppTest:
    at = AppTest.from_file(script, default_timeout=60)
    at.user = signed_in(user.subject, user.name, user.email, user.issuer)
    return at


def open_admin(user: access.User) -> AppTest:
    at = as_user(user).run()
    at.switch_page(nav.ADMIN.path).run()
    return at


def field(at: AppTest, form: str, name: str):
    """The number field of one limit in one form (their keys carry the values now saved)."""
    found = [n for n in at.number_input if n.key.startswith(f"admin.limits.{form}.") and n.key.endswith(f".{name}")]
    assert len(found) == 1, [n.key for n in at.number_input]
    return found[0]


def save(at: AppTest, form: str) -> AppTest:
    [button] = [b for b in at.button if b.label == "Save limits" and form in (b.form_id or "")]
    return button.click().run()


def test_an_admin_sees_every_user_with_what_their_workspace_holds(server):
    at = open_admin(ADA)
    assert not at.exception
    assert at.title[0].value == "Admin"
    table = at.dataframe[0].value.set_index("E-mail")
    assert sorted(table.index) == ["ada@example.test", "bob@example.test"]
    assert table.loc["bob@example.test", "Name"] == "Bob Builder"
    assert table.loc["bob@example.test", "Datasets"] == 1 and table.loc["bob@example.test", "Images"] == 5
    assert table.loc["ada@example.test", "Datasets"] == 0
    bob_disk = quotas.size_text(quotas.disk_bytes(access.user_root(BOB), fresh=True))
    assert table.loc["bob@example.test", "Disk used"] == bob_disk
    assert table.loc["bob@example.test", "Runs"] == 0 and table.loc["bob@example.test", "Jobs running"] == 0
    assert table.loc["bob@example.test", "Jobs waiting"] == 0
    assert not at.error


def test_an_admin_sets_the_default_limits_and_one_users_limits(server):
    at = open_admin(ADA)
    field(at, "default", "datasets").set_value(4)
    field(at, "default", "jobs_running").set_value(0)
    field(at, "default", "jobs_queued").set_value(3)
    at = save(at, "default")
    assert not at.exception
    assert quotas.overrides()["default"] == {"datasets": 4, "jobs_running": 0, "jobs_queued": 3}
    assert quotas.limits(access.user_root(BOB)).jobs_queued == 3
    assert any("Saved the limits" in s.value for s in at.success)
    assert field(at, "default", "datasets").value == 4  # the fields show what is saved

    at.selectbox(key="admin.limits.user").set_value(BOB.key).run()
    field(at, BOB.key, "disk_gb").set_value(2.5)
    at = save(at, BOB.key)
    assert quotas.overrides()["users"] == {BOB.key: {"disk_gb": 2.5}}  # only what differs from everyone's
    assert quotas.limits(access.user_root(BOB)).disk_gb == 2.5
    assert quotas.limits(access.user_root(BOB)).datasets == 4
    assert quotas.limits(access.user_root(ADA)).disk_gb == access.Quotas().disk_gb
    assert "(own)" in at.dataframe[0].value.set_index("E-mail").loc["bob@example.test", "Limits"]

    at.button(key="admin.limits.user.clear").click().run()
    assert quotas.overrides()["users"] == {}
    assert not at.exception


def test_a_plain_user_is_refused_even_at_the_pages_address(server):
    at = as_user(BOB, PAGE).run()
    assert any(REFUSED in e.value for e in at.error)
    assert not at.dataframe and not at.number_input
    assert not at.exception


def test_a_signed_out_visitor_is_refused_at_the_pages_address(server):
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.user = {"is_logged_in": False}
    at.run()
    assert any(REFUSED in e.value for e in at.error)
    assert not at.dataframe and not at.number_input
    assert not at.exception


def test_an_admin_at_the_pages_address_gets_the_page(server):
    at = as_user(ADA, PAGE).run()
    assert not at.error
    assert len(at.dataframe[0].value) == 2
    assert not at.exception
