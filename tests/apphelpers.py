"""Small helpers shared by the AppTest files."""

import io

from PIL import Image
from streamlit.testing.v1 import AppTest


def metric(at: AppTest, label: str) -> str:
    """The shown value of the metric with this label."""
    values = [m.value for m in at.metric if m.label == label]
    assert values, f"no metric labelled {label!r}; have {[m.label for m in at.metric]}"
    return values[0]


def png(colour, size=(40, 30)) -> bytes:
    """A single-colour PNG."""
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format="PNG")
    return buf.getvalue()
