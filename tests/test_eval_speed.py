"""What keeps the Evaluate and Train pages quick: no torch where no model is needed, a job that says it has
started before loading torch, an ETA from the current stage's throughput, an export built once per model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from imgcls.store import runs, workspace

ROOT = Path(__file__).resolve().parents[1]


def _python(code: str, home: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env=dict(os.environ, IMGCLS_HOME=str(home)), timeout=300)


def test_the_evaluate_page_modules_load_without_torch(tmp_path):
    # torch, timm and scikit-learn cost seconds on a fresh server: a page showing saved results needs none
    out = _python("import sys\n"
                  "import imgcls.evaluate.evaluation, imgcls.evaluate.predict, imgcls.evaluate.export, imgcls.vision.imgcache\n"
                  "import imgcls.ui.evaluate.evaluating, imgcls.ui.evaluate.gallery, imgcls.ui.evaluate.predict\n"
                  "import imgcls.ui.evaluate.compare, imgcls.ui.demo, imgcls.ui.common.runlist\n"
                  "print(sorted(m for m in ('torch', 'timm', 'sklearn', 'albumentations') if m in sys.modules))",
                  tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def _prepared(home: Path, run_id: str = "r1") -> Path:
    folder = home / "runs" / run_id
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"dataset": "toy", "task": "train", "device": "cpu"}))
    (folder / "status.json").write_text(json.dumps({"state": "queued", "message": "Waiting to start"}))
    return folder / "status.json"


def _wait_for(check, what: str, timeout: float = 60.0):
    import time

    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_a_job_waits_for_its_device_without_torch_then_says_it_runs(tmp_path, monkeypatch):
    import psutil

    from imgcls import jobs
    from imgcls.train import runjobs

    monkeypatch.setenv("IMGCLS_HOME", str(tmp_path))
    status = _prepared(tmp_path)
    (tmp_path / "runs" / "r1" / "config.json").write_text(json.dumps({"dataset": "none", "device": "cpu"}))
    with jobs.slots.hold("cpu"):  # another job has the CPU
        pid = runjobs.start("r1")
        _wait_for(lambda: json.loads(status.read_text()).get("message") == jobs.WAITING, "the job to queue")
        now = json.loads(status.read_text())
        assert now["state"] == "queued" and now["queue"] == 1 and runjobs.queue_position("r1") == 1
        maps = " ".join(m.path for m in psutil.Process(pid).memory_maps())
        assert "libtorch" not in maps and psutil.Process(pid).memory_info().rss < 150e6  # not hundreds of MiB
    # its turn: the same process (same pid) becomes `imgcls train --run r1`, which fails: no such dataset
    _wait_for(lambda: json.loads(status.read_text()).get("state") != "queued", "the job to start")
    assert json.loads(status.read_text())["pid"] == pid
    _wait_for(lambda: json.loads(status.read_text()).get("state") == "failed", "the job to fail (no dataset)")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_eta_follows_the_current_stage_and_does_not_drift(imgcls_home):
    from imgcls.train.run import Reporter

    run_id = "eta"
    runs.run_dir(run_id).mkdir(parents=True)
    clock = Clock()
    rep = Reporter(run_id, total_units=2000, echo=lambda _: None, clock=clock)
    for step in range(10):  # decoding: 1000 units in 1 s, too short a stage to trust
        clock.now += 0.1
        rep.advance(100, f"Decoding images {step * 10}%", force=True)
    assert runs.read_status(run_id)["eta_seconds"] is None  # not guessed from a stage shorter than its warm-up
    etas = []
    for step in range(1, 101):  # epochs: 10 units a second, steadily; 1000 units at most
        clock.now += 1.0
        rep.advance(10, f"Epoch 1/2: {step * 10} images", force=True)
        etas.append(runs.read_status(run_id)["eta_seconds"])
    # from the stage's own rate: what is left at 10 units a second, right from the third second on
    assert etas[2] == pytest.approx((1000 - 30) / 10)
    assert all(e == pytest.approx((1000 - 10 * (n + 1)) / 10) for n, e in enumerate(etas[2:], start=2))
    assert etas[-1] == pytest.approx(0.0)


def test_a_new_stage_counts_the_last_estimate_down_while_it_warms_up(imgcls_home):
    from imgcls.train.run import Reporter

    run_id = "eta2"
    runs.run_dir(run_id).mkdir(parents=True)
    clock = Clock()
    rep = Reporter(run_id, total_units=1000, echo=lambda _: None, clock=clock)
    for step in range(1, 6):  # a first stage at 20 units a second for 5 s
        clock.now += 1.0
        rep.advance(20, f"Computing backbone features {step * 20}%", force=True)
    before = runs.read_status(run_id)["eta_seconds"]
    assert before == pytest.approx((1000 - 100) / 20)
    clock.now += 0.5
    rep.advance(300, "Training the last layer: epoch 1/3", force=True)  # fast, but only half a second of it
    assert runs.read_status(run_id)["eta_seconds"] == pytest.approx(before - 0.5)
    clock.now += 2.0
    rep.advance(300, "Training the last layer: epoch 2/3", force=True)  # now its own rate: 600 in 2.5 s
    assert runs.read_status(run_id)["eta_seconds"] == pytest.approx((1000 - 700) / (600 / 2.5))


@pytest.fixture
def trained(imgcls_home):
    from test_train import SMALL, make_dataset

    from imgcls.train.run import TrainConfig, prepare_run, run

    make_dataset(per_class=8)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=3, **SMALL))
    run(run_id, echo=lambda _: None)
    return run_id


def test_the_export_zip_is_built_once_per_model_and_name(trained, monkeypatch):
    from imgcls.evaluate import export, formats, ood
    from imgcls.store import runnames

    (runs.run_dir(trained) / ood.FILE).unlink()  # the training job saved one: the export must not need it
    # the formats every bundle has are enough to see when it is built (test_export zips all of them)
    monkeypatch.setattr(formats, "FORMATS", tuple(f for f in formats.FORMATS if f.required))
    built = []
    real = export.export_run
    monkeypatch.setattr(export, "export_run", lambda *a, **k: built.append(1) or real(*a, **k))
    first = export.export_zip(trained)
    assert export.export_zip(trained) == first and built == [1]  # the second request reads the file
    assert not (runs.run_dir(trained) / ood.FILE).exists()  # the export needs no out-of-distribution reference
    with zipfile.ZipFile(first) as zf:
        names = set(zf.namelist())
        assert {"model.safetensors", "model.pt2", "model.onnx", "predict.py", "MODEL_CARD.md",
                "goldens/goldens.json"} <= names  # at the top of the archive, as before
        assert zf.getinfo("model.onnx").compress_type == zipfile.ZIP_STORED
        assert zf.getinfo("MODEL_CARD.md").compress_type == zipfile.ZIP_DEFLATED
    runnames.rename_run(trained, "my best model")  # the card names the run: a new name, a new bundle
    second = export.export_zip(trained)
    assert second != first and built == [1, 1] and not first.exists()
    with zipfile.ZipFile(second) as zf:
        assert "my best model" in zf.read("MODEL_CARD.md").decode()
    os.utime(runs.run_dir(trained) / "model.safetensors")  # a retrained model: built anew too
    assert export.export_zip(trained) != second and built == [1, 1, 1]
    assert len(list(runs.run_dir(trained).glob("export-*.zip"))) == 1
    assert not [p for p in runs.run_dir(trained).iterdir() if p.name.startswith(".export")]
    assert workspace.read_json(runs.run_dir(trained) / "status.json")["state"] == "done"


def test_the_export_bundle_builds_as_a_background_job(trained):
    import time
    import zipfile

    from imgcls import jobs
    from imgcls.evaluate import export, exportjob
    from imgcls.store import quotas

    assert exportjob.ready(trained) is None and exportjob.status(trained) == {}
    exportjob.start(trained)
    assert exportjob.status(trained)["state"] in jobs.ACTIVE and quotas.running_jobs() == [f"export/{trained}"]
    exportjob.start(trained)  # a second click while it runs starts nothing more
    deadline = time.monotonic() + 240
    while exportjob.status(trained).get("state") in jobs.ACTIVE and time.monotonic() < deadline:
        time.sleep(0.3)
    log = (runs.run_dir(trained) / "export-log.txt").read_text(errors="replace")
    assert exportjob.status(trained)["state"] == "done", log
    assert exportjob.ready(trained) == export.bundle_path(trained)
    with zipfile.ZipFile(exportjob.ready(trained)) as zf:
        assert any(n.endswith("model.onnx") for n in zf.namelist())
    assert quotas.running_jobs() == []


def test_exporting_a_run_without_a_model_says_so_in_words(imgcls_home):
    from imgcls.evaluate import export
    from imgcls.store import workspace as ws

    folder = runs.run_dir("r1")
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"dataset": "toy", "device": "cpu"}))
    with pytest.raises(ws.WorkspaceError, match="'r1' has saved no model yet"):
        export.bundle_path("r1")
    with pytest.raises(ws.WorkspaceError, match="There is no run 'nope'"):
        export.bundle_path("nope")
