"""The Learn lab's experiments on tiny generated data: each kind end to end, conclusions from measured numbers,
background jobs, the CLI, and a thorough run through the training engine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import plotly.graph_objects as go
import pytest

from imgcls.lab import experiments, quick as exp_quick, scaling as exp_scaling
from imgcls.store import runs, workspace
from imgcls.jobs import procs
from imgcls.lab.experiments import ExperimentConfig, run_experiment

import test_train as train_tests

pytestmark = pytest.mark.usefixtures("imgcls_home")
REPO = Path(__file__).resolve().parents[1]
# tiny images and short budgets keep every experiment to seconds on two cores
TINY = {"img_size": 64, "epochs": 5, "repeats": 2, "copies": 1, "strengths": 3, "changed_val_per_class": 3}
# the number each conclusion must quote, taken from the result's own numbers
QUOTED = {"transfer": "pretrained_accuracy", "augmentation": "clean_val_accuracy", "data-size": "accuracy",
          "variability": "clean_accuracy", "label-noise": "clean_accuracy"}
COLOURS = (("red", (220, 40, 40)), ("green", (40, 200, 40)), ("blue", (40, 40, 220)))


def make_dataset(name: str = "toy", per_class: int = 12) -> str:
    return train_tests.make_dataset(name, per_class, COLOURS, spread=60, side=40)


@pytest.fixture
def toy() -> str:
    name = make_dataset()
    df = workspace.read_manifest(name)
    assert (df["split"] == "val").any() and (df["split"] == "train").sum() >= 15
    return name


def _quoted(result: dict) -> str:
    return f"{100 * result['numbers'][QUOTED[result['kind']]]:.1f}%"


@pytest.mark.parametrize("kind", list(experiments.KINDS))
def test_each_kind_runs_end_to_end_and_concludes_from_its_numbers(toy, kind):
    seen = []
    result = run_experiment(ExperimentConfig(kind, toy, **TINY), progress=lambda f, m: seen.append(f))
    for key in ("kind", "dataset", "mode", "seconds", "series", "table", "conclusion", "numbers"):
        assert key in result, key
    assert result["kind"] == kind and result["mode"] == "quick" and result["dataset"] == toy
    assert result["series"] and result["table"]
    for s in result["series"]:
        assert len(s["x"]) == len(s["y"]) and s["x_label"] is not None and s["y_label"]
    assert _quoted(result) in result["conclusion"], (result["conclusion"], result["numbers"])
    json.dumps(result, allow_nan=False)  # strict JSON: the page and the CLI both read it back
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    fig = experiments.figure(result)
    assert isinstance(fig, go.Figure) and len(fig.data) == len(result["series"])


def test_solid_colours_are_easy_for_pretrained_features(toy):
    result = run_experiment(ExperimentConfig("transfer", toy, **TINY))
    numbers = result["numbers"]
    assert numbers["pretrained_accuracy"] >= 0.8
    assert f"{numbers['gap_points']:.1f} points" in result["conclusion"]
    assert [s["name"] for s in result["series"]] == ["pretrained", "random weights"]
    assert len(result["series"][0]["x"]) == TINY["epochs"]


def test_label_noise_is_deterministic_and_counts_flips_it_found(toy):
    config = ExperimentConfig("label-noise", toy, noise_levels=(0.0, 0.3), **TINY)
    first, second = run_experiment(config), run_experiment(config)
    assert first["numbers"] == second["numbers"] and first["table"] == second["table"]
    row = first["table"][1]
    assert row["flipped images"] > 0 and 0 <= row["found in top"] <= row["flipped images"]
    assert f"{row['found in top']} of the {row['flipped images']} flipped images" in first["conclusion"]


def test_fit_curve_recovers_a_power_law_and_extrapolates():
    n = np.array([2, 4, 8, 16, 32, 64], float)
    curve, form = exp_scaling.fit_curve(n, exp_scaling.power_law(n, 0.95, 0.6, 0.7))
    assert form == "a − b·n^(−c)"
    assert abs(float(curve(128)) - exp_scaling.power_law(128, 0.95, 0.6, 0.7)) < 0.01
    flat, _ = exp_scaling.fit_curve([5, 10], [0.5, 0.6])  # too few points for three parameters
    assert float(flat(20)) > 0.6


def test_flip_labels_changes_exactly_the_share_to_other_classes():
    y = np.repeat(np.arange(4), 25)
    noisy, flipped = exp_scaling.flip_labels(y, 0.2, 4, np.random.default_rng(0))
    assert len(flipped) == 20 and np.all(noisy[flipped] != y[flipped])
    assert np.array_equal(np.delete(noisy, flipped), np.delete(y, flipped))


def test_small_differences_are_called_noise():
    assert exp_quick.compare("A", "B", 0.012, 5.0).startswith("No clear difference: 1.2 points")
    assert "reversed" in exp_quick.compare("A", "B", -0.2, 5.0)


def test_bad_configs_are_refused_plainly(toy):
    with pytest.raises(ValueError, match="Unknown experiment"):
        run_experiment(ExperimentConfig("nope", toy))
    with pytest.raises(workspace.WorkspaceError):
        experiments.start(ExperimentConfig("transfer", "missing"))


def _wait(exp_id: str, states, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st = experiments.status(exp_id)
        if st.get("state") in states:
            return st
        time.sleep(0.3)
    raise AssertionError(f"{exp_id} stayed {experiments.status(exp_id)}; log: "
                         f"{(experiments.exp_dir(exp_id) / 'log.txt').read_text()[-2000:]}")


def test_background_start_status_result_and_listing(toy):
    exp_id = experiments.start(ExperimentConfig("data-size", toy, **TINY))
    assert experiments.status(exp_id)["state"] in ("queued", "running", "done")
    st = _wait(exp_id, ("done", "failed", "cancelled"))
    assert st["state"] == "done", st
    assert st["progress"] == 1.0 and st["pid"]
    result = experiments.result(exp_id)
    assert _quoted(result) in result["conclusion"]
    assert experiments.read_config(exp_id)["img_size"] == 64  # the saved config, not the CLI defaults
    listed = experiments.list_experiments(toy)
    assert [e["id"] for e in listed] == [exp_id] and listed[0]["state"] == "done"
    assert experiments.list_experiments("other") == []


def test_stop_cancels_a_running_experiment_and_its_training_run(toy):
    config = ExperimentConfig("transfer", toy, mode="thorough", img_size=64, epochs=200)  # far too long to finish
    exp_id = experiments.start(config)
    deadline = time.monotonic() + 90
    while not runs.list_runs() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert runs.list_runs(), experiments.status(exp_id)
    st = experiments.stop(exp_id)
    assert st["state"] == "cancelled" and not procs.alive(st["pid"])
    assert runs.read_status(runs.list_runs()[0])["state"] in ("cancelled", "queued")


def test_a_failure_is_one_plain_sentence_with_the_details_in_the_log(toy, monkeypatch):
    def fail(config, progress=None):
        raise RuntimeError("CUDA error: an illegal memory access\n  deep inside the kernel")

    monkeypatch.setattr(experiments, "run_experiment", fail)
    bare = experiments.prepare(ExperimentConfig("transfer", toy))  # as a CLI run without --id: no log.txt
    with pytest.raises(RuntimeError):
        experiments.run_job(bare)
    st = experiments.status(bare)
    assert st["state"] == "failed"
    assert st["message"] == "The experiment stopped with an error: CUDA error: an illegal memory access."
    logged = experiments.prepare(ExperimentConfig("transfer", toy))
    log = experiments.exp_dir(logged) / "log.txt"
    log.write_text("", encoding="utf-8")  # as start() makes it
    with pytest.raises(RuntimeError):
        experiments.run_job(logged)
    message = experiments.status(logged)["message"]
    assert message.endswith(f"The details are in experiments/{logged}/log.txt.")
    details = log.read_text(encoding="utf-8")
    assert "Traceback" in details and "deep inside the kernel" in details
    monkeypatch.setattr(experiments, "run_experiment", lambda *a: (_ for _ in ()).throw(RuntimeError("out of memory")))
    with pytest.raises(RuntimeError):  # the training's own advice for the commonest failure
        experiments.run_job(bare)
    assert "try a smaller batch size" in experiments.status(bare)["message"]


def _cli(home: Path, *args) -> subprocess.CompletedProcess:
    env = dict(os.environ, IMGCLS_HOME=str(home), PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "imgcls", *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=180)


def test_cli_json_and_plain_errors(toy, imgcls_home):
    # a prepared id carries the whole config (here: tiny images) into the command
    exp_id = experiments.prepare(ExperimentConfig("label-noise", toy, **TINY))
    proc = _cli(imgcls_home, "experiment", "label-noise", "--dataset", toy, "--id", exp_id, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["kind"] == "label-noise" and _quoted(result) in result["conclusion"]
    assert experiments.result(exp_id) == result and experiments.status(exp_id)["state"] == "done"
    proc = _cli(imgcls_home, "experiment", "transfer", "--dataset", "missing")
    assert proc.returncode == 1 and proc.stderr.strip().startswith("imgcls: ") and "Traceback" not in proc.stderr


def test_thorough_mode_trains_real_runs(toy):
    # one run on the whole data (train.run) and one with labels flipped (the experiment's own executor)
    config = ExperimentConfig("label-noise", toy, mode="thorough", img_size=64, epochs=1, noise_levels=(0.0, 0.3))
    result = run_experiment(config)
    assert result["mode"] == "thorough" and _quoted(result) in result["conclusion"]
    made = result["numbers"]["runs"]
    assert len(made) == 2
    for run_id in made:
        assert runs.read_status(run_id)["state"] == "done"
        assert runs.read_config(run_id)["experiment"]["tag"] == f"label-noise-{toy}"
    assert runs.read_config(made[1])["experiment"]["relabelled_train_images"] == result["table"][1]["flipped images"]
