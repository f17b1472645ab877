"""Shared by the browser benchmarks: start `streamlit run app.py` of a checkout, drive it from headless
Chromium, time a click until the page has settled, and read a process tree's CPU time from /proc."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or "/usr/bin/chromium"
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TICKS = os.sysconf("SC_CLK_TCK")

# Installed in every page before Streamlit's own scripts. Every 10 ms it asks whether the page is busy:
# the script is not idle (stApp's data-test-script-state, set by Streamlit for its own end-to-end tests),
# an element is stale (drawn by an earlier run and not yet redrawn), a lazy element still shows its
# skeleton, or an image is still loading. It keeps when the page last became idle, whether it has been
# busy since the last mark, and when the user's last click or key happened.
SETTLE_JS = """
(() => {
  const s = window.__settle = {busy: 0, idleSince: null, actAt: null};
  const busyNow = () => {
    const app = document.querySelector('[data-testid="stApp"]');
    if (!app || app.getAttribute('data-test-script-state') !== 'notRunning') return true;
    if (document.querySelector('[data-stale="true"], [data-testid="stSkeleton"]')) return true;
    return Array.from(document.images).some((img) => !img.complete);
  };
  setInterval(() => {
    if (busyNow()) { s.busy += 1; s.idleSince = null; }
    else if (s.idleSince === null) { s.idleSince = performance.now(); }
  }, 10);
  for (const kind of ['pointerdown', 'keydown']) {
    window.addEventListener(kind, () => { s.actAt = performance.now(); }, true);
  }
  window.__mark = () => { s.busy = 0; s.actAt = null; return performance.now(); };
})();
"""


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def python_of(app_dir: Path) -> str:
    """The checkout's own virtual environment's Python when it has one (as the README sets it up)."""
    own = Path(app_dir) / ".venv" / "bin" / "python"
    return str(own) if own.exists() else sys.executable


def env_for(app_dir: Path, home: Path) -> dict:
    """The environment of a process of that checkout: its workspace, and its own imgcls before any installed one."""
    return dict(os.environ, IMGCLS_HOME=str(home), PYTHONPATH=str(app_dir), PYTHONUNBUFFERED="1")


def start_app(app_dir: Path, home: Path, *flags: str, log: Path | None = None) -> tuple[subprocess.Popen, str]:
    """`streamlit run app.py` in app_dir (so its .streamlit/config.toml applies) on a free port; (process, url)."""
    port = free_port()
    env = env_for(app_dir, home)
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    proc = subprocess.Popen([python_of(app_dir), "-m", "streamlit", "run", "app.py", "--server.port", str(port),
                             "--server.headless", "true", *flags], cwd=app_dir, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, proc)
    return proc, url


def wait_healthy(url: str, proc: subprocess.Popen, seconds: float = 90) -> None:
    """Wait until the server answers its health check."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"streamlit exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url + "/_stcore/health", timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"streamlit at {url} did not become healthy in {seconds:.0f} s")


def stop_app(proc: subprocess.Popen) -> None:
    """End the server and whatever it started (its own process group)."""
    if proc.poll() is None:
        os.killpg(proc.pid, 15)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()


def launch(pw):
    """Headless Chromium as the test suite drives it."""
    return pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)


def new_page(browser, width: int = 1400, height: int = 1000):
    """A tab with the settle probe installed on every document it loads."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.add_init_script(SETTLE_JS)
    return page


def settled(page, action, quiet_ms: int = 300, timeout_s: float = 180) -> float:
    """Seconds from the user's event in `action` (a click, a key, an upload) until the page is idle again.

    Idle means: the script has finished, nothing is stale, every image has loaded, and it stays so for
    quiet_ms (which is not counted). The page must have been busy at least once after the event: an
    action that starts no rerun is an error, not a zero.
    """
    start = page.evaluate("window.__mark()")
    action()
    try:
        page.wait_for_function("() => window.__settle.busy > 0", timeout=10_000, polling=10)
    except Exception as exc:  # playwright's TimeoutError
        raise RuntimeError("the action started no rerun within 10 s") from exc
    page.wait_for_function(f"() => window.__settle.idleSince !== null"
                           f" && performance.now() - window.__settle.idleSince > {quiet_ms}",
                           timeout=timeout_s * 1000, polling=20)
    s = page.evaluate("window.__settle")
    begin = s["actAt"] if s["actAt"] is not None and s["actAt"] >= start else start
    return (s["idleSince"] - begin) / 1000


def wait_idle(page, quiet_ms: int = 300, timeout_s: float = 180) -> None:
    """Wait until the page is idle (without requiring a rerun first)."""
    page.wait_for_function(f"() => window.__settle && window.__settle.idleSince !== null"
                           f" && performance.now() - window.__settle.idleSince > {quiet_ms}",
                           timeout=timeout_s * 1000, polling=50)


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) used so far by a process, its live descendants and its reaped children."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        # after the name: state ppid … utime(12) stime(13) cutime(14) cstime(15), counted from state = 0
        table[int(entry.name)] = (int(fields[1]), sum(int(v) for v in fields[11:15]))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        if current in table:
            total += table[current][1]
            todo.extend(p for p, (ppid, _) in table.items() if ppid == current)
    return total / TICKS
