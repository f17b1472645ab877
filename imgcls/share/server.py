"""The demo-only server: a second Streamlit server whose one script (`demo_app.py`) shows published demos
and nothing else, so visitors on the network reach no page of the workspace. Without sign-in the main app
listens on 127.0.0.1 only and this server is what others open."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from imgcls.jobs import procs
from imgcls.share import demo
from imgcls.store import workspace

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "demo_app.py"
# Per uploaded file, in MB: a phone photo is 2-12 MB. The demo server refuses bigger uploads before it keeps
# them in memory; the demo view (imgcls.ui.demo) refuses them too when the app itself serves a demo.
MAX_UPLOAD_MB = 20


def _record() -> Path:
    return workspace.server_root() / "demo-server.json"


def _env() -> dict:
    env = dict(os.environ, IMGCLS_HOME=str(workspace.server_root()))
    env.pop("IMGCLS_SERVER_HOME", None)
    return env


def command(port: int = demo.DEMO_PORT, address: str = "0.0.0.0") -> list[str]:
    """The command line that serves the demos.

    The settings a public server must have are given here rather than only in .streamlit/config.toml: the
    demo server's upload limit differs from the app's, and these hold even where that file is not read
    (an installed copy without it, an operator's own config elsewhere)."""
    return [sys.executable, "-m", "streamlit", "run", str(SCRIPT), "--server.port", str(port),
            "--server.address", address, "--server.headless", "true",
            "--server.maxUploadSize", str(MAX_UPLOAD_MB),
            "--client.showErrorDetails", "none",  # visitors see no traceback or server path
            "--browser.gatherUsageStats", "false",  # the page sends nothing to any other server
            "--server.fileWatcherType", "none"]  # nobody edits the code under a running demo server


def serve(port: int = demo.DEMO_PORT, address: str = "0.0.0.0") -> int:
    """Serve the demos in this process until it is stopped (the CLI's `serve-demo`)."""
    workspace.atomic_write_json(_record(), {"pid": os.getpid(), "pid_started": procs.started_at(os.getpid()),
                                            "port": port, "address": address})
    env = _env()
    if hasattr(os, "execve"):  # the recorded pid becomes Streamlit's own
        os.execve(sys.executable, command(port, address), env)
    return subprocess.call(command(port, address), env=env, cwd=ROOT)


def start(port: int = demo.DEMO_PORT) -> int:
    """Start the demo server in the background (from the Publish panel); returns its pid."""
    pid, started = procs.spawn(procs.python_argv("serve-demo", "--port", str(port)), Path(os.devnull), _env(), ROOT)
    workspace.atomic_write_json(_record(), {"pid": pid, "pid_started": started, "port": port, "address": "0.0.0.0"})
    return pid


def status() -> dict | None:
    """The running demo server's pid, port and address, or None."""
    record = workspace.read_json(_record(), None)
    if not record or not procs.alive(record.get("pid"), record.get("pid_started")):
        return None
    return record
