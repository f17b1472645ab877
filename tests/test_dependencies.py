"""What imgcls imports and what pyproject.toml declares agree: nothing imported is left undeclared (a fresh
install would miss it) and nothing declared goes unused (every install would carry it for nothing)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
LOCAL = {"imgcls", "app_pages"}  # this checkout's own code
# Standard library of a newer Python than this one, imported only where that Python runs
NEWER_STDLIB = {"compression": "zstd in ZIP files, Python 3.14+ (imgcls/zipread.py, imgcls/sources.py)"}
# Declared although no import statement names them, each for the reason given
USED_WITHOUT_IMPORT = {
    "torchvision": "timm imports it, and the background warm-up imports it by name (imgcls/ui/preload.py); "
                   "declared so that pip installs the build that matches torch",
    "authlib": "st.login speaks OpenID Connect through it (Streamlit's auth extra)",
    "onnxscript": "torch.onnx.export's torch.export-based exporter (dynamo=True, imgcls/evaluate/formats.py) "
                  "translates the program with it",
    "typing-extensions": "the export extra's converter (litert-torch, through xdsl) needs it below 4.13; the "
                         "bound is declared so that pip resolves the extra without a long backtrack",
}


def app_sources() -> list[Path]:
    """Every Python file of the app: the package, the entry points and the pages."""
    return sorted([*(ROOT / "imgcls").rglob("*.py"), ROOT / "app.py", ROOT / "demo_app.py",
                   *(ROOT / "app_pages").rglob("*.py")])


def top_level_imports(path: Path) -> list[tuple[int, str]]:
    """(line, top-level module) of every absolute import in `path`, wherever it stands (lazy ones too)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name.split(".")[0]) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.append((node.lineno, node.module.split(".")[0]))
    return found


def third_party(paths: list[Path], local: set[str], root: Path = ROOT) -> list[tuple[str, str]]:
    """("file:line", module) of every import that is neither the standard library nor in `local`."""
    out = []
    for path in paths:
        for line, module in top_level_imports(path):
            if module not in sys.stdlib_module_names and module not in NEWER_STDLIB and module not in local:
                out.append((f"{path.relative_to(root)}:{line}", module))
    return out


def normalize(name: str) -> str:
    """A distribution name as PyPI compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    """The distribution a requirement line names ("scikit-learn>=1.4" → "scikit-learn")."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    assert match, f"cannot read the requirement {line!r}"
    return normalize(match.group(1))


def declared() -> set[str]:
    """The distributions pyproject.toml's [project] dependencies name."""
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    return {requirement_name(r) for r in project["dependencies"]}


def optional() -> set[str]:
    """The distributions of pyproject.toml's optional extras (such as ray, for a cluster)."""
    extras = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"].get("optional-dependencies", {})
    return {requirement_name(r) for group in extras.values() for r in group}


def dev_declared(path: Path = ROOT / "requirements-dev.txt") -> set[str]:
    """The distributions a requirements file names itself (not those of the files it includes)."""
    lines = (line.split("#", 1)[0].strip() for line in path.read_text(encoding="utf-8").splitlines())
    return {requirement_name(line) for line in lines if line and not line.startswith("-")}


def check(imports: list[tuple[str, str]], allowed: set[str], must_use: set[str],
          unimported: dict[str, str]) -> list[str]:
    """What is wrong, in plain sentences: an import from outside the distributions `allowed`, a
    distribution of `must_use` that nothing imports (unless `unimported` gives its reason), and an entry
    of `unimported` that is imported after all or not in `must_use`."""
    providers = metadata.packages_distributions()
    problems, used = [], set()
    for where, module in imports:
        dists = {normalize(d) for d in providers.get(module, ())}
        if not dists:
            problems.append(f"{where} imports {module}, which no installed distribution provides")
        elif not dists & allowed:
            problems.append(f"{where} imports {module} (distribution {', '.join(sorted(dists))}), "
                            "which is not declared")
        used |= dists
    for dist in sorted(must_use - used - set(unimported)):
        problems.append(f"{dist} is declared but nothing imports it: remove it, or list it with its reason "
                        "in tests/test_dependencies.py")
    for dist in sorted(set(unimported) & used):
        problems.append(f"{dist} is imported now: take it off the list of those used without an import")
    for dist in sorted(set(unimported) - must_use):
        problems.append(f"{dist} is listed as used without an import but is not declared")
    return problems


def test_every_import_is_declared_and_every_dependency_imported():
    everything = declared() | optional()  # an extra is imported only where it is used, but it must be used
    problems = check(third_party(app_sources(), LOCAL), everything, everything, USED_WITHOUT_IMPORT)
    assert problems == [], "pyproject.toml and the imports disagree:\n" + "\n".join(problems)


def test_test_imports_are_in_the_runtime_or_test_requirements():
    tests = sorted((ROOT / "tests").rglob("*.py"))
    # the test helpers import each other by file name, and a benchmark's own test imports the benchmark
    local = {"imgcls"} | {p.stem for p in tests} | {p.stem for p in (ROOT / "benchmarks").glob("*.py")}
    # a test may import any runtime dependency, or an extra's (requirements-dev.txt installs the "export" extra);
    # each test requirement must be imported by some test
    problems = check(third_party(tests, local), declared() | optional() | dev_declared(), dev_declared(), {})
    assert problems == [], "requirements-dev.txt and the tests' imports disagree:\n" + "\n".join(problems)


def test_the_check_names_undeclared_unused_and_stale_entries(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text("import os\nimport numpy as np\n\n\ndef f():\n    from yaml import safe_load\n"
                     "    import no_such_module_anywhere\n    from . import sibling\n")
    imports = third_party([probe], {"imgcls"}, root=tmp_path)
    assert imports == [("probe.py:2", "numpy"), ("probe.py:6", "yaml"), ("probe.py:7", "no_such_module_anywhere")]
    allowed = {"numpy", "pandas", "authlib"}
    problems = check(imports, allowed, allowed, {"authlib": "why", "numpy": "why", "gone": "why"})
    assert problems == [
        "probe.py:6 imports yaml (distribution pyyaml), which is not declared",
        "probe.py:7 imports no_such_module_anywhere, which no installed distribution provides",
        "pandas is declared but nothing imports it: remove it, or list it with its reason "
        "in tests/test_dependencies.py",
        "numpy is imported now: take it off the list of those used without an import",
        "gone is listed as used without an import but is not declared",
    ]


def test_requirement_lines_are_read_by_distribution_name():
    assert [requirement_name(r) for r in ("scikit-learn>=1.4.2", "PyYAML", "Authlib >= 1.3",
                                         "huggingface_hub>=0.25", "opencv-python-headless[extra]; os_name=='nt'")] \
        == ["scikit-learn", "pyyaml", "authlib", "huggingface-hub", "opencv-python-headless"]


def test_the_licence_is_declared_and_ships():
    project = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))["project"]
    assert project["license"] == "MIT"
    files = [f for pattern in project["license-files"] for f in ROOT.glob(pattern)]
    assert files, "license-files matches no file"
    text = "\n".join(f.read_text(encoding="utf-8") for f in files)
    assert text.startswith("MIT License") and "Copyright (c) 2026 The imgcls authors" in text
