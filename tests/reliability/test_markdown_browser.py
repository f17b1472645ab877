"""In a real browser, class names and notes written as Markdown stay text: the planted image is never
fetched, the link never drawn, the bold never bold, on the Data and Review pages."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from test_browser import CHROMIUM, CHROMIUM_FLAGS, _free_port, _idle, _wait_healthy

from imgcls.ingest import imports as data
from imgcls.store import workspace
from imgcls.store.markdown import JOINER

if not CHROMIUM and not os.environ.get("IMGCLS_REQUIRE_BROWSER"):
    pytest.skip("no Chromium installed (apt-get install chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tracker():
    """A web server on this machine that counts every request made to it (a tracking pixel's server)."""
    hits: list[str] = []

    class Count(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the name http.server calls
            hits.append(self.path)
            self.send_response(404)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", _free_port()), Count)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", hits
    server.shutdown()


@pytest.fixture
def hostile_app(tmp_path, tracker, mk):
    """`streamlit run app.py` on a workspace whose classes and notes are Markdown pointing at the tracker."""
    base, _ = tracker
    home = tmp_path / "ws"
    with workspace.use(home):
        data.import_zip(mk.zip(mk.class_members({"**bold**": 3, ":red[alarm]": 3, "x": 3})), "d")
        df = workspace.read_manifest("d")  # a '/' no longer comes in through an import: a dataset from before
        df.loc[df["label"] == "x", "label"] = f"![t]({base}/track.png)"
        df["note"] = f"[click me]({base}/link) <img src='{base}/raw.png'>"
        workspace.write_manifest(workspace.dataset_dir("d"), df)
        workspace.save_setting("active_dataset", "d")
    port, log = _free_port(), tmp_path / "streamlit.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.headless", "true", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=dict(os.environ, IMGCLS_HOME=str(home)), stdout=log.open("w"),
        stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc, seconds=90, log=log)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_markdown_in_class_names_is_shown_as_typed(hostile_app, tracker):
    base, hits = tracker
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        # the probe works: the same browser does fetch the image when a page really holds it
        page.set_content(f"<img src='{base}/probe.png'>")
        page.wait_for_timeout(500)
        assert hits == ["/probe.png"]
        for path, ready in (("/data", "Overview of d"), ("/review", "Images 1–9 of 9")):
            page.goto(hostile_app + path, wait_until="domcontentloaded")
            page.get_by_text(ready).first.wait_for(timeout=90_000)
            _idle(page, 90)
            page.wait_for_timeout(1000)
            text = page.inner_text("body").replace(JOINER, "")  # the joiner that keeps a bare link text
            assert f"![t]({base}/track.png)" in text, f"the class is not shown as typed on {path}"
            links = page.locator(f"a[href^='{base}']")
            assert links.count() == 0, [links.nth(i).evaluate("e => e.parentElement.parentElement.outerHTML")
                                        for i in range(links.count())]
            assert page.locator("strong", has_text="bold").count() == 0
        browser.close()
    assert hits == ["/probe.png"], f"the pages fetched {hits[1:]} from the planted links"
