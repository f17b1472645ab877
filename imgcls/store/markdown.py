"""User text (notes, class names, file names, run names) shown inside Markdown as the very characters typed."""

from __future__ import annotations

import re

# Markdown, Streamlit's own :colour[…] and :material/…: directives, :emoji: shortcodes, $math$, raw HTML and
# entities (&lt;), images and links ![…](…) and <autolinks> all start from these; a backslash before each
# makes it a plain character, so a name cannot load a remote image. A colon before a space starts nothing,
# so "Note: …" keeps its plain colon.
_SIGNIFICANT = re.compile(r"([\\`*_\[\]()#+\-!$<>|{}~&@]|:(?!\s))")
# "1. " opens a numbered list only at the start ("1.5" opens nothing)
_LIST_START = re.compile(r"^(\s*\d{1,9})([.)])(?=\s|$)")
# Bare links (http://x.y…, www.…, me@x.y) are found in the text after the escapes are gone, so no backslash
# stops them: an invisible word joiner inside "http://", "www." and before the "@" of an address does.
_BARE_LINK = re.compile(r"(?i)(?<=https)(?=://[-\w.]*\.)|(?<=http)(?=://[-\w.]*\.)|(?<=www)(?=\.)"
                        r"|(?<=[-.\w+])(?=@[-\w]+\.[-\w])")
JOINER = "\u2060"
_BACKTICKS = re.compile(r"`+")


def _one_line(text) -> str:
    return " ".join(str(text if text is not None else "").splitlines())


def plain(text) -> str:
    """`text` escaped for st.markdown, st.caption, alerts and widget labels: shown as typed, on one line
    (bare links keep an invisible word joiner, so they stay text)."""
    unlinked = _BARE_LINK.sub(JOINER, _one_line(text))
    escaped = _SIGNIFICANT.sub(r"\\\1", unlinked)
    return _LIST_START.sub(r"\1\\\2", escaped)  # ')' is escaped already; '.' is not


def code(text) -> str:
    """`text` as an inline code span (an id, a backbone name): shown as typed, nothing inside it renders."""
    one_line = _one_line(text)
    if not one_line.strip():
        return ""
    fence = "`" * (max((len(run) for run in _BACKTICKS.findall(one_line)), default=0) + 1)
    pad = " " if one_line[0] == "`" or one_line[-1] == "`" else ""
    return f"{fence}{pad}{one_line}{pad}{fence}"
