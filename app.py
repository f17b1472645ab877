"""imgcls: the frame of the app (page config, sidebar) and the router between its pages."""

import streamlit as st

from imgcls.ui import nav, preload, state, widgets

# An emoji, drawn by the browser itself: a Material icon here is fetched from Google's font server, which
# fails offline with an error on every page.
st.set_page_config(page_title="imgcls", page_icon="🖼️", layout="wide")


def _page(info: nav.PageInfo, default: bool = False) -> st.Page:
    return st.Page(info.path, title=info.title, icon=info.icon, default=default)


# While a page draws, the libraries the later pages need are not imported in the background (see preload).
with preload.page_run():
    if "run" in st.query_params:
        # a shared demo link: only the demo page is routable, with no menu and no sidebar of the workspace
        st.navigation([_page(nav.DEMO, default=True)], position="hidden").run()
        st.stop()

    page = st.navigation({"": [_page(nav.HOME, default=True)], "Steps": [_page(p) for p in nav.STEPS],
                          "Learn": [_page(nav.LEARN)]})

    with st.sidebar:
        widgets.dataset_picker_controls("sidebar.dataset")
        widgets.show_step_flow(state.active_dataset())

    page.run()
