"""The admin page: every user's workspace at a glance, the server's job line, and the limits for everyone and
for one user."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from imgcls.store import access, quotas
from imgcls.store.workspace import WorkspaceError
from imgcls.ui.common import queueview, signin, state
from imgcls.ui.common.text import plain

# Each limit: its label, and what 0 means, for the forms.
LIMITS = {
    "disk_gb": "Disk space per workspace (GB)",
    "images_per_dataset": "Images per dataset",
    "datasets": "Datasets per workspace",
    "jobs_running": "Jobs running at once per person",
    "jobs_queued": "Jobs waiting or running per person",
}
HELP = {
    "jobs_running": "More of one person's jobs wait in line, letting other people's jobs pass, until one of "
                    "theirs ends.",
    "jobs_queued": "Past this a new job is refused with a message saying why.",
}
NO_LIMIT = "0 means no limit."


def require_admin() -> None:
    """Stop the page for anyone whose role is not admin: leaving it out of their menu locks nothing."""
    if signin.current_role() != "admin":
        st.error("This page is for the server's administrators. If you should be one, ask the operator to add "
                 "your e-mail address under admin in the [roles] of imgcls.toml.", icon=":material/block:")
        st.stop()


def _label(card: dict, root) -> str:
    name, email = card.get("name") or "", card.get("email") or ""
    return f"{name} <{email}>" if name and email else name or email or card.get("subject") or root.name


def _limits_text(q: access.Quotas) -> str:
    parts = [f"{q.disk_gb:g} GB" if q.disk_gb else "any disk", f"{q.images_per_dataset:,} images"
             if q.images_per_dataset else "any images", f"{q.datasets:,} datasets" if q.datasets else "any datasets",
             f"{q.jobs_running:,} jobs at once" if q.jobs_running else "any jobs at once",
             f"{q.jobs_queued:,} in line" if q.jobs_queued else "any in line"]
    return ", ".join(parts)


def user_table() -> pd.DataFrame:
    """One row per user who ever signed in: who they are, what their workspace holds and runs, their limits."""
    own = quotas.overrides()["users"]
    rows = []
    for root, card in access.known_users():
        use = quotas.usage(root)
        rows.append({"Name": card.get("name") or "", "E-mail": card.get("email") or "",
                     "Disk used": quotas.size_text(use["disk_bytes"]), "Datasets": use["datasets"],
                     "Images": use["images_total"], "Runs": use["runs"], "Jobs running": use["jobs_running"],
                     "Jobs waiting": use["jobs_waiting"],
                     "Limits": _limits_text(quotas.limits(root)) + (" (own)" if root.name in own else ""),
                     "Folder": root.name})
    return pd.DataFrame(rows, columns=["Name", "E-mail", "Disk used", "Datasets", "Images", "Runs",
                                       "Jobs running", "Jobs waiting", "Limits", "Folder"])


def show_users() -> None:
    """The table of users, or a note that nobody has signed in yet."""
    table = user_table()
    if table.empty:
        st.info("Nobody has signed in yet: each person's workspace appears here after their first sign-in.")
        return
    st.dataframe(table, hide_index=True, width="stretch")


def _limits_form(key: str | None) -> None:
    """Number fields for the limits of everyone (key None) or of one user, and Save. A value equal to
    the one it would inherit is saved as no override, so it follows later changes of the defaults."""
    current = quotas.limits_for(key)
    inherited = quotas.limits_for(None) if key else access.load_config().quotas
    # the current values are part of the keys: after any change the fields start from what is saved
    prefix = f"admin.limits.{key or 'default'}." + "-".join(f"{getattr(current, n):g}" for n in LIMITS)
    with st.form(prefix):
        values = {}
        for name, label in LIMITS.items():
            value = getattr(current, name)
            if name == "disk_gb":
                values[name] = st.number_input(label, min_value=0.0, value=float(value), step=1.0,
                                               key=f"{prefix}.{name}", help=NO_LIMIT)
            else:
                values[name] = st.number_input(label, min_value=0, value=int(value), step=1, key=f"{prefix}.{name}",
                                               help=f"{HELP[name]} {NO_LIMIT}" if name in HELP else NO_LIMIT)
        saved = st.form_submit_button("Save limits", type="primary")
    if saved:
        try:
            quotas.set_limits(key, **{n: None if v == getattr(inherited, n) else v for n, v in values.items()})
        except WorkspaceError as exc:
            st.error(plain(exc))
            return
        state.flash("Saved the limits: " + _limits_text(quotas.limits_for(key)) + ".")
        st.rerun()


def show_jobs() -> None:
    """Every job running and waiting on the server, with Up, Down and Cancel for the waiting ones."""
    names = {root.name: _label(card, root) for root, card in access.known_users()}
    queueview.show_queue(None, names, can_manage=True, key="admin.queue")


def default_limits_controls() -> None:
    """The limits of everyone who has none of their own."""
    st.caption("The operator's [quotas] in imgcls.toml, as changed here. " + NO_LIMIT)
    _limits_form(None)


def user_limits_controls() -> None:
    """Pick one user, then set or clear limits of their own."""
    users = {root.name: _label(card, root) for root, card in access.known_users()}
    if not users:
        st.caption("Limits for one person can be set once they have signed in.")
        return
    key = st.selectbox("User", list(users), format_func=users.get, key="admin.limits.user")
    own = quotas.overrides()["users"].get(key, {})
    st.caption(("Own limits: " + ", ".join(LIMITS[n].split(" (")[0].lower() for n in own if n in LIMITS) + ".")
               if own else "This user has the limits of everyone.")
    _limits_form(key)
    if own and st.button("Give this user the limits of everyone", key="admin.limits.user.clear"):
        quotas.set_limits(key, **{name: None for name in LIMITS})
        state.flash(f"{plain(users[key])} now has the limits of everyone.")
        st.rerun()
