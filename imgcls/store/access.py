"""Who may read or change what: the operator's config, signed-in users and their workspaces, roles, and the
server folders an import may read.

The operator edits one TOML file, `IMGCLS_HOME/imgcls.toml` (or the file IMGCLS_CONFIG names); every key is
optional. With sign-in, each user's workspace is `IMGCLS_HOME/users/<key>`, where the key is derived from the
provider's issuer and stable subject (never from a display name or an e-mail address, which can change or be
reused); `workspace.home()` answers with it for every call made on that user's behalf.
"""

from __future__ import annotations

import hashlib
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from imgcls.store import workspace

CONFIG_NAME = "imgcls.toml"
# Roles a user can hold, weakest first. A teacher may also make classes; an admin may do anything.
ROLES = ("user", "teacher", "admin")
USERS_DIR = "users"


class ConfigError(workspace.WorkspaceError):
    """The operator's config file cannot be used; the message names the file and the reason."""


@dataclass(frozen=True)
class Quotas:
    """Limits per user. Generous for one person on a laptop, and thirty of them fit on one server's disk."""

    disk_gb: float = 10.0           # everything in the user's workspace: images, caches, runs
    images_per_dataset: int = 200_000  # as many as one import may bring (measured up to 100k: README)
    datasets: int = 30
    jobs_running: int = 2           # background jobs (training, health checks, experiments) running at once
    jobs_queued: int = 10           # jobs waiting in line or running at once; more are refused


@dataclass(frozen=True)
class ServerConfig:
    """The operator's settings (all optional)."""

    public_url: str = ""            # how other machines reach this app (demo links with sign-in)
    demo_url: str = ""              # how other machines reach the demo-only server (demo links without sign-in)
    import_roots: tuple[str, ...] | None = None  # None: not set (anywhere for one person, nowhere with sign-in)
    roles: dict = field(default_factory=dict)    # role → subjects or e-mail addresses
    quotas: Quotas = Quotas()
    ray_address: str = ""           # a Ray cluster to run jobs on ("auto", "10.0.0.5:6379"); "" runs them here


def config_path() -> Path:
    """Where the operator's config lives."""
    named = os.environ.get("IMGCLS_CONFIG", "").strip()
    return Path(named).expanduser() if named else workspace.server_root() / CONFIG_NAME


_cache: dict = {}


def load_config() -> ServerConfig:
    """The operator's config, read again only when the file changes; a missing file means the defaults."""
    path = config_path()
    try:
        stat = path.stat()
    except FileNotFoundError:
        return ServerConfig()
    key = (str(path), stat.st_mtime_ns, stat.st_size)
    if _cache.get("key") != key:
        _cache.update(key=key, value=_parse(path))
    return _cache["value"]


def _parse(path: Path) -> ServerConfig:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"The imgcls config file {path} cannot be read: {exc}") from None
    known = {"public_url", "demo_url", "import_roots", "roles", "quotas", "ray_address"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"The imgcls config file {path} has settings imgcls does not know: "
                          f"{', '.join(unknown)} (known: {', '.join(sorted(known))}).")
    roots = data.get("import_roots")
    if roots is not None and not (isinstance(roots, list) and all(isinstance(r, str) for r in roots)):
        raise ConfigError(f"In {path}, import_roots must be a list of folder paths.")
    roles = data.get("roles", {})
    if not isinstance(roles, dict) or any(r not in ROLES or not isinstance(v, list) for r, v in roles.items()):
        raise ConfigError(f"In {path}, [roles] must map {', '.join(ROLES)} to lists of subjects or e-mails.")
    return ServerConfig(public_url=str(data.get("public_url", "")).strip(),
                        demo_url=str(data.get("demo_url", "")).strip(),
                        import_roots=tuple(roots) if roots is not None else None,
                        roles={r: tuple(str(x).strip().lower() for x in v) for r, v in roles.items()},
                        quotas=_quotas(path, data.get("quotas", {})),
                        ray_address=str(data.get("ray_address", "")).strip())


