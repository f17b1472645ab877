"""imgcls: the frame of the app (page config, sign-in, sidebar) and the router between its pages."""

import streamlit as st

from imgcls.store import access
from imgcls.ui import demo
from imgcls.ui.common import errors, nav, preload, signin, state, tidy, widgets

# An emoji, drawn by the browser itself: a Material icon here is fetched from Google's font server, which
# fails offline with an error on every page.
st.set_page_config(page_title="imgcls", page_icon="🖼️", layout="wide")
signin.install()  # every engine call from now on works in this session's own workspace


def _page(info: nav.PageInfo, default: bool = False) -> st.Page:
    return st.Page(info.path, title=info.title, icon=info.icon, default=default)


# While a page draws, the libraries the later pages need are not imported in the background (see preload).
with preload.page_run():
    try:
        access.load_config()
    except access.ConfigError as exc:  # the operator's imgcls.toml: say which line of it to mend
        st.error(str(exc), icon=":material/settings:")
        st.stop()
    user = signin.enter()
    gate = demo.QUERY in st.query_params or "run" in st.query_params or (signin.auth_configured() and not user)
    # /demo stays routable, out of the menu: the address older demo links used (they now open nothing)
    old_demo = st.Page(lambda: None, title="Demo", url_path="demo", visibility="hidden")
    sections = {"": [_page(nav.HOME, default=True), old_demo], "Steps": [_page(p) for p in nav.STEPS],
                "Learn": [_page(nav.LEARN)]}
    # classes need sign-in (each student is someone); without it the page's address explains that
    sections["Learn"].append(st.Page(nav.CLASS.path, title=nav.CLASS.title, icon=nav.CLASS.icon,
                                     visibility="visible" if signin.auth_configured() else "hidden"))
    if signin.auth_configured():  # in the menu for admins; for anyone else its address says it is not theirs
        admin = signin.current_role() == "admin"
        admin_page = st.Page(nav.ADMIN.path, title=nav.ADMIN.title, icon=nav.ADMIN.icon,
                             visibility="visible" if admin else "hidden")
        sections.setdefault("Server" if admin else "", []).append(admin_page)
    # Every page stays routable (no "Page not found" for any address), but behind the gate none of them runs
    page = st.navigation(sections, position="hidden" if gate else "sidebar")
    if demo.QUERY in st.query_params or "run" in st.query_params or page is old_demo:
        # a shared demo link: only that run's predict view, whatever else the address names
        with errors.page_errors("the demo"):
            demo.show_demo(st.query_params.get(demo.QUERY))
        st.stop()
    if gate:
        signin.show_signin()
        st.stop()

    signin.show_exposure_warning()
    tidy.tidy_once()  # what an import cut short by a crash left behind, removed at the first visit
    with st.sidebar:
        if user:
            signin.show_account(user)
        widgets.dataset_picker_controls("sidebar.dataset")
        widgets.show_step_flow(state.active_dataset())

    with errors.page_errors(page.title):  # a bug shows one sentence and an error id; the log has the rest
        page.run()
