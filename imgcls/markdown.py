"""User text (notes, class names, file names, run names) shown inside Markdown as the very characters typed."""

from __future__ import annotations

import re

# Markdown, Streamlit's own :colour[…] and :material/…: directives, $math$ and raw HTML all start from
# these; a backslash before each makes it a plain character, so a note cannot load a remote image. A colon
# before a space starts nothing, so "Note: …" keeps its plain colon.
_SIGNIFICANT = re.compile(r"([\\`*_\[\]()#+\-!$<>|{}~]|:(?!\s))")


def plain(text) -> str:
    """`text` escaped for st.markdown, st.caption, alerts and widget labels: shown as typed, on one line."""
    one_line = " ".join(str(text if text is not None else "").splitlines())
    return _SIGNIFICANT.sub(r"\\\1", one_line)