def _quotas(path: Path, raw) -> Quotas:
    if not isinstance(raw, dict):
        raise ConfigError(f"In {path}, [quotas] must be a table of limits.")
    names = {f.name: f.type for f in fields(Quotas)}
    out = {}
    for name, value in raw.items():
        if name not in names:
            raise ConfigError(f"In {path}, [quotas] has '{name}', which imgcls does not know "
                              f"(known: {', '.join(names)}).")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise ConfigError(f"In {path}, quotas.{name} must be a number of zero or more.")
        out[name] = value
    return Quotas(**out)


@dataclass(frozen=True)
class User:
    """A signed-in person, as the identity provider describes them."""

    subject: str
    issuer: str = ""
    name: str = ""
    email: str = ""

    @property
    def key(self) -> str:
        """The name of this user's workspace folder: stable for the same account at the same provider."""
        return hashlib.sha256(f"{self.issuer}\n{self.subject}".encode()).hexdigest()[:32]

    @property
    def label(self) -> str:
        """What to call the user on screen."""
        return self.name or self.email or self.subject


def users_root() -> Path:
    """The folder holding one workspace per signed-in user."""
    return workspace.server_root() / USERS_DIR


def user_root(user: User) -> Path:
    """The workspace folder of one user."""
    return users_root() / user.key


def role_of(user: User, config: ServerConfig | None = None) -> str:
    """The strongest role the operator's config gives this user (by subject or e-mail address)."""
    config = config or load_config()
    ids = {user.subject.strip().lower(), user.email.strip().lower()} - {""}
    for role in reversed(ROLES):
        if ids & set(config.roles.get(role, ())):
            return role
    return "user"


def register(user: User) -> Path:
    """Create the user's workspace on first sign-in and remember who it belongs to (for the admin view)."""
    root = user_root(user)
    card = {"subject": user.subject, "issuer": user.issuer, "name": user.name, "email": user.email}
    if workspace.read_json(root / "user.json", None) != card:
        root.mkdir(parents=True, exist_ok=True)
        workspace.atomic_write_json(root / "user.json", card)
    return root


def known_users() -> list[tuple[Path, dict]]:
    """Every user workspace with the card saved at sign-in, for the admin view."""
    root = users_root()
    if not root.is_dir():
        return []
    return sorted(((p, workspace.read_json(p / "user.json", {}) or {}) for p in root.iterdir() if p.is_dir()),
                  key=lambda item: (item[1].get("name") or item[1].get("email") or item[0].name).lower())


def folder_imports_off(signed_in: bool) -> str | None:
    """Why "Folder on the server" cannot be used here, or None when it can."""
    roots = load_config().import_roots
    if roots == () or (roots is None and signed_in):
        return ("Importing from folders on the server is turned off here. Upload a ZIP instead, or ask the "
                "operator to list folders under import_roots.")
    return None


def check_import_folder(folder: str | Path, signed_in: bool) -> Path:
    """The folder, resolved (no '..', symlinks followed), if the operator lets imports read it; otherwise a
    WorkspaceError saying which folders may be read. Outside the allowed folders the answer is the same
    whether or not the path exists, so it tells nothing about the rest of the server."""
    off = folder_imports_off(signed_in)
    if off:
        raise workspace.WorkspaceError(off)
    roots = load_config().import_roots  # None: one person on their own machine may read any folder
    outside = workspace.WorkspaceError(f"'{folder}' is outside the folders this server lets you import from: "
                                       f"{', '.join(roots or ())}.")
    try:
        if roots is not None and not any(is_inside(Path(folder).expanduser().resolve(), r) for r in roots):
            raise outside
        resolved = Path(folder).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        raise workspace.WorkspaceError(f"'{folder}' is not a folder on the server.") from None
    if roots is not None and not any(is_inside(resolved, r) for r in roots):
        raise outside
    if not resolved.is_dir():
        raise workspace.WorkspaceError(f"'{folder}' is not a folder on the server.")
    return resolved


def is_inside(path: Path, root: str | Path) -> bool:
    """Whether a resolved path is the root or below it (the root resolved too)."""
    try:
        base = Path(root).expanduser().resolve(strict=True)
    except (OSError, RuntimeError):
        return False
    return path == base or base in path.parents
