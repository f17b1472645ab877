"""Shareable demos: a run's predict view behind an unguessable token, revocable and optionally expiring.

One registry for the whole server (`IMGCLS_HOME/demos.json`) maps each token to the workspace and run it
opens, so an anonymous visitor's link leads to exactly one run and nothing else. The link is
`<base>/?demo=<token>`: at the root of the address, so Streamlit's page routing has nothing to look up.
"""

from __future__ import annotations

import datetime
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

from imgcls.store import access, runs, workspace

DEMO_PORT = 8502
QUERY = "demo"
_TOKEN_BYTES = 24  # 192 random bits: no naming scheme to guess from


@dataclass(frozen=True)
class Demo:
    """What a valid token opens: one run of one workspace."""

    token: str
    root: Path
    run_id: str
    expires: str | None


def _path() -> Path:
    return workspace.server_root() / "demos.json"


def _locked():
    """One writer of the registry at a time (two tabs publishing at once lose nothing)."""
    return workspace.file_lock("demos.lock", root=workspace.server_root())


def _entries() -> dict:
    return dict(workspace.read_json(_path(), {}).get("tokens", {}))


def _owner() -> str:
    """The current workspace, as the registry records it (relative to IMGCLS_HOME)."""
    rel = workspace.home().relative_to(workspace.server_root())
    return rel.as_posix()


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def _expired(entry: dict) -> bool:
    expires = entry.get("expires")
    return bool(expires) and datetime.datetime.fromisoformat(expires) <= _now()


def token_of(run_id: str | None) -> str | None:
    """The live token of one of this workspace's runs, if its demo is published."""
    owner = _owner()
    for token, entry in _entries().items():
        if entry.get("owner") == owner and entry.get("run") == run_id and not _expired(entry):
            return token
    return None


def expiry_of(run_id: str) -> str | None:
    """When the demo of a run stops working (ISO time, UTC), or None if it does not expire."""
    token = token_of(run_id)
    return _entries().get(token, {}).get("expires") if token else None


def published() -> list[str]:
    """Ids of this workspace's runs whose demo link works."""
    owner = _owner()
    return sorted({e["run"] for e in _entries().values() if e.get("owner") == owner and not _expired(e)})


def is_published(run_id: str | None) -> bool:
    """Whether one of this workspace's runs has a working demo link."""
    return bool(run_id) and token_of(run_id) is not None


def publish(run_id: str, expires_days: float | None = None) -> str:
    """Give a run with a saved model (finished, or stopped early after saving one) a demo link; returns its
    token. Publishing again keeps the token and only changes the expiry."""
    config = workspace.read_json(runs.run_dir(run_id) / "config.json", {}) or {}
    if not runs.usable(run_id, config, runs.read_status(run_id)):
        raise workspace.WorkspaceError("Only a run with a saved model (finished, or stopped early after saving "
                                       "one) can be shared as a demo.")
    if expires_days is not None and expires_days <= 0:
        raise workspace.WorkspaceError("A demo link has to stay open for some time: give a positive number of days.")
    expires = (_now() + datetime.timedelta(days=expires_days)).isoformat(timespec="seconds") if expires_days else None
    owner = _owner()
    with _locked():
        entries = {t: e for t, e in _entries().items() if not _expired(e)}
        token = next((t for t, e in entries.items() if e.get("owner") == owner and e.get("run") == run_id), None)
        token = token or secrets.token_urlsafe(_TOKEN_BYTES)
        entries[token] = {"owner": owner, "run": run_id, "expires": expires,
                          "created": entries.get(token, {}).get("created") or _now().isoformat(timespec="seconds")}
        workspace.atomic_write_json(_path(), {"tokens": entries})
    return token


def unpublish(run_id: str) -> int:
    """Revoke every demo link of one of this workspace's runs; returns how many were revoked."""
    owner = _owner()
    with _locked():
        entries = _entries()
        keep = {t: e for t, e in entries.items() if not (e.get("owner") == owner and e.get("run") == run_id)}
        if len(keep) != len(entries):
            workspace.atomic_write_json(_path(), {"tokens": keep})
    return len(entries) - len(keep)


def open_demo(token: str | None) -> Demo | None:
    """What a link's token opens, or None if it is unknown, revoked, expired or its run is gone."""
    if not token or not isinstance(token, str) or len(token) > 100:
        return None
    entry = _entries().get(token)
    if not entry or _expired(entry):
        return None
    root = (workspace.server_root() / entry.get("owner", "")).resolve()
    if not access.is_inside(root, workspace.server_root()):
        return None
    with workspace.use(root):
        run_id = entry.get("run", "")
        try:
            config = workspace.read_json(runs.run_dir(run_id) / "config.json", None)
        except workspace.WorkspaceError:
            return None
        if not config or not runs.usable(run_id, config, runs.read_status(run_id)):
            return None
    return Demo(token=token, root=root, run_id=run_id, expires=entry.get("expires"))


def link(token: str, base: str) -> str:
    """The address to share."""
    return f"{base.rstrip('/')}/?{QUERY}={token}"


def guess_base_url(port: int = DEMO_PORT) -> str:
    """This machine's address on its network with the demo server's port, as a first guess for the link
    (the owner or the operator sets the real public address)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("10.255.255.255", 1))  # picks the outgoing interface; sends nothing
            host = probe.getsockname()[0]
    except OSError:
        host = socket.gethostname() or "127.0.0.1"
    return f"http://{host}:{port}"
