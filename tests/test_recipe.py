"""The code behind a session: snippets per step, and an exported script that reproduces the app's run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path


from imgcls.augment import pipeline as augment
from imgcls.store import journal, workspace
from imgcls.teach import recipe
from imgcls.ingest.imports import import_files, import_zip
from imgcls.evaluate.evaluation import evaluate
from imgcls.train.run import TrainConfig, prepare_run, run

from test_train import SMALL, _png

ROOT = Path(__file__).resolve().parents[1]
COLOURS = (("red", (220, 40, 40)), ("green", (40, 200, 40)), ("blue", (40, 40, 220)))


def _zip_on_disk(path: Path, per_class: int = 10) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        seed = 0
        for label, colour in COLOURS:
            for i in range(per_class):
                zf.writestr(f"{label}/{label}{i}.png", _png(colour, seed))
                seed += 1
    return path


def test_exported_script_reproduces_the_apps_run(imgcls_home, tmp_path):
    src = _zip_on_disk(tmp_path / "colours.zip")
    import_zip(src, "colours")
    df = workspace.read_manifest("colours")
    journal.edit("colours", "exclude", [df["path"].iloc[0]])
    journal.edit("colours", "relabel", [df["path"].iloc[1]], "pink")
    journal.edit("colours", "relabel", [df["path"].iloc[2]], "oops")
    journal.undo("colours")  # an undone edit must not be replayed
    augment.save_pipeline("colours", augment.build_pipeline("light", 64))
    run_id = prepare_run(TrainConfig(dataset="colours", strategy="linear", epochs=5, **SMALL))
    run(run_id, echo=lambda _: None)
    app = evaluate(run_id, "val")

    script = recipe.session_script("colours", run_id)
    assert "oops" not in script and "'pink'" in script
    (tmp_path / "session.py").write_text(script)
    env = {**os.environ, "IMGCLS_HOME": str(tmp_path / "elsewhere"), "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "session.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("accuracy")][-1]
    accuracy, macro_f1 = float(line.split()[1]), float(line.split()[4])
    assert abs(accuracy - app["accuracy"]) <= 0.02 and abs(macro_f1 - app["macro_f1"]) <= 0.02
    # the dataset it rebuilt has the app's labels, splits and exclusions
    mine = workspace.read_manifest("colours").set_index("hash")[["label", "split", "excluded"]].sort_index()
    theirs = workspace.read_manifest(tmp_path / "elsewhere" / "datasets" / "colours")
    assert theirs.set_index("hash")[["label", "split", "excluded"]].sort_index().equals(mine)


def test_uploads_fall_back_to_the_exported_zip(imgcls_home):
    import_files([("a.png", _png((200, 0, 0), 1)), ("b.png", _png((200, 0, 0), 2))], "up", "red")
    code = recipe.data_code("up")
    assert "'up.zip'" in code and not recipe.replayable("up")
    assert "journal.edit" not in recipe.session_script("up")


def test_notebook_is_valid_nbformat_with_the_same_code(imgcls_home, mk):
    import_zip(mk.zip(mk.class_members({"a": 3, "b": 3})), "nb")
    nb = json.loads(recipe.session_notebook("nb"))
    assert nb["nbformat"] == 4 and nb["cells"][0]["cell_type"] == "markdown"
    code = ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]
    assert code == [c for _, c in recipe.sections("nb")]
    for cell in nb["cells"]:
        assert cell["id"] and isinstance(cell["source"], list)
    compile("\n".join(code), "nb", "exec")


def test_train_code_names_only_what_differs_from_the_defaults():
    code = recipe.train_code({"strategy": "finetune", "epochs": 7, "seed": 0, "backbone": "efficientnet_lite0",
                              "device": "cuda", "dataset": "x"})
    assert "strategy='finetune'" in code and "epochs=7" in code
    assert "seed=" not in code and "device" not in code and "backbone" not in code
    compile(code, "train", "exec")


def test_code_run_on_the_apps_own_workspace_changes_nothing(imgcls_home, tmp_path):
    src = _zip_on_disk(tmp_path / "colours.zip", per_class=4)
    import_zip(src, "colours")
    a, b = list(workspace.read_manifest("colours")["path"][:2])
    journal.edit("colours", "exclude", [a])
    journal.purge_excluded("colours")
    journal.edit("colours", "exclude", [b])
    journal.edit("colours", "restore", [b])  # the user changed their mind
    before = workspace.read_manifest("colours")
    exec(recipe.data_code("colours"), {})
    assert workspace.read_manifest("colours").equals(before)
    assert (workspace.dataset_dir("colours") / b).exists()


def test_model_runs_are_newest_first_without_experiment_runs(imgcls_home):
    from imgcls.store import runs

    def fake(run_id, **config):
        folder = runs.runs_dir() / run_id
        folder.mkdir(parents=True)
        workspace.atomic_write_json(folder / "config.json", {"dataset": "d", **config})
        workspace.atomic_write_json(folder / "status.json", {"state": "done"})
        (folder / "model.safetensors").write_bytes(b"")

    fake("20260101-000000-d-linear-aaaa")
    fake("20260102-000000-d-linear-bbbb")
    fake("20260103-000000-d-linear-cccc", experiment={"tag": "x"})
    fake("20260104-000000-d-lr-find-dddd", task="lr_find")
    fake("20260105-000000-e-linear-eeee", dataset="e")
    assert runs.model_runs("d") == ["20260102-000000-d-linear-bbbb", "20260101-000000-d-linear-aaaa"]
    from imgcls.ui.learn.learning import latest_run

    assert latest_run("d") == "20260102-000000-d-linear-bbbb"


def test_imports_and_edits_replay_in_the_order_they_happened(imgcls_home, tmp_path, monkeypatch):
    first = _zip_on_disk(tmp_path / "first.zip", per_class=6)
    import_zip(first, "mixed")
    df = workspace.read_manifest("mixed")
    journal.edit("mixed", "move", list(df.loc[df["label"] == "red", "path"]), "train")
    second = tmp_path / "second.zip"
    with zipfile.ZipFile(second, "w") as zf:  # more red images: their split tops up from the edited counts
        for i in range(8):
            zf.writestr(f"red/more{i}.png", _png((200, 30, 30), 100 + i))
    import_zip(second, "mixed", add=True)
    code = recipe.data_code("mixed")
    assert code.index("first.zip") < code.index("journal.edit") < code.index("second.zip")
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "elsewhere"))
    exec(code, {})
    theirs = workspace.read_manifest("mixed").set_index("hash")[["label", "split"]].sort_index()
    monkeypatch.setenv("IMGCLS_HOME", str(imgcls_home))
    mine = workspace.read_manifest("mixed").set_index("hash")[["label", "split"]].sort_index()
    assert theirs.equals(mine)


def test_data_code_for_a_version_leaves_the_edited_dataset_alone_and_rebuilds_that_version_beside_it(
        imgcls_home, tmp_path):
    from imgcls.store import versions

    import_zip(_zip_on_disk(tmp_path / "colours.zip", per_class=4), "colours")
    a, b = list(workspace.read_manifest("colours")["path"][:2])
    journal.edit("colours", "relabel", [a], "green")
    version = versions.dataset_version("colours")
    journal.edit("colours", "exclude", [b])  # made later: not part of that version
    before = workspace.read_manifest("colours")
    code = recipe.data_code("colours", version)
    assert code.count("journal.edit") == 1 and "'exclude'" not in code
    exec(code, {})
    assert workspace.read_manifest("colours").equals(before)
    rebuilt = workspace.read_manifest("colours-edit-1")
    assert versions.kept_digest(rebuilt) == version["kept"] and versions.manifest_digest(rebuilt) == version["digest"]
    exec(code, {})  # a second time the copy is there already and is used as it is
    assert workspace.list_datasets() == ["colours", "colours-edit-1"]


def test_data_code_stops_with_a_plain_message_when_the_source_no_longer_gives_that_version(
        imgcls_home, tmp_path, monkeypatch):
    import pytest

    from imgcls.store import versions

    src = _zip_on_disk(tmp_path / "colours.zip", per_class=4)
    import_zip(src, "colours")
    code = recipe.data_code("colours", versions.dataset_version("colours"), "the data")
    _zip_on_disk(src, per_class=5)  # the file on disk changed since it was imported
    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path / "elsewhere"))
    with pytest.raises(SystemExit, match="colours does not hold the data"):
        exec(code, {})


def test_the_training_code_of_a_cpu_run_names_its_threads_and_device():
    code = recipe.train_code({"strategy": "linear", "threads": 2, "device": "cpu", "seed": 0})
    assert "threads=2" in code and "device='cpu'" in code
    compile(code, "train", "exec")
