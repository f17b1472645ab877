"""Real sign-in for the browser tests: an OpenID provider (oidc-provider-mock) in a thread of the test
process, the app started with an [auth] section that points at it, and `sign_in`, which goes through the
provider's own authorize page in the browser exactly as a person would.

The provider accepts any client id and secret and any redirect address, and its authorize page asks only
for the account's `sub`; the other claims (name, e-mail) are set beforehand with its `PUT /users/<sub>`.
The app reads its secrets from a temporary file given with `--secrets.files`, so the checkout's own
`.streamlit/config.toml` still applies and nothing is written into the repository.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# the browser and server helpers the smoke tests use (re-exported for test_signin_browser)
from test_browser import CHROMIUM, CHROMIUM_FLAGS, IDLE_JS, _wait_healthy  # noqa: F401
from test_browser import _free_port as free_port

ROOT = Path(__file__).resolve().parents[1]
CLIENT_ID = "imgcls-tests"

# Installed in every page: counts the messages the app's server sends over its WebSocket and when the last
# one came. A script run always sends some, so a test can wait for the run its action caused and not race
# it: Streamlit's own running/notRunning marker alone can miss a short run (both states drawn in one frame).
WS_JS = """
(() => {
  const seen = window.__ws = {msgs: 0, last: 0};
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener('message', () => { seen.msgs += 1; seen.last = performance.now(); });
    }
  };
})();
"""


@dataclass
class Provider:
    """The OpenID provider the app signs people in with."""

    url: str  # also the issuer of its ID tokens

    @property
    def metadata_url(self) -> str:
        """Where its discovery document is (server_metadata_url in [auth])."""
        return f"{self.url}/.well-known/openid-configuration"

    def set_user(self, sub: str, name: str, email: str) -> None:
        """Give the account `sub` its claims, as the provider's ID token will carry them."""
        body = json.dumps({"name": name, "email": email}).encode()
        request = urllib.request.Request(f"{self.url}/users/{sub}", data=body, method="PUT",
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 204, response.status


@contextlib.contextmanager
def run_provider():
    """oidc-provider-mock on a free port, in a thread; yields a Provider, then stops it."""
    from oidc_provider_mock import run_server_in_thread

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one log line per request otherwise
    with run_server_in_thread(port=0) as server:
        yield Provider(f"http://127.0.0.1:{server.server_port}")


def write_secrets(path: Path, app_port: int, provider: Provider) -> Path:
    """A secrets.toml whose [auth] section signs people in with `provider` on the app at `app_port`."""
    path.write_text(
        "[auth]\n"
        f'redirect_uri = "http://127.0.0.1:{app_port}/oauth2callback"\n'
        f'cookie_secret = "{secrets.token_urlsafe(48)}"\n'
        f'client_id = "{CLIENT_ID}"\n'
        f'client_secret = "{secrets.token_urlsafe(24)}"\n'
        f'server_metadata_url = "{provider.metadata_url}"\n')
    return path


@dataclass
class App:
    """A running `streamlit run app.py` with sign-in."""

    url: str
    home: Path
    provider: Provider
    log: Path
    proc: subprocess.Popen

    def log_tail(self, chars: int = 4000) -> str:
        """The end of the server's output, for a failure message."""
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else ""


def _stop(proc: subprocess.Popen) -> None:
    """End the server and whatever it started (background jobs share its process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


@contextlib.contextmanager
def run_app(tmp: Path, script: Path = ROOT / "app.py"):
    """The provider, a secrets file for it and the app (or another Streamlit script) with its own
    IMGCLS_HOME, all under `tmp`; yields an App and stops everything afterwards."""
    home, log = tmp / "ws", tmp / "streamlit.log"
    with run_provider() as provider:
        port = free_port()
        secrets_file = write_secrets(tmp / "secrets.toml", port, provider)
        env = dict(os.environ, IMGCLS_HOME=str(home), PYTHONUNBUFFERED="1")
        env.pop("IMGCLS_CONFIG", None)
        with open(log, "w") as out:
            # cwd is the checkout, so its .streamlit/config.toml applies; only the secrets come from tmp
            proc = subprocess.Popen(
                [sys.executable, "-m", "streamlit", "run", str(script), "--server.port", str(port),
                 "--server.address", "127.0.0.1", "--server.headless", "true",
                 "--server.fileWatcherType", "none", "--secrets.files", str(secrets_file)],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        app = App(f"http://127.0.0.1:{port}", home, provider, log, proc)
        try:
            _wait_healthy(app.url, proc, 120, log)
            yield app
        finally:
            _stop(proc)


def wait_idle(page, seconds: float = 90) -> None:
    """Until the app's script run has finished and nothing on the page is stale."""
    page.wait_for_function(IDLE_JS, timeout=seconds * 1000)


def new_page(browser, width: int = 1400, height: int = 1000):
    """A tab in a browser context of its own (its own cookies: nobody signed in), counting the server's
    messages."""
    context = browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(WS_JS)
    return context.new_page()


def _settled_after(page, before: int, seconds: float, quiet_ms: int = 300) -> None:
    """Until the server has sent something since `before` messages, then nothing for quiet_ms, and the
    page is idle."""
    page.wait_for_function(f"() => window.__ws.msgs > {before} && performance.now() - window.__ws.last > {quiet_ms}"
                           f" && ({IDLE_JS})()", timeout=seconds * 1000, polling=50)


def rerun_after(page, action, seconds: float = 90) -> None:
    """Do `action` (a click, an upload) and wait until the script run it caused has finished (pages made
    by `new_page` only)."""
    before = page.evaluate("window.__ws.msgs")
    action()
    _settled_after(page, before, seconds)


def open_page(page, url: str, seconds: float = 90) -> None:
    """Load an address of the app and wait until its first script run has finished."""
    page.goto(url, wait_until="domcontentloaded")
    _wait_loaded(page, seconds)


def _wait_loaded(page, seconds: float = 90) -> None:
    """Until a freshly loaded page of the app has finished its first script run."""
    if page.evaluate("window.__ws === undefined"):  # a page without the counter: Streamlit's marker only
        page.locator("[data-testid='stApp']").wait_for(timeout=seconds * 1000)
        wait_idle(page, seconds)
    else:
        _settled_after(page, 0, seconds)


def sign_in(page, app: App, sub: str, name: str, email: str) -> None:
    """Sign in as `sub` (with that name and e-mail) from the app's sign-in screen, through the provider's
    authorize page; returns once the app shows "Signed in as <name>"."""
    app.provider.set_user(sub, name=name, email=email)
    if not page.url.startswith(app.url):
        open_page(page, app.url + "/")
    page.get_by_role("button", name="Sign in").first.click(timeout=60_000)
    page.wait_for_url(f"{app.provider.url}/oauth2/authorize**", timeout=60_000)
    page.locator("input[name='sub']").fill(sub)
    page.get_by_role("button", name="Authorize").click()
    page.wait_for_url(f"{app.url}/**", timeout=60_000)
    page.get_by_text(f"Signed in as {name}").first.wait_for(timeout=90_000)
    _wait_loaded(page)


def app_text(page) -> str:
    """Everything the page shows as text, dialogs included, and the values shown in its input fields (a
    selectbox shows its choice as an input's value, which the page's text leaves out)."""
    return page.evaluate("() => [document.body.innerText, ...Array.from(document.querySelectorAll("
                         "'input, textarea'), (e) => e.value)].join('\\n')")


def options_of(page, label: str) -> list[str]:
    """The choices a selectbox offers, read from its open list (closed again afterwards)."""
    box = page.get_by_role("combobox", name=label, exact=True).first
    box.click()
    listbox = page.get_by_role("listbox").first
    listbox.wait_for(timeout=10_000)
    choices = [text.strip() for text in listbox.get_by_role("option").all_inner_texts()]
    page.keyboard.press("Escape")
    listbox.wait_for(state="hidden", timeout=10_000)
    return choices


# --- generated images -------------------------------------------------------------------------


def colour_png(colour, seed: int, spread: int = 40, side: int = 48) -> bytes:
    """A small PNG of one colour with pixel noise: every seed differs, all of a colour look alike."""
    rng = np.random.default_rng(seed)
    arr = np.clip(np.array(colour, dtype=np.int16) + rng.integers(-spread, spread, (side, side, 3)), 0, 255)
    buf = io.BytesIO()
    Image.fromarray(arr.astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def class_zip(path: Path, classes: dict[str, tuple[int, int, int]], per_class: int, seed: int = 0) -> Path:
    """A ZIP with one folder per class of `per_class` noisy images of that class's colour."""
    with zipfile.ZipFile(path, "w") as zf:
        for label, colour in classes.items():
            for i in range(per_class):
                zf.writestr(f"{label}/{i:03d}.png", colour_png(colour, seed))
                seed += 1
    return path
