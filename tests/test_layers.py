"""Layers and boundaries: streamlit is imported only under imgcls/ui/, models load safely, and no module
uses another module's _private names."""

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


# A module's _names are its own: another module that imports or reaches into them ties itself to details
# the owner may change without notice. Shared helpers get a public name in the module that owns them.
ROOT = PACKAGE.parent


def _app_sources(root: Path) -> list[Path]:
    return sorted([*(root / "imgcls").rglob("*.py"), root / "app.py", root / "demo_app.py",
                   *(root / "app_pages").rglob("*.py")])


def _module_name(path: Path, root: Path) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name: str, root: Path) -> bool:
    base = root.joinpath(*name.split("."))
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _source_module(path: Path, node: ast.ImportFrom, root: Path) -> str:
    """The module a `from … import` reads from, relative imports resolved against `path`."""
    if node.level == 0:
        return node.module or ""
    own = _module_name(path, root).split(".")
    package = own if path.name == "__init__.py" else own[:-1]
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


def private_uses(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, "imgcls.module._name") for each _name of another imgcls module that `path` imports or
    reaches into through an imported module."""
    own = _module_name(path, root)
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    modules: dict[str, str] = {}  # local name -> the imgcls module it is bound to
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            source = _source_module(path, node, root)
            if source.split(".")[0] != "imgcls":
                continue
            for alias in node.names:
                target = f"{source}.{alias.name}"
                if _is_module(target, root):
                    modules[alias.asname or alias.name] = target
                if _private(alias.name) and source != own:
                    found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "imgcls":
                    if alias.asname:
                        modules[alias.asname] = alias.name
                    else:  # `import imgcls.x` binds `imgcls`; uses read `imgcls.x._y`
                        modules["imgcls"] = "imgcls"
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            base = _dotted(node.value)
            if base is None or base.split(".")[0] not in modules:
                continue
            head, _, rest = base.partition(".")
            target = ".".join(filter(None, [modules[head], rest]))
            if _is_module(target, root) and target != own:
                found.append((node.lineno, f"{target}.{node.attr}"))
    return sorted(set(found))


def test_no_module_uses_another_modules_private_names():
    offenders = [f"{path.relative_to(ROOT)}:{line} {name}"
                 for path in _app_sources(ROOT) for line, name in private_uses(path)]
    assert offenders == [], "\n".join(offenders)


def test_private_name_scanner_sees_both_forms(tmp_path):
    pkg = tmp_path / "imgcls"
    (pkg / "ui").mkdir(parents=True)
    for name in ("__init__.py", "runs.py", "data.py", "ui/__init__.py", "ui/page.py"):
        (pkg / name).write_text("")
    (pkg / "data.py").write_text(
        "from . import runs\nfrom .runs import _hidden, shown\nfrom .data import _mine\nimport imgcls.runs\n"
        "import imgcls.runs as r\n\n\ndef f():\n    return runs._read(), runs.read(), runs.__name__, r._x, "
        "imgcls.runs._y, _mine, shown._attr\n")
    (pkg / "ui" / "page.py").write_text("from .. import runs\nfrom ..runs import _z\nx = runs._w\n")
    assert private_uses(pkg / "data.py", tmp_path) == [
        (2, "imgcls.runs._hidden"), (9, "imgcls.runs._read"), (9, "imgcls.runs._x"), (9, "imgcls.runs._y")]
    assert private_uses(pkg / "ui" / "page.py", tmp_path) == [(2, "imgcls.runs._z"), (3, "imgcls.runs._w")]
