"""Sign-in switched on for a test: Streamlit reads an [auth] section from a temporary secrets.toml."""

from __future__ import annotations

import contextlib
from pathlib import Path

from streamlit import config
from streamlit.runtime.secrets import secrets_singleton

ISSUER = "https://id.example.test"
AUTH = """[auth]
redirect_uri = "http://localhost:8501/oauth2callback"
cookie_secret = "a-cookie-secret-only-these-tests-use"
client_id = "imgcls-tests"
client_secret = "imgcls-tests-secret"
server_metadata_url = "http://127.0.0.1:9/.well-known/openid-configuration"
"""


@contextlib.contextmanager
def signin_configured(folder: Path):
    """Streamlit's secrets hold an [auth] section for the duration of the block (restored afterwards)."""
    path = Path(folder) / "secrets.toml"
    path.write_text(AUTH, encoding="utf-8")
    old = config.get_option("secrets.files")
    config.set_option("secrets.files", [str(path)])
    _reread()
    try:
        yield path
    finally:
        config.set_option("secrets.files", old)
        _reread()


def _reread() -> None:
    """Streamlit and the app both keep what they read of the secrets: have them read the files again."""
    from imgcls.ui.common import signin

    secrets_singleton._reset()
    signin.refresh()


def signed_in(subject: str, name: str, email: str, issuer: str = ISSUER) -> dict:
    """What AppTest.user holds for a signed-in user."""
    return {"is_logged_in": True, "sub": subject, "iss": issuer, "name": name, "email": email}


def write_config(home: Path, text: str) -> Path:
    """The operator's imgcls.toml in the server's root."""
    home = Path(home)
    home.mkdir(parents=True, exist_ok=True)
    path = home / "imgcls.toml"
    path.write_text(text, encoding="utf-8")
    return path
