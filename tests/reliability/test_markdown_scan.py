"""User text never reaches Streamlit's Markdown unescaped: a scan of every page and UI module, the escape
itself on the constructs that load or link things, and two pages drawn with hostile class names."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.ingest import imports as data
from imgcls.store import workspace
from imgcls.store.markdown import JOINER, code, plain
from imgcls.ui.common import nav
from markdown_scan import scan_files, scan_source

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "app.py")
TRACKER = "![t](http://127.0.0.1:9/track.png)"
BOLD = "**bold**"


# --- the scan -------------------------------------------------------------------------------------------


def test_no_page_or_ui_module_puts_user_text_into_markdown_unescaped():
    files = sorted((ROOT / "imgcls" / "ui").rglob("*.py")) + sorted((ROOT / "app_pages").glob("*.py"))
    assert len(files) > 20  # the scan looks where the pages are
    findings = scan_files(files, ROOT)
    assert not findings, "wrap these in plain(…) (imgcls.ui.common.text):\n" + "\n".join(map(str, findings))


def _lines(source: str) -> list[int]:
    return [f.line for f in scan_source(source)]


def test_the_scan_flags_an_unwrapped_interpolation():
    source = (
        "import streamlit as st\n"
        "def show(row):\n"
        "    st.caption(f'Label {row.label}')\n"             # 3: flagged
        "    st.caption(f'Label {plain(row.label)}')\n"      # 4: fine
        "    st.markdown('**' + row.note + '**')\n"          # 5: flagged (concatenation)
        "    st.info('Class %s' % (row.label,))\n"           # 6: flagged (%)
        "    st.error('Class {}'.format(row.label))\n"       # 7: flagged (.format)
        "    st.metric('Images', f'{row.count:,}')\n"        # 8: fine (a number)
        "    st.button(row.label)\n"                          # 9: flagged (a field of user data)
        "    st.tabs([plain(c) for c in row.classes])\n"      # 10: fine
        "    st.expander(f'{row.name}')  # markdown-safe:\n"  # 11: flagged (a pragma needs a reason)
        "    # markdown-safe: the code's own table\n"
        "    st.caption(f'{row.kind}')\n"                   # 13: fine (vouched for just above)
    )
    assert _lines(source) == [3, 5, 6, 7, 9, 11]


def test_the_scan_follows_errors_locals_and_helpers():
    source = (
        "import streamlit as st\n"
        "from imgcls.store import runs\n"
        "def say(text):\n"
        "    st.warning(text)\n"                              # a helper that shows its parameter
        "def fixed():\n"
        "    return 'nothing to see'\n"
        "def page(name):\n"
        "    try:\n"
        "        runs.status(name)\n"                         # 9: not Streamlit
        "    except ValueError as exc:\n"
        "        st.error(str(exc))\n"                        # 11: flagged: errors quote names
        "    say(f'Dataset {name}')\n"                        # 12: flagged at the helper's caller
        "    say(fixed())\n"                                  # 13: fine: fixed() returns safe text
        "    shown = plain(name)\n"
        "    st.caption(f'In {shown}')\n"                     # 15: fine: a local made safe
        "    for label in runs.labels(name):\n"
        "        st.caption(label)\n"                         # 17: flagged: a loop over user data
    )
    assert _lines(source) == [11, 12, 17]


# --- the escape ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [
    TRACKER, BOLD, "[click me](http://example.com)", "$x^2$", ":red[alarm]", ":material/home:", ":smile:",
    "<img src=x onerror=alert(1)>", "https://example.com/a.png", "www.example.com", "me@example.com",
    "see http://127.0.0.1:9/x and HTTPS://a.b", "1. first", "# heading", "> quote", "- item", "~~gone~~",
    "`code`", "a | b", "&lt;b&gt;", "x\ny",
])
def test_plain_leaves_no_construct_standing(text):
    escaped = plain(text)
    assert "\n" not in escaped
    # removing the escapes gives back the text, and what is left unescaped opens nothing
    assert escaped.replace("\\", "").replace(JOINER, "") == text.replace("\n", " ")
    bare = re.sub(r"\\.", "", escaped)  # what is left unescaped
    assert not set(bare) & set("![]()*_$<>`#~|&@{}+-\\"), bare
    assert not re.search(r":\S|^\s*\d+[.)]\s", bare), bare
    # bare links are found in the text once the escapes are read: they must not be there either
    text_node = re.sub(r"\\(.)", r"\1", escaped)
    assert not re.search(r"(?i)https?://|www\.|[\w.+-]@", text_node), text_node


def test_plain_keeps_ordinary_text_readable():
    assert plain("Note: 3.5 photos of cats (2 kinds)") == "Note: 3.5 photos of cats \\(2 kinds\\)"
    assert plain("0.png") == "0.png"


def test_code_spans_hold_any_text():
    assert code("run_1") == "`run_1`"
    assert code("a`b") == "``a`b``"
    assert code("`x") == "`` `x ``"
    assert code("") == ""


# --- two pages with hostile class names ------------------------------------------------------------------


@pytest.fixture
def hostile(app_home, mk):
    """A dataset whose classes are Markdown: bold from a ZIP, and a tracking image from before the name rule
    (its '/' cannot come in through an import any more, so it is written into the manifest)."""
    data.import_zip(mk.zip(mk.class_members({BOLD: 3, "plain": 3, "x": 3})), "d")
    df = workspace.read_manifest("d")
    df.loc[df["label"] == "x", "label"] = TRACKER
    df.loc[df.index[0], "note"] = "[click me](http://127.0.0.1:9/link) $x^2$"
    workspace.write_manifest(workspace.dataset_dir("d"), df)
    workspace.save_setting("active_dataset", "d")
    return "d"


def _markdown_texts(at: AppTest) -> list[str]:
    """Every text on the page that Streamlit renders as Markdown (selectbox options are plain text)."""
    texts = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "title", "subheader", "header"):
        texts += [e.value for e in at.get(kind)]
    for kind in ("button", "checkbox", "toggle", "radio", "selectbox", "multiselect", "text_input",
                 "expander", "tabs", "metric", "download_button"):
        texts += [str(getattr(e, "label", "") or "") for e in at.get(kind)]
        texts += [str(getattr(e, "help", "") or "") for e in at.get(kind)]
    texts += [img.caption for e in at.get("image") for img in e.proto.imgs]
    return [t for t in texts if t]


def _open(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=90).run()
    at.switch_page(page).run()
    assert not at.exception
    return at


@pytest.mark.parametrize("page", [nav.DATA.path, nav.REVIEW.path])
def test_hostile_class_names_are_shown_as_typed(hostile, page):
    at = _open(page)
    texts = _markdown_texts(at)
    joined = "\n".join(texts)
    for raw in (TRACKER, BOLD, "](http"):
        assert raw not in joined, f"{raw!r} would render as Markdown on {page}"
    shown = [t for t in texts if plain(TRACKER) in t]
    assert shown, f"the tracking-image class is not on {page} at all: nothing was checked"
    assert any(plain(BOLD) in t for t in texts)
