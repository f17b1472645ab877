"""The one rule for class names, whichever way they arrive: folder names, CSV labels, relabel edits."""

from __future__ import annotations

import unicodedata

from imgcls.store.workspace import WorkspaceError

MAX_CLASS_NAME = 64


class NameRefused(WorkspaceError):
    """A class name that cannot be used, with a sentence naming it and saying why."""


def _shown(text: str, limit: int = 40) -> str:
    """The name as a message quotes it: invisible and control characters written as \\u escapes, cut short."""
    shown = "".join(c if unicodedata.category(c)[0] != "C" else f"\\u{ord(c):04x}" for c in text)
    return f"'{shown[:limit]}…'" if len(shown) > limit else f"'{shown}'"


def check_class_name(text) -> str:
    """A class name cleaned (NFC, stripped), or NameRefused saying why it cannot be one.

    1 to 64 characters; no control, format or other invisible characters (Unicode category C, which holds
    BEL, ESC and the right-to-left overrides); not starting with a dot ('.', '..', a hidden folder); no '/'
    or '\\' (a class is a folder in an export)."""
    name = unicodedata.normalize("NFC", str(text if text is not None else "")).strip()
    if not name:
        raise NameRefused("A class needs a name: this one is empty.")
    if len(name) > MAX_CLASS_NAME:
        raise NameRefused(f"{_shown(name)} is too long for a class name: {len(name)} characters, "
                          f"at most {MAX_CLASS_NAME}.")
    hidden = sorted({f"U+{ord(c):04X}" for c in name if unicodedata.category(c)[0] == "C"})
    if hidden:
        raise NameRefused(f"{_shown(name)} cannot be a class name: it holds invisible or control characters "
                          f"({', '.join(hidden[:4])}).")
    if name.startswith("."):  # '.', '..' name folders themselves; other dot-folders are hidden and never imported
        raise NameRefused(f"{_shown(name)} cannot be a class name: it may not start with a dot.")
    if "/" in name or "\\" in name:
        raise NameRefused(f"{_shown(name)} cannot be a class name: leave out '/' and '\\'.")
    return name
