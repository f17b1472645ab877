"""Real-browser smoke test: headless Chromium drives `streamlit run app.py` as a user would."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
# CI sets IMGCLS_REQUIRE_BROWSER=1 so a missing browser fails there instead of skipping silently
if not CHROMIUM and not os.environ.get("IMGCLS_REQUIRE_BROWSER"):
    pytest.skip("no Chromium installed (apt-get install chromium)", allow_module_level=True)
playwright = pytest.importorskip("playwright.sync_api")

CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("streamlit did not become healthy")


@pytest.fixture
def app_url(tmp_path):
    port = _free_port()
    env = dict(os.environ, IMGCLS_HOME=str(tmp_path / "ws"))
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", str(ROOT / "app.py"), "--server.port", str(port),
         "--server.headless", "true", "--server.fileWatcherType", "none"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, proc)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_home_sample_import_counts(app_url, tmp_path):
    assert CHROMIUM, "Chromium is required here (IMGCLS_REQUIRE_BROWSER is set)"
    with playwright.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url, wait_until="domcontentloaded")
        page.get_by_role("button", name="Start with a sample").click(timeout=60_000)
        # the sample lands on the Data page, whose overview counts its images and classes
        images = page.locator("[data-testid='stMetric']").filter(has_text="Images").first
        images.wait_for(timeout=90_000)
        assert "500" in images.inner_text()
        classes = page.locator("[data-testid='stMetric']").filter(has_text="Classes").first
        assert "5" in classes.inner_text()
        page.get_by_text("Overview of shapes").first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "data.png"), full_page=True)
        # the Review page of the same dataset: its gallery shows the sample's images, none yet excluded
        page.get_by_role("link", name="Review").first.click()
        page.get_by_role("button", name="Check my dataset").first.wait_for(timeout=60_000)
        page.get_by_text("0 selected").first.wait_for(timeout=30_000)
        page.screenshot(path=str(tmp_path / "review.png"), full_page=True)
        browser.close()
