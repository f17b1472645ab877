"""Unexpected failures on a page: the traceback goes to the server's log under a short error id, and the
page says one plain sentence with that id instead of showing code, paths or messages meant for developers.

Expected problems (a bad ZIP, a missing folder) are still explained by the pages themselves; this is for
the bugs nobody foresaw. Streamlit's own control flow (st.stop, st.rerun, st.switch_page raise exceptions
it handles itself) passes through untouched. A developer who sets `client.showErrorDetails` to "full"
(`streamlit run app.py --client.showErrorDetails full`, or config.set_option in tests) gets Streamlit's
own traceback in the page instead; Streamlit's built-in default of "full" does not count, so a server
that reads no config.toml still shows only the sentence.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import sys

import streamlit as st
from streamlit import config
from streamlit.config_option import ConfigOption
from streamlit.errors import FragmentHandledException
from streamlit.runtime.scriptrunner_utils.exceptions import ScriptControlException

LOG = logging.getLogger("imgcls.ui.common.errors")
MESSAGE = ("Something went wrong on this page (error id {error_id}). It has been logged; reload the page to "
           "try again, and if it keeps happening, give the error id to whoever runs this server.")


def _log() -> logging.Logger:
    """The logger, writing to stderr (which the server's log keeps) even where nothing set logging up."""
    if not LOG.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        LOG.addHandler(handler)
        LOG.setLevel(logging.INFO)
    return LOG


def details_wanted() -> bool:
    """Whether someone asked for full error details in the page (an option set to "full", not the default)."""
    return (config.get_option("client.showErrorDetails") in ("full", True)
            and config.get_where_defined("client.showErrorDetails") != ConfigOption.DEFAULT_DEFINITION)


def new_error_id() -> str:
    """A short random id that ties the sentence a visitor saw to the traceback in the log."""
    return secrets.token_hex(3)


@contextlib.contextmanager
def page_errors(where: str = "a page"):
    """Run a page's code: an unexpected exception is logged with its traceback and an error id, and the page
    shows one sentence with that id instead."""
    try:
        yield
    except (ScriptControlException, FragmentHandledException):
        # st.stop/st.rerun/st.switch_page, and a fragment's error that Streamlit has already shown and logged
        raise
    except Exception:
        if details_wanted():
            raise
        error_id = new_error_id()
        _log().exception("Unexpected error on %s (error id %s)", where, error_id)
        st.error(MESSAGE.format(error_id=error_id), icon=":material/error:")
