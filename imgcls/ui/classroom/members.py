"""Who the Class page is for, the classes a person teaches or joined, joining with a code, and a teacher's
list of students."""

from __future__ import annotations

import datetime as dt
import urllib.parse

import pandas as pd
import streamlit as st

from imgcls.classroom import classes
from imgcls.store import access, workspace
from imgcls.ui.common import signin, state
from imgcls.ui.common.text import code, plain

JOIN_QUERY = "join"  # /classroom?join=CODE: the join link a teacher hands out
TAUGHT = "class.taught"  # id of the class a teacher works on
JOINED = "class.joined"  # id of the class a student works on


def require_user() -> access.User:
    """The signed-in user; without sign-in the page says what classes need and stops."""
    user = signin.current_user()
    if not signin.auth_configured():
        st.info("Classes need a shared server with sign-in: each student signs in to a workspace of their own, "
                "and the teacher shares datasets and a board with them. See *Sharing and classes* in the README "
                "to set one up. On your own machine, everything else works without it.",
                icon=":material/groups:")
        st.stop()
    if user is None:  # the app's gate shows the sign-in screen first; this is the page's own guard
        st.stop()
    return user


def can_teach() -> bool:
    """Whether this user may make classes (the operator gave them the teacher or admin role)."""
    return signin.current_role() in ("teacher", "admin")


def when(seconds: float | None) -> str:
    """A time as people read it: 1 Dec 14:05."""
    if not seconds:
        return ""
    return dt.datetime.fromtimestamp(float(seconds)).strftime("%-d %b %H:%M")


def _chosen(key: str, infos: list[classes.ClassInfo], label: str) -> classes.ClassInfo | None:
    if not infos:
        return None
    ids = [c.id for c in infos]
    if st.session_state.get(key) not in ids:
        st.session_state[key] = ids[0]
    names = {c.id: c.name for c in infos}
    picked = st.selectbox(label, ids, key=key, format_func=names.get)
    return next(c for c in infos if c.id == picked)


# --- a teacher's classes ------------------------------------------------------------------------------


def create_controls(user: access.User) -> None:
    """Make a new class: a name, then its join code."""
    with st.form("class.create", clear_on_submit=True, border=False):
        name = st.text_input("Name of a new class", placeholder="Year 10, autumn", key="class.create.name")
        if st.form_submit_button("Create class", icon=":material/group_add:"):
            try:
                info = classes.create(user, name)
            except (workspace.WorkspaceError, PermissionError, ValueError) as exc:
                st.error(plain(exc))
                return
            st.session_state[TAUGHT] = info.id
            state.flash(f"Class **{plain(info.name)}** created. Its join code is {code(info.code)}.")
            st.rerun()


def taught_class(user: access.User) -> classes.ClassInfo | None:
    """The class the teacher works on now (picker), or None when they have none yet."""
    return _chosen(TAUGHT, classes.taught_by(user.key), "Class")


def _origin() -> str:
    """The scheme and host the browser reached this page at ("" when unknown)."""
    parts = urllib.parse.urlsplit(str(st.context.url or ""))
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else ""


def show_join_code(info: classes.ClassInfo) -> None:
    """The code and the link students join with, and a fresh code when the old one went too far."""
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    with left:
        st.markdown(f"Students join with the code {code(info.code)}, or with this link:")
        st.code(classes.join_link(info.code, _origin()), language=None)
    if right.button("New code", key=f"class.newcode.{info.id}", icon=":material/refresh:",
                    help="The old code stops working; students who joined stay in the class."):
        classes.new_code(info.id, signin.current_user().key)
        st.rerun()


def show_students(info: classes.ClassInfo, user: access.User) -> None:
    """Who joined, when, and a way to remove someone."""
    students = {k: m for k, m in info.members.items() if k != info.teacher}
    if not students:
        st.caption("Nobody has joined yet. Hand out the code or the link above.")
        return
    table = pd.DataFrame([{"Student": m.get("name") or key[:8], "Joined": when(m.get("joined"))}
                          for key, m in students.items()])
    st.dataframe(table, hide_index=True, key=f"class.students.{info.id}")
    keys = list(students)
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    labels = {None: "Choose a student", **{k: m.get("name") or k[:8] for k, m in students.items()}}
    gone = left.selectbox("Remove a student", [None, *keys], key=f"class.remove.{info.id}", format_func=labels.get)
    if right.button("Remove", key=f"class.remove.go.{info.id}", disabled=gone is None, icon=":material/person_remove:",
                    help="They lose the class's datasets and board; what they copied into their own workspace "
                         "stays theirs. They cannot join again with the same code."):
        classes.remove_student(info.id, user.key, gone)
        state.flash(f"{plain(students[gone].get('name') or 'The student')} was removed from the class.")
        st.rerun()


# --- a student's classes -------------------------------------------------------------------------------


def join_controls(user: access.User) -> None:
    """Join a class with the code a teacher gave (filled in from a join link)."""
    offered = str(st.query_params.get(JOIN_QUERY, "") or "")
    with st.form("class.join", clear_on_submit=True, border=False):
        entered = st.text_input("Join a class with its code", value=offered, placeholder="ABCD2345",
                                key="class.join.code", max_chars=20)
        if st.form_submit_button("Join", icon=":material/login:"):
            try:
                info = classes.join(entered, user)
            except (workspace.WorkspaceError, PermissionError, ValueError) as exc:
                st.error(plain(exc))
                return
            st.query_params.pop(JOIN_QUERY, None)
            st.session_state[JOINED] = info.id
            state.flash(f"You joined **{plain(info.name)}**, taught by {plain(info.teacher_name or 'your teacher')}.")
            st.rerun()


def _joined(user: access.User) -> list[classes.ClassInfo]:
    return [c for c in classes.joined_by(user.key) if c.teacher != user.key]


def has_joined(user: access.User) -> bool:
    """Whether the user is a student of any class."""
    return bool(_joined(user))


def joined_class(user: access.User) -> classes.ClassInfo | None:
    """The joined class the student works on now (picker), or None."""
    return _chosen(JOINED, _joined(user), "Class you joined")
