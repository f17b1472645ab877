"""AppTest of the start buttons at the jobs limit: each page says which limit, in one plain sentence."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from imgcls.lab import experiments
from imgcls.health import job as healthjob
from imgcls import jobs
from imgcls.store import quotas, runs, workspace
from imgcls.train.run import TrainConfig, prepare_run
from imgcls.ui.learn import experimenting
from imgcls.ui.common import nav
from authhelpers import write_config

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "app.py")
FULL = "You already have 1 job waiting or running, the most allowed here: wait for one to finish or stop it on the"

pytestmark = pytest.mark.usefixtures("app_home")


@pytest.fixture
def busy(app_home):
    """A dataset 'toy' made active, at most one job waiting or running, and one health check of 'other' running."""
    from test_experiments import make_dataset

    write_config(app_home, "[quotas]\njobs_queued = 1\n")
    workspace.save_setting("active_dataset", make_dataset("toy", per_class=12))
    make_dataset("other", per_class=4)
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    jobs.write_status(healthjob.status_path("other"), state="running", pid=proc.pid, started=time.time())
    jobs.index.note(healthjob.status_path("other"), "health/other")  # as a started check notes itself
    assert quotas.running_jobs() == ["health/other"]
    yield f"{FULL} Review page."
    proc.kill()
    proc.wait()


def open_page(page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page(page).run()
    return at


def test_train_start_at_the_limit_shows_the_sentence_and_makes_no_run(busy):
    at = open_page(nav.TRAIN.path)
    at.button(key="train.start").click().run()
    assert [e.value for e in at.error] == [busy]
    assert runs.list_runs() == []
    assert not at.exception


def test_resume_at_the_limit_shows_the_sentence_and_keeps_the_run_resumable(busy):
    run_id = prepare_run(TrainConfig("toy", epochs=2))
    runs.write_status(run_id, state="running", pid=2**22 + 12345)  # a process that is gone
    at = open_page(nav.TRAIN.path)
    at.button(key=f"train.resume.{run_id}").click().run()
    assert busy in [e.value for e in at.error]
    assert runs.read_status(run_id)["state"] == "interrupted"
    assert not at.exception


def test_health_check_at_the_limit_shows_the_sentence(busy):
    at = open_page(nav.REVIEW.path)
    at.button(key="review.check").click().run()
    assert busy in [e.value for e in at.error]
    assert healthjob.job_status("toy") == {}
    assert not at.exception


def test_experiment_at_the_limit_shows_the_sentence(busy):
    at = open_page(nav.LEARN.path)
    at.radio(key=experimenting.KIND).set_value("label-noise").run()
    at.button(key="learn.experiment.start.label-noise").click().run()
    assert busy in [e.value for e in at.error]
    assert experiments.list_experiments("toy") == []
    assert not at.exception
