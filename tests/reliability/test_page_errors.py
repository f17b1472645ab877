"""An unexpected failure in a page: the visitor sees one sentence with an error id, the log has the traceback
under the same id, and Streamlit's own control flow (st.stop, st.rerun, st.switch_page) is left alone."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from streamlit import config
from streamlit.testing.v1 import AppTest

from imgcls.ui.common import errors

ROOT = Path(__file__).resolve().parents[2]
SECRET = "/srv/private/path-of-the-server"  # what a traceback would give away
SENTENCE = re.compile(r"^Something went wrong on this page \(error id ([0-9a-f]{6})\)\. It has been logged; ")


@pytest.fixture
def checked_in_details(monkeypatch):
    """The error details setting as .streamlit/config.toml sets it (restored afterwards)."""
    old = (config.get_option("client.showErrorDetails"), config.get_where_defined("client.showErrorDetails"))
    config.set_option("client.showErrorDetails", "none", "config.toml")
    yield
    config.set_option("client.showErrorDetails", *old)


def test_the_checked_in_config_hides_error_details():
    text = (ROOT / ".streamlit" / "config.toml").read_text()
    assert re.search(r'^showErrorDetails = "none"$', text, re.M)
    from imgcls.share import server as demoserver

    line = demoserver.command(8502)
    assert line[line.index("--client.showErrorDetails") + 1] == "none"  # wherever serve-demo is started


def _raise(*_args, **_kwargs):
    raise RuntimeError(f"disk layout at {SECRET} is not what the code expected")


def _error_records(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == errors.LOG.name]


def test_a_page_that_fails_shows_a_sentence_and_logs_the_traceback(app_home, checked_in_details, monkeypatch,
                                                                  caplog):
    from imgcls.ui.data import imports

    monkeypatch.setattr(imports, "start_sample_controls", _raise)  # the Home page calls it
    caplog.set_level(logging.ERROR, logger=errors.LOG.name)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception  # no traceback element: the page handled it
    shown = [e.value for e in at.error]
    assert len(shown) == 1 and SENTENCE.match(shown[0]), shown
    error_id = SENTENCE.match(shown[0]).group(1)
    page_text = "\n".join(str(getattr(el, "value", "")) for el in at.main)
    assert shown[0] in page_text and "Teach a computer" in page_text  # every element's text was read
    assert SECRET not in page_text and "Traceback" not in page_text and "RuntimeError" not in page_text
    assert at.title[0].value == "Teach a computer to sort your images"  # what the page drew before it failed
    records = _error_records(caplog)
    assert len(records) == 1 and error_id in records[0].getMessage() and "Home" in records[0].getMessage()
    logged = logging.Formatter().format(records[0])
    assert "Traceback" in logged and SECRET in logged and "_raise" in logged


def test_a_fresh_id_each_time(app_home, checked_in_details, monkeypatch):
    from imgcls.ui.data import imports

    monkeypatch.setattr(imports, "start_sample_controls", _raise)
    ids = set()
    for _ in range(3):
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
        ids.add(SENTENCE.match(at.error[0].value).group(1))
    assert len(ids) == 3


def test_the_demo_page_fails_in_the_same_words(imgcls_home, checked_in_details, monkeypatch, caplog):
    from imgcls.store import workspace
    from imgcls.ui import demo

    monkeypatch.setattr(workspace, "_resolver", workspace._resolver)  # demo_app.py installs its own
    monkeypatch.setattr(demo, "show_demo", _raise)
    caplog.set_level(logging.ERROR, logger=errors.LOG.name)
    at = AppTest.from_file(str(ROOT / "demo_app.py"), default_timeout=60).run()
    assert not at.exception
    assert len(at.error) == 1 and SENTENCE.match(at.error[0].value)
    assert SECRET not in at.error[0].value
    assert "the demo" in _error_records(caplog)[0].getMessage()


def test_stop_rerun_and_switch_page_pass_through_untouched(app_home, checked_in_details, monkeypatch, caplog):
    import streamlit as st

    from imgcls.ui.data import imports
    from imgcls.ui.common import nav

    caplog.set_level(logging.ERROR, logger=errors.LOG.name)
    monkeypatch.setattr(imports, "start_sample_controls", st.stop)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception and not at.error
    assert not any(s.value == "The steps" for s in at.subheader)  # st.stop ended the page there
    monkeypatch.setattr(imports, "start_sample_controls", lambda: st.switch_page(nav.DATA.path))
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception and not at.error
    assert at.title[0].value != "Teach a computer to sort your images"  # it went on to the Data page
    runs = []

    def rerun_once():
        runs.append(1)
        if len(runs) == 1:
            st.rerun()

    monkeypatch.setattr(imports, "start_sample_controls", rerun_once)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert len(runs) == 2 and not at.exception and not at.error
    assert _error_records(caplog) == []


def test_full_details_asked_for_show_streamlits_own_traceback(app_home, monkeypatch):
    from imgcls.ui.data import imports

    monkeypatch.setattr(imports, "start_sample_controls", _raise)
    old = (config.get_option("client.showErrorDetails"), config.get_where_defined("client.showErrorDetails"))
    config.set_option("client.showErrorDetails", "full")  # a developer's --client.showErrorDetails full
    try:
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    finally:
        config.set_option("client.showErrorDetails", *old)
    assert at.exception and SECRET in at.exception[0].message and not at.error


def test_streamlits_built_in_default_is_not_a_request_for_details(monkeypatch):
    """A server started where no config.toml is read has Streamlit's default, "full": still the sentence."""
    monkeypatch.setattr(config, "get_option", lambda key: "full")
    monkeypatch.setattr(config, "get_where_defined", lambda key: "<default>")
    assert not errors.details_wanted()
    monkeypatch.setattr(config, "get_where_defined", lambda key: "command-line argument or environment variable")
    assert errors.details_wanted()
