"""The shape of the package, pinned: which package may import which, where processes are started and pages
polled, where torch may load, and what the pages may touch."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# package → the packages it may import (besides itself). One direction: nothing imports ui but the pages,
# and store and jobs, the two everything stands on, import nothing above them.
ALLOWED = {
    "store": {"jobs"},
    "jobs": {"store"},
    "ingest": {"store"},
    "vision": {"store", "ingest", "jobs"},  # jobs.dist: only a job's main process saves a model
    "augment": {"store", "ingest", "vision", "jobs"},
    "evaluate": {"store", "ingest", "vision", "augment", "jobs"},
    "train": {"store", "ingest", "vision", "augment", "jobs", "evaluate"},
    "health": {"store", "ingest", "vision", "jobs", "train"},
    "charts": {"store", "evaluate"},
    "lab": {"store", "ingest", "vision", "augment", "train", "evaluate", "health", "charts", "jobs"},
    "teach": {"store", "ingest", "train"},
    "share": {"store", "jobs"},
    "classroom": {"store", "ingest", "jobs", "vision", "evaluate", "train"},
}
LIGHT = ("store", "ingest", "jobs")  # read on every page and by every job's launcher: no torch when imported
HEAVY = ("torch", "torchvision", "timm")
JOB_VIEW = Path("imgcls/ui/common/jobview.py")


def _package_of(path: Path, root: Path) -> str:
    parts = path.relative_to(root / "imgcls").parts
    return parts[0] if len(parts) > 1 else path.stem


def _imported(nodes):
    """(line, dotted module) for every import among `nodes` (lazy ones inside functions too)."""
    for node in nodes:
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.lineno, node.module
            for alias in node.names:
                yield node.lineno, f"{node.module}.{alias.name}"


def _sources(root: Path, folder: str = "imgcls"):
    for path in sorted((root / folder).rglob("*.py")):
        yield path, ast.parse(path.read_text(encoding="utf-8"))


def relative_imports(root: Path) -> list[str]:
    return [f"{p.relative_to(root)}:{n.lineno}" for p, tree in _sources(root) for n in ast.walk(tree)
            if isinstance(n, ast.ImportFrom) and n.level]


def matrix_breaches(root: Path) -> list[str]:
    found = []
    for path, tree in _sources(root):
        own = _package_of(path, root)
        if own not in ALLOWED:
            continue  # ui and the command line may use any engine part
        for line, name in _imported(ast.walk(tree)):
            parts = name.split(".")
            if parts[0] == "imgcls" and len(parts) > 1 and parts[1] != own and parts[1] not in ALLOWED[own] \
                    and (root / "imgcls" / parts[1] / "__init__.py").exists():
                found.append(f"{path.relative_to(root)}:{line} {own} imports {name}")
    return sorted(set(found))


def process_calls(root: Path) -> list[str]:
    found = []
    for path, tree in _sources(root):
        if _package_of(path, root) == "jobs":
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and node.attr in ("Popen", "killpg"):
                found.append(f"{path.relative_to(root)}:{node.lineno} {node.attr}")
            if isinstance(node, ast.ImportFrom) and any(a.name in ("Popen", "killpg") for a in node.names):
                found.append(f"{path.relative_to(root)}:{node.lineno} imports {node.names[0].name}")
    return found


def polling_outside_the_job_view(root: Path) -> list[str]:
    found = []
    for folder in ("imgcls", "app_pages"):
        for path, tree in _sources(root, folder):
            if path.relative_to(root) != JOB_VIEW:
                found += [f"{path.relative_to(root)}:{n.value.lineno}" for n in ast.walk(tree)
                          if isinstance(n, ast.keyword) and n.arg == "run_every"]
    return found


def heavy_module_imports(root: Path) -> list[str]:
    return [f"{path.relative_to(root)}:{line} {name}" for path, tree in _sources(root)
            if _package_of(path, root) in LIGHT
            for line, name in _imported(tree.body)  # module level only: a function may load torch when called
            if name.split(".")[0] in HEAVY]


def page_imports(root: Path) -> list[str]:
    return [f"{path.relative_to(root)}:{line} {name}" for path, tree in _sources(root, "app_pages")
            for line, name in _imported(ast.walk(tree))
            if name.split(".")[0] == "imgcls" and not name.startswith("imgcls.ui")]


def test_no_relative_imports_so_every_import_names_its_package():
    assert relative_imports(ROOT) == []


def test_packages_import_only_what_the_matrix_allows():
    assert matrix_breaches(ROOT) == []


def test_every_engine_package_is_in_the_matrix():
    packages = {p.name for p in (ROOT / "imgcls").iterdir() if (p / "__init__.py").exists()} - {"ui"}
    assert packages == set(ALLOWED)


def test_processes_are_started_and_killed_only_by_the_job_system():
    assert process_calls(ROOT) == []


def test_pages_poll_only_through_the_job_view():
    assert polling_outside_the_job_view(ROOT) == []


def test_light_packages_load_no_torch_when_imported():
    assert heavy_module_imports(ROOT) == []


def test_pages_use_only_the_ui_package():
    assert page_imports(ROOT) == []


def test_each_scan_finds_what_it_looks_for(tmp_path):
    for pkg in ("store", "lab", "jobs", "ui/common"):
        (tmp_path / "imgcls" / pkg).mkdir(parents=True)
        (tmp_path / "imgcls" / pkg / "__init__.py").write_text("")
    (tmp_path / "app_pages").mkdir()
    (tmp_path / "imgcls" / "store" / "bad.py").write_text(
        "import subprocess\nimport torch\nfrom imgcls.lab import runs\nfrom . import x\np = subprocess.Popen\n")
    (tmp_path / "imgcls" / "jobs" / "fine.py").write_text("import os\nos.killpg(1, 9)\n")
    (tmp_path / "imgcls" / "ui" / "common" / "page.py").write_text("st.fragment(run_every=1)\n")
    (tmp_path / "app_pages" / "p.py").write_text("from imgcls.store import runs\n")
    assert relative_imports(tmp_path) == ["imgcls/store/bad.py:4"]
    assert matrix_breaches(tmp_path) == ["imgcls/store/bad.py:3 store imports imgcls.lab",
                                         "imgcls/store/bad.py:3 store imports imgcls.lab.runs"]
    assert process_calls(tmp_path) == ["imgcls/store/bad.py:5 Popen"]
    assert polling_outside_the_job_view(tmp_path) == ["imgcls/ui/common/page.py:1"]
    assert heavy_module_imports(tmp_path) == ["imgcls/store/bad.py:2 torch"]
    assert page_imports(tmp_path) == ["app_pages/p.py:1 imgcls.store", "app_pages/p.py:1 imgcls.store.runs"]
