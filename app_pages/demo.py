"""Demo: the predict view of one published run, opened as /demo?run=<id>; nothing else of the app."""

import streamlit as st

from imgcls.ui import demo

demo.show_demo(st.query_params.get("run"))
