"""A workspace written by imgcls 0.1.0 before the job system and the preprocessing identity were unified
(tests/fixtures/workspace-0.1: a dataset with two edits in its journal and a health check, a linear run, a
quick experiment) still reads, and its pages open. The run's weights are left out of the fixture (13 MB);
the weights file format is unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.lab import experiments
from imgcls.health import check as health, job as healthjob
from imgcls.store import journal, runs, versions, workspace
from imgcls.ui.common import nav

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "workspace-0.1"
RUN = "20261201-171226-tiny-linear-6bd6"
EXPERIMENT = "20261201-171258-tiny-transfer-6e17"


@pytest.fixture
def old_home(app_home):
    shutil.copytree(FIXTURE, app_home)  # moved: every path it holds must be read relative to it
    workspace.save_setting("active_dataset", "tiny")
    return app_home


def test_the_dataset_reads_with_its_journal_and_health_report(old_home):
    df = workspace.read_manifest("tiny")
    assert len(df) == 22 and int(df["excluded"].sum()) == 1
    assert [e["action"] for e in journal.history("tiny")] == ["exclude", "relabel"]
    assert (df[df["split"] == "train"]["label"] == "red").sum() == 7  # 6 red, and one blue relabelled
    assert (df["label"] == "red").sum() == 12
    assert journal.undo("tiny") is not None and (workspace.read_manifest("tiny")["label"] == "red").sum() == 11
    report = health.load("tiny")
    assert report["images_checked"] == 22 and health.is_stale("tiny", report)  # edited after the check
    assert healthjob.job_status("tiny")["state"] == "done"


def test_the_run_and_the_experiment_read_as_they_ended(old_home):
    assert runs.list_runs() == [RUN]
    status = runs.read_status(RUN)
    assert status["state"] == "done" and status["result"]["val_accuracy"] == 1.0
    assert runs.read_config(RUN)["strategy"] == "linear"
    assert [r["epoch"] for r in runs.read_metrics(RUN) if r.get("kind") == "epoch"] == [1, 2]
    assert len(versions.run_rows(RUN)) == 22
    listed = experiments.list_experiments("tiny")
    assert [e["id"] for e in listed] == [EXPERIMENT] and listed[0]["state"] == "done"
    assert experiments.result(EXPERIMENT)["kind"] == "transfer"


def _open(page) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=90).run()
    at.switch_page(page.path).run()
    assert not at.exception
    return at


def test_the_review_train_and_learn_pages_show_what_it_holds(old_home):
    at = _open(nav.REVIEW)
    assert [(m.label, m.value) for m in at.metric][:2] == [("Health score", "100/100"), ("Images checked", "22")]
    assert any("edited the dataset since this check" in w.value for w in at.warning)
    at = _open(nav.TRAIN)
    assert ("Validation accuracy", "100.0%") in [(m.label, m.value) for m in at.metric]
    at = _open(nav.LEARN)
    assert any(EXPERIMENT.replace("-", "\\-") in c.value for c in at.caption), "its result, with its id"
    assert at.success and "pretrained weights" in at.success[0].value
