"""Sign-in with Streamlit's own st.login (OpenID Connect), and the workspace each session works in.

Without an [auth] section in Streamlit's secrets the app is one person's, on their own machine: every call
works in IMGCLS_HOME. With one, every page but the demo view needs a signed-in user, and every engine call
made from a session works in that user's folder (see `resolve`), so the boundary holds in one place.
"""

from __future__ import annotations

import ipaddress

import streamlit as st
from streamlit import config as st_config
from streamlit.auth_util import get_secrets_auth_section
from streamlit.runtime.scriptrunner import get_script_run_ctx

from imgcls.store import access, workspace
from imgcls.ui.common.text import plain

_auth: dict = {}


def auth_configured() -> bool:
    """Whether the operator set up sign-in (an [auth] section in Streamlit's secrets). Asked on every path
    the engine builds, so the answer is kept, and looked up again at the top of every run of the app
    (`install`): without a secrets file Streamlit would search the disk for one at each call."""
    if "on" not in _auth:
        refresh()
    return _auth["on"]


def refresh() -> None:
    """Read again whether sign-in is configured."""
    try:
        _auth["on"] = bool(get_secrets_auth_section())
    except Exception:  # unreadable secrets: Streamlit itself reports the file; treat as not configured
        _auth["on"] = False


def _user_from(info: dict) -> access.User | None:
    if not info.get("is_logged_in") or not info.get("sub"):
        return None
    return access.User(subject=str(info["sub"]), issuer=str(info.get("iss") or ""),
                       name=str(info.get("name") or ""), email=str(info.get("email") or ""))


def current_user() -> access.User | None:
    """The signed-in user of this session, or None (signed out, or no sign-in configured)."""
    ctx = get_script_run_ctx(suppress_warning=True)
    return _user_from(ctx.user_info) if ctx is not None and auth_configured() else None


def current_role() -> str:
    """The role of this session's user: 'admin' for the one person of a server without sign-in."""
    if not auth_configured():
        return "admin"
    user = current_user()
    return access.role_of(user) if user else "anonymous"


def resolve():
    """The workspace of the session making this call: None (IMGCLS_HOME) without sign-in; the signed-in
    user's folder with it; a WorkspaceError when nobody is signed in or the call comes from no session."""
    if not auth_configured():
        return None
    ctx = get_script_run_ctx(suppress_warning=True)
    user = _user_from(ctx.user_info) if ctx is not None else None
    if user is None:
        raise workspace.WorkspaceError("Sign in to reach a workspace.")
    return access.user_root(user)


def install() -> None:
    """Make every engine call of this server work in the calling session's workspace (at the top of every
    run, which also reads the sign-in settings again)."""
    refresh()
    workspace.set_resolver(resolve)


def reachable_from_others() -> bool:
    """Whether the server listens on an address other machines can reach."""
    address = (st_config.get_option("server.address") or "").strip()
    if address.startswith("unix://"):
        return False
    if address in ("", "0.0.0.0", "::"):
        return True
    try:
        return not ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address != "localhost"


def show_exposure_warning() -> None:
    """Say so on every page when anyone on the network can open this workspace."""
    if not auth_configured() and reachable_from_others():
        st.warning("**Anyone who can reach this server can see and change everything here**: it listens on "
                   "the network and has no sign-in. Set up sign-in (README, *Sharing and classes*) or start it "
                   "with `--server.address 127.0.0.1`.", icon=":material/lock_open:")


def show_signin() -> None:
    """The only screen a signed-out visitor sees."""
    st.title("imgcls")
    st.write("Turn a folder of photos into a working, explained image classifier. Sign in to reach your own "
             "workspace: your datasets, models and demos are yours alone.")
    invited = str(st.query_params.get("join", "") or "").strip()
    if invited:
        st.info(f"You are invited to join a class (code **{plain(invited[:20])}**). Sign in first; then open the "
                "*Class* page and enter the code, or open the link again.", icon=":material/groups:")
    for provider in providers():
        label = f"Sign in with {plain(provider)}" if provider else "Sign in"
        if st.button(label, type="primary", icon=":material/login:", key=f"signin.login.{provider}"):
            st.login(provider or None)


def providers() -> list[str]:
    """The providers set up in [auth]: '' for the one given directly, else the names of [auth.<name>]."""
    section = get_secrets_auth_section()
    named = [name for name, value in section.items() if hasattr(value, "keys")]
    return [""] if "client_id" in section or not named else named


def show_account(user: access.User) -> None:
    """Who is signed in, and the way out (sidebar)."""
    st.caption(f"Signed in as **{plain(user.label)}**")
    if st.button("Sign out", key="signin.logout", icon=":material/logout:"):
        st.logout()


def enter() -> access.User | None:
    """At the top of every run: the signed-in user (their workspace created and recorded on first visit)."""
    user = current_user()
    if user is not None and st.session_state.get("signin.registered") != user.key:
        access.register(user)
        st.session_state["signin.registered"] = user.key
    return user
