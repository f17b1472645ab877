"""No request leaves the machine from the pages a stranger can open: the demo server's page (a photo
predicted, and an unknown link) and the sign-in screen of an app with sign-in, until it hands over to the provider's page.

The demo server is started from another folder, as `serve-demo` may be; its command turns usage
statistics off itself (with them on, the page fetches https://data.streamlit.io/metrics.json).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_browser import CHROMIUM, CHROMIUM_FLAGS, PROBE_ERROR, _free_port, _idle, _wait_healthy

if not CHROMIUM and not os.environ.get("IMGCLS_REQUIRE_BROWSER"):
    pytest.skip("no Chromium installed (apt-get install chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")

ROOT = Path(__file__).resolve().parents[2]
LOCAL = ("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:", "about:")


class Watch:
    """Every request of a tab that goes anywhere but this machine, every failed response, every console
    error."""

    def __init__(self, page, not_ours: str = "\0"):
        # not_ours: the address of pages that are not the app's (the OpenID provider's, which in real use is
        # another organisation's server anyway); what they fetch is theirs
        self.seen, self.outside, self.failed, self.errors = [], [], [], []
        page.on("request", lambda r: self.seen.append(r.url))
        page.on("request", lambda r: self.outside.append(r.url)
                if not r.url.startswith(LOCAL) and not r.frame.url.startswith(not_ours) else None)
        page.on("response", lambda r: self.failed.append(r.url)
                if r.status >= 400 and not r.frame.url.startswith(not_ours) else None)
        page.on("console", lambda m: self.errors.append(m.text)
                if m.type == "error" and not page.url.startswith(not_ours) else None)

    def assert_clean(self, local: str) -> None:
        assert any(u.startswith(local) for u in self.seen), self.seen  # the watch saw the page's own requests
        assert self.outside == [], self.outside
        assert self.failed == [], self.failed
        assert [e for e in self.errors if not e.startswith(PROBE_ERROR)] == [], self.errors


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory):
    """A published demo served by `python -m imgcls serve-demo` started outside the checkout."""
    from test_demo import published_tiny_run

    tmp = tmp_path_factory.mktemp("offline-demo")
    home, elsewhere = tmp / "ws", tmp / "elsewhere"
    elsewhere.mkdir()
    run_id, token = published_tiny_run(home)
    port = _free_port()
    env = dict(os.environ, IMGCLS_HOME=str(home), PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "imgcls", "serve-demo", "--port", str(port), "--address",
                             "127.0.0.1"], cwd=elsewhere, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url, token
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_demo_page_fetches_nothing_from_outside_the_machine(demo_server, tmp_path):
    from test_train import _png

    url, token = demo_server
    photo = tmp_path / "red.png"
    photo.write_bytes(_png((220, 40, 40), 99))
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page()
        watch = Watch(page)
        page.goto(f"{url}/?demo={token}", wait_until="domcontentloaded")
        page.get_by_role("heading", name="Try the classifier").wait_for(timeout=90_000)
        _idle(page)
        page.locator("[data-testid='stFileUploaderDropzoneInput']").set_input_files(str(photo))
        page.get_by_role("heading", name="red.png").wait_for(timeout=90_000)
        _idle(page, 90)
        page.goto(f"{url}/?demo=no-such-link", wait_until="domcontentloaded")
        page.get_by_role("heading", name="Demo not available").wait_for(timeout=60_000)
        _idle(page)
        page.wait_for_timeout(2000)  # anything sent late (usage statistics go out after the page loads)
        browser.close()
    watch.assert_clean(url)


def test_the_signin_screen_fetches_nothing_from_outside_the_machine(tmp_path):
    pytest.importorskip("oidc_provider_mock")
    from signin_helpers import open_page, run_app

    with run_app(tmp_path) as app, playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_context().new_page()
        watch = Watch(page, not_ours=app.provider.url)
        open_page(page, app.url + "/")
        assert page.get_by_role("button", name="Sign in").count() == 1
        page.get_by_role("button", name="Sign in").first.click(timeout=60_000)
        page.wait_for_url(f"{app.provider.url}/oauth2/authorize**", timeout=60_000)  # the provider's page
        page.locator("input[name='sub']").wait_for(timeout=30_000)
        page.wait_for_timeout(2000)
        browser.close()
    watch.assert_clean(app.url)
