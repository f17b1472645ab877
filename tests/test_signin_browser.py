"""Sign-in in a real browser with a real OpenID provider: signed-out visitors see only the sign-in screen,
two signed-in people never see each other's datasets, images or runs, and a demo link shows one run's
predict view to an anonymous visitor and nothing else.

One app server and one browser serve the whole module; each person has a browser context of their own.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from signin_helpers import (CHROMIUM, CHROMIUM_FLAGS, ROOT, App, app_text, class_zip, colour_png, open_page,
                            new_page, options_of, rerun_after, run_app, sign_in)

# CI sets IMGCLS_REQUIRE_BROWSER=1 so a missing browser fails there instead of skipping silently
if not CHROMIUM and not os.environ.get("IMGCLS_REQUIRE_BROWSER"):
    pytest.skip("no Chromium installed (apt-get install chromium)", allow_module_level=True)
if not os.environ.get("IMGCLS_REQUIRE_BROWSER"):
    pytest.importorskip("oidc_provider_mock")
playwright = pytest.importorskip("playwright.sync_api")

PAGES = ["/", "/data", "/review", "/augment", "/train", "/evaluate", "/learn"]
RED, BLUE, GREEN, AMBER = (220, 40, 40), (40, 40, 220), (40, 200, 60), (230, 170, 20)
NOT_FOUND = ("Page not found", "You have requested page")


@dataclass
class Person:
    """One signed-in person, their browser tab and what they made."""

    sub: str
    name: str
    email: str
    dataset: str
    classes: dict
    per_class: int
    page: object = None
    root: Path | None = None  # their workspace folder under IMGCLS_HOME/users
    run_id: str = ""
    run_name: str = ""

    @property
    def private(self) -> list[str]:
        """Text on screen that only this person may see: dataset and class names, run id and name."""
        return [self.dataset, *self.classes, *[t for t in (self.run_id, self.run_name) if t]]


@dataclass
class World:
    """The running app, the browser, the two people, and every browser context opened so far."""

    app: App
    browser: object
    a: Person
    b: Person
    contexts: list = field(default_factory=list)

    def anonymous_page(self):
        """A tab in a fresh browser context: no cookies, nobody signed in."""
        page = new_page(self.browser)
        self.contexts.append(page.context)
        return page


def _import_zip(page, app: App, archive: Path, dataset: str) -> None:
    """On the Data page, upload a ZIP of class folders (its file name is the dataset's name) and import it."""
    open_page(page, app.url + "/data")
    uploader = page.locator("[data-testid='stFileUploader']").filter(has_text="ZIP file").first
    rerun_after(page, lambda: uploader.locator("input[type='file']").set_input_files(str(archive)))
    rerun_after(page, lambda: page.get_by_role("button", name="Import ZIP").click(), seconds=120)
    page.get_by_text(f"Overview of {dataset}").first.wait_for(timeout=60_000)


def _workspace_of(home: Path, sub: str) -> Path:
    """The one folder under IMGCLS_HOME/users whose sign-in card names this account."""
    found = [p for p in (home / "users").iterdir()
             if json.loads((p / "user.json").read_text()).get("subject") == sub]
    assert len(found) == 1, f"{len(found)} workspaces for {sub}: {found}"
    return found[0]


def _train_linear(root: Path, dataset: str) -> tuple[str, str]:
    """A tiny linear run on a person's dataset, trained by the CLI inside their workspace: (id, name)."""
    done = subprocess.run(
        [sys.executable, "-m", "imgcls", "train", "--dataset", dataset, "--strategy", "linear", "--epochs", "10",
         "--img-size", "64", "--batch-size", "8", "--device", "cpu", "--json"],
        cwd=ROOT, env=dict(os.environ, IMGCLS_HOME=str(root)), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    (run_dir,) = (root / "runs").iterdir()
    return run_dir.name, result["name"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The app with sign-in, A and B signed in (each in a context of their own), each with a dataset made on
    the Data page, and a trained run of A's."""
    tmp = tmp_path_factory.mktemp("signin")
    a = Person("alice-sub", "Alice Able", "alice@example.org", "alpha-7f3q",
               {"alpha-ruby": RED, "alpha-cobalt": BLUE}, per_class=10)
    b = Person("bob-sub", "Bob Baker", "bob@example.org", "bravo-2k9w",
               {"bravo-jade": GREEN, "bravo-amber": AMBER}, per_class=5)
    with run_app(tmp) as app, playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        world = World(app, browser, a, b)
        try:
            for seed, person in enumerate((a, b)):
                person.page = world.anonymous_page()
                open_page(person.page, app.url + "/")
                sign_in(person.page, app, person.sub, person.name, person.email)
                archive = class_zip(tmp / f"{person.dataset}.zip", person.classes, person.per_class, seed * 100)
                _import_zip(person.page, app, archive, person.dataset)
                person.root = _workspace_of(app.home, person.sub)
            a.run_id, a.run_name = _train_linear(a.root, a.dataset)
            yield world
        except Exception:
            for i, context in enumerate(world.contexts):
                for page in context.pages:
                    page.screenshot(path=str(tmp / f"failed-{i}.png"), full_page=True)
            print(app.log_tail())
            raise
        finally:
            browser.close()


@contextlib.contextmanager
def _shot_on_failure(page, url: str):
    """A failure inside the block names the address and keeps a screenshot of what the page showed."""
    try:
        yield
    except Exception as exc:
        where = url.split("/", 3)[-1] or "home"  # the address without scheme and host
        path = Path(tempfile.gettempdir()) / f"imgcls-signin-{re.sub(r'[^A-Za-z0-9]+', '-', where)[:80]}.png"
        page.screenshot(path=str(path), full_page=True)
        raise AssertionError(f"{url}: {exc} (screenshot: {path})") from exc


def _assert_signin_screen(page, url: str, forbidden: list[str]) -> None:
    with _shot_on_failure(page, url):
        _check_signin_screen(page, url, forbidden)


def _check_signin_screen(page, url: str, forbidden: list[str]) -> None:
    """The address shows the sign-in screen and nothing else: no menu, no sidebar, no image, no names."""
    open_page(page, url)
    text = app_text(page)
    assert page.get_by_role("button", name="Sign in").count() == 1, f"no sign-in button; the page shows: {text[:300]!r}"
    assert page.locator("[data-testid='stSidebarNav']").count() == 0, "a page menu"
    assert page.locator("[data-testid='stSidebar']").count() == 0, "a sidebar"
    assert page.locator("[data-testid='stImage'], [data-testid='stFileUploader']").count() == 0, "an image or uploader"
    for words in ("Signed in as", "Try the classifier", *forbidden, *NOT_FOUND):
        assert words not in text, f"the page shows {words!r}"


def test_a_signed_out_visitor_sees_only_the_signin_screen(world):
    page = world.anonymous_page()
    forbidden = world.a.private + world.b.private
    for path in PAGES:
        for query in ("", f"?dataset={world.a.dataset}"):
            _assert_signin_screen(page, world.app.url + path + query, forbidden)


def _assert_own_workspace_only(me: Person, other: Person, url: str) -> None:
    with _shot_on_failure(me.page, url):
        _check_own_workspace_only(me, other, url)


def _check_own_workspace_only(me: Person, other: Person, url: str) -> None:
    page = me.page
    open_page(page, url)
    page.get_by_text(f"Signed in as {me.name}").first.wait_for(timeout=30_000)
    page.get_by_role("heading", level=1).first.wait_for(timeout=30_000)
    text = app_text(page)
    # the page really drew a workspace (its dataset picker shows my dataset), and it is mine only
    assert me.dataset in text, f"{me.name} does not see their own dataset"
    for words in (*other.private, *NOT_FOUND):
        assert words not in text, f"{me.name} sees {words!r}"
    # the sidebar's picker offers my datasets, and only mine
    assert options_of(page, "Active dataset") == [me.dataset]


def _assert_no_run_shown(me: Person, other: Person, url: str) -> None:
    """An address naming another person's run opens nothing of it (the page drawn is my own workspace's or
    the demo link's "not available", never the other's run)."""
    with _shot_on_failure(me.page, url):
        _check_no_run_shown(me, other, url)


def _check_no_run_shown(me: Person, other: Person, url: str) -> None:
    page = me.page
    open_page(page, url)
    text = app_text(page)
    assert "Try the classifier" not in text
    assert f"Signed in as {me.name}" in text or "not available" in text, f"it drew nothing: {text[:300]!r}"
    for words in other.private:
        assert words not in text, f"{me.name} sees {words!r}"


@pytest.mark.parametrize("me,other", [("b", "a"), ("a", "b")])
def test_signed_in_people_see_only_their_own_workspace(world, me, other):
    me, other = getattr(world, me), getattr(world, other)
    base = world.app.url
    for path in PAGES:
        _assert_own_workspace_only(me, other, f"{base}{path}?dataset={other.dataset}")
    # the Data page's grid shows my first class's images, none of the other person's
    open_page(me.page, f"{base}/data")
    tiles = me.page.locator("[class*='st-key-data-tile-']")
    tiles.first.wait_for(timeout=60_000)
    assert tiles.count() == me.per_class
    if other.run_id:
        for path in ("/", "/train", "/evaluate"):
            _assert_no_run_shown(me, other, f"{base}{path}?run={other.run_id}&dataset={other.dataset}")


def test_each_persons_dataset_is_in_their_own_folder(world):
    a, b, home = world.a, world.b, world.app.home
    assert a.root != b.root and a.root.parent == b.root.parent == home / "users"
    assert (a.root / "datasets" / a.dataset / "manifest.csv").is_file()
    assert (b.root / "datasets" / b.dataset / "manifest.csv").is_file()
    assert not (a.root / "datasets" / b.dataset).exists() and not (b.root / "datasets" / a.dataset).exists()
    assert not (home / "datasets" / a.dataset).exists() and not (home / "datasets" / b.dataset).exists()
    assert (a.root / "runs" / a.run_id / "model.safetensors").is_file()
    assert not (b.root / "runs").is_dir() or not any((b.root / "runs").iterdir())


def _publish(world, monkeypatch) -> str:
    """Publish A's run as a demo, as the engine does it inside A's workspace; returns the token."""
    from imgcls.share import demo
    from imgcls.store import workspace

    monkeypatch.setenv("IMGCLS_HOME", str(world.app.home))  # the server-wide registry lives there
    with workspace.use(world.a.root):
        return demo.publish(world.a.run_id)


def test_a_demo_link_shows_only_the_predict_view(world, monkeypatch):
    a, base = world.a, world.app.url
    token = _publish(world, monkeypatch)
    page = world.anonymous_page()
    url = f"{base}/?demo={token}"
    with _shot_on_failure(page, url):
        open_page(page, url)
        page.get_by_role("heading", name="Try the classifier").wait_for(timeout=60_000)
        assert page.locator("[data-testid='stSidebarNav'], [data-testid='stSidebar']").count() == 0
        uploader = page.locator("[data-testid='stFileUploader'] input[type='file']").first
        rerun_after(page, lambda: uploader.set_input_files(
            files=[{"name": "visitor.png", "mimeType": "image/png", "buffer": colour_png(RED, 999)}]), seconds=180)
        # the model's answer for a red photo: the red class, in bold
        answer = page.locator("[data-testid='stMarkdown'] strong").filter(has_text=re.compile(r"^alpha-ruby$"))
        answer.first.wait_for(timeout=60_000)
        text = app_text(page)
        assert "visitor.png" in text
        for words in NOT_FOUND:
            assert words not in text
    # the same visitor, anywhere else in the app, is only a signed-out visitor
    for url in (f"{base}/", f"{base}/data", f"{base}/evaluate?dataset={a.dataset}"):
        _assert_signin_screen(page, url, a.private)
    # an address naming the run itself is an old-style demo link: it opens nothing, on any page
    for url in (f"{base}/evaluate?run={a.run_id}", f"{base}/?run={a.run_id}", f"{base}/demo?run={a.run_id}"):
        _assert_not_available(page, url, [*a.private, "Try the classifier"])


def _assert_not_available(page, url: str, forbidden: list[str]) -> None:
    """The plain "demo not available" page, with no uploader, sidebar, image or names."""
    with _shot_on_failure(page, url):
        open_page(page, url)
        text = app_text(page)
        assert "not available" in text, text[:300]
        assert page.locator("[data-testid='stFileUploader'], [data-testid='stSidebar'], "
                            "[data-testid='stImage']").count() == 0
        for words in ("Traceback", *forbidden, *NOT_FOUND):
            assert words not in text, f"the page shows {words!r}"


def test_an_unknown_demo_token_shows_a_plain_not_available_page(world):
    page = world.anonymous_page()
    _assert_not_available(page, f"{world.app.url}/?demo={secrets.token_urlsafe(24)}",
                          ["Try the classifier", *world.a.private])


def test_the_admin_page_refuses_a_plain_user_in_plain_words(world):
    page, url = world.b.page, f"{world.app.url}/admin"
    with _shot_on_failure(page, url):
        open_page(page, url)
        text = app_text(page)
        assert "This page is for the server's administrators" in text
        assert "Page not found" not in text and world.a.name not in text and world.a.email not in text
        assert page.get_by_role("link", name="Admin").count() == 0  # not in a plain user's menu
