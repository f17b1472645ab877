"""The engine must run without the UI: streamlit is imported only under imgcls/ui/."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "imgcls"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_streamlit_only_in_ui():
    offenders = [
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if "ui" not in path.relative_to(PACKAGE).parts[:1] and "streamlit" in _imports(path)
    ]
    assert offenders == []


def test_scanner_sees_streamlit_imports(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nfrom streamlit import session_state\n")
    assert "streamlit" in _imports(probe)


def test_no_unsafe_model_loading():
    """Models load from safetensors or with weights_only=True, never from an arbitrary pickle."""
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "load" \
                    and getattr(node.func.value, "id", "") == "torch":
                kw = {k.arg: k.value for k in node.keywords}
                assert isinstance(kw.get("weights_only"), ast.Constant) and kw["weights_only"].value is True, \
                    f"{path.name}: torch.load without weights_only=True"
            assert not (isinstance(node, ast.Attribute) and getattr(node.value, "id", "") == "pickle"), \
                f"{path.name} uses pickle"
