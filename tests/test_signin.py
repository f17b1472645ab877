"""Sign-in states of the app (AppTests with st.user seeded) and the workspace boundary behind them."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.store import access, workspace
from imgcls.ingest import imports as data
from imgcls.ingest.sources import list_memory

from authhelpers import ISSUER, signed_in
from conftest import png

APP = str(Path(__file__).resolve().parents[1] / "app.py")
PAGES = ["app_pages/home.py", "app_pages/data.py", "app_pages/review.py", "app_pages/augment.py",
         "app_pages/train.py", "app_pages/evaluate.py", "app_pages/learn.py"]
pytestmark = pytest.mark.usefixtures("app_home")


def app_as(user: dict | None, page: str | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=60)
    if user is not None:
        at.user = user
    at.run()
    if page:
        at.switch_page(page).run()
    return at


def own_dataset(sub: str, name: str) -> Path:
    """A small dataset made in one user's workspace, as the app's import would make it there."""
    root = access.user_root(access.User(subject=sub, issuer=ISSUER))
    with workspace.use(root):
        make(name)
    return root


def make(name: str) -> None:
    files = [(f"{label}/{i}.png", png(seed)) for seed, (label, i) in enumerate((c, i) for c in "ab" for i in range(4))]
    data.import_listing(list_memory(files), name, "upload")


def all_text(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [c.value for c in at.caption] + [t.value for t in at.title]
    parts += [str(o) for s in at.selectbox for o in s.options]
    return "\n".join(parts)


def test_signed_out_visitors_see_only_the_sign_in_screen_on_every_page(signin_secrets):
    own_dataset("alice", "alice-flowers")
    for page in [None, *PAGES]:
        at = app_as({"is_logged_in": False}, page)
        assert [t.value for t in at.title] == ["imgcls"], page
        assert [b.label for b in at.button] == ["Sign in"], page
        assert not at.selectbox and "alice-flowers" not in all_text(at), page
        assert not at.exception


def test_each_user_sees_only_their_own_datasets(signin_secrets):
    alice_root = own_dataset("alice", "alice-flowers")
    bob_root = own_dataset("bob", "bob-birds")
    assert alice_root != bob_root and alice_root.parent == bob_root.parent == access.users_root()
    for who, mine, theirs in (("alice", "alice-flowers", "bob-birds"), ("bob", "bob-birds", "alice-flowers")):
        for page in [None, *PAGES]:
            at = app_as(signed_in(who, who.title(), f"{who}@example.org"), page)
            text = all_text(at)
            assert theirs not in text, (who, page)
            assert not at.exception, (who, page)
        assert mine in [str(o) for o in at.sidebar.selectbox(key="sidebar.dataset").options]
        assert f"Signed in as **{who.title()}**" in [c.value for c in at.sidebar.caption]
        assert "Sign out" in [b.label for b in at.sidebar.button]


def test_a_users_workspace_is_keyed_by_the_providers_subject_not_the_name(signin_secrets):
    first = access.User(subject="u-1", issuer=ISSUER, name="Sam", email="sam@example.org")
    renamed = access.User(subject="u-1", issuer=ISSUER, name="Samantha", email="new@example.org")
    namesake = access.User(subject="u-2", issuer=ISSUER, name="Sam", email="sam@example.org")
    other_provider = access.User(subject="u-1", issuer="https://other.example.org")
    assert access.user_root(first) == access.user_root(renamed)
    assert len({access.user_root(u) for u in (first, namesake, other_provider)}) == 3
    app_as(signed_in("u-1", "Sam", "sam@example.org"))
    card = workspace.read_json(access.user_root(first) / "user.json")
    assert card["subject"] == "u-1" and card["name"] == "Sam"


def test_without_a_signed_in_session_the_engine_reaches_no_workspace(signin_secrets):
    from imgcls.ui.common import signin

    signin.install()
    try:
        errors = []

        def work():  # a thread of the server with no session behind it
            try:
                workspace.list_datasets()
            except workspace.WorkspaceError as exc:
                errors.append(str(exc))
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
        assert errors == ["Sign in to reach a workspace."]
        root = own_dataset("alice", "alice-flowers")
        with workspace.use(root):  # an explicit workspace (a demo's owner, a job) is honoured
            assert workspace.list_datasets() == ["alice-flowers"]
    finally:
        workspace.set_resolver(None)


def test_one_person_without_sign_in_works_in_imgcls_home_as_before(app_home):
    make("mine")
    at = app_as(None)
    assert "mine" in [str(o) for o in at.sidebar.selectbox(key="sidebar.dataset").options]
    assert "Sign out" not in [b.label for b in at.sidebar.button] and "Sign in" not in [b.label for b in at.button]
    assert not at.warning  # listening on 127.0.0.1: nobody else can reach it
    assert not at.exception


def test_reachable_without_sign_in_says_so_on_every_page():
    from streamlit import config

    old = config.get_option("server.address")
    config.set_option("server.address", "0.0.0.0")
    try:
        for page in [None, *PAGES]:
            at = app_as(None, page)
            assert any("Anyone who can reach this server" in w.value for w in at.warning), page
            assert not at.exception
    finally:
        config.set_option("server.address", old)


def test_a_background_job_works_in_its_users_workspace(signin_secrets):
    import time

    from imgcls.train import runjobs
    from imgcls.store import runs
    from imgcls.train.run import TrainConfig, prepare_run
    from test_train import SMALL, make_dataset

    alice = access.user_root(access.User(subject="alice", issuer=ISSUER))
    with workspace.use(alice):
        make_dataset(per_class=6)
        run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=2, **SMALL))
        runjobs.start(run_id)
        deadline = time.monotonic() + 240
        while runs.read_status(run_id).get("state") not in ("done", "failed") and time.monotonic() < deadline:
            time.sleep(0.5)
        assert runs.read_status(run_id)["state"] == "done", runs.read_status(run_id)
        assert (runs.run_dir(run_id) / "model.safetensors").exists()
    server = workspace.server_root()
    assert not (server / "runs").exists() and not (server / "datasets").exists()
    assert (alice / "runs" / run_id / "model.safetensors").exists()
    assert (server / "jobs" / "queue.lock").exists()  # the device is taken in turns by the whole server
    assert not (alice / "jobs" / "queue").exists()  # the line is the server's; the user keeps only an index


def test_a_broken_operator_config_is_one_sentence_naming_the_file(app_home):
    from authhelpers import write_config

    path = write_config(app_home, 'public_url = "https://x.example.org"\nquota = 3\n')
    at = app_as(None)
    assert len(at.error) == 1 and str(path) in at.error[0].value and "quota" in at.error[0].value
    assert not at.exception


def test_publish_refuses_an_address_that_is_not_a_web_address(app_home):
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "imgcls", "publish", "some-run", "--base-url", "ftp://x"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "is not a web address" in proc.stderr
    assert not (app_home / "demos.json").exists()
