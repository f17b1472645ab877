"""imgcls demo server: shows the published demo a link's token opens, and nothing else of any workspace.

Started by `python -m imgcls serve-demo` (or the Publish panel). It has no other page and no workspace of its
own: a call that is not inside the demo's own run fails instead of reading anything.
"""

import streamlit as st

from imgcls.store import workspace
from imgcls.ui import demo
from imgcls.ui.common import errors

st.set_page_config(page_title="imgcls demo", page_icon="🖼️", layout="centered")


def _nobody():
    raise workspace.WorkspaceError("A demo visitor has no workspace.")


workspace.set_resolver(_nobody)
with errors.page_errors("the demo"):  # a bug shows one sentence and an error id; the log has the rest
    demo.show_demo(st.query_params.get(demo.QUERY))
