"""Class: a teacher's classes (students, shared datasets, the queue, the board) and a student's (join, start
from a class dataset, submit a run, the board)."""

import streamlit as st

from imgcls.ui.classroom import datasets, members, scores
from imgcls.ui.common import widgets

st.title("Class")
user = members.require_user()
widgets.show_flash()

if members.can_teach():
    st.header("Classes you teach")
    taught = members.taught_class(user)
    with st.expander("Create a class", expanded=taught is None, icon=":material/group_add:"):
        members.create_controls(user)
    if taught is not None:
        members.show_join_code(taught)
        students, shared_data, board, queue = st.tabs(["Students", "Datasets", "Board", "Queue"])
        with students:
            members.show_students(taught, user)
        with shared_data:
            datasets.share_controls(taught, user)
        with board:
            scores.teacher_controls(taught, user)
            picked = scores.show_board(taught, user)
            if picked:
                scores.show_curves(taught, picked)
                with st.container(border=True):
                    scores.open_controls(taught, user, picked)
        with queue:
            scores.show_queue(taught)

if members.can_teach() and not members.has_joined(user):  # a teacher rarely joins a class: kept out of the way
    with st.expander("Join a class as a student", icon=":material/login:"):
        members.join_controls(user)
    st.stop()
st.header("Classes you joined")
members.join_controls(user)
joined = members.joined_class(user)
if joined is not None:
    st.subheader("Start from a class dataset")
    datasets.start_controls(joined, user)
    st.subheader("The board")
    scores.submit_controls(joined, user)
    picked = scores.show_board(joined, user)
    if picked:
        scores.show_curves(joined, picked)
