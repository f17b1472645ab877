"""Run folders beyond training: the model a stopped run keeps, and run names (one rule, unique, editable)."""

from __future__ import annotations

import os
import re
import time

import numpy as np
import pytest
from safetensors.numpy import save_file

from imgcls import jobs
from imgcls.train import runjobs
from imgcls.store import runnames, runs, workspace
from imgcls.train.run import TrainConfig, prepare_run

from test_train import SMALL, make_dataset

pytestmark = pytest.mark.usefixtures("imgcls_home")
# A finetune that would run for minutes: it is stopped long before its last epoch.
LONG_FINETUNE = {"strategy": "finetune", "epochs": 200, "patience": 200, "head_epochs": 2, **SMALL}


def finetune_epochs(run_id: str) -> list[int]:
    return [m["epoch"] for m in runs.read_metrics(run_id) if m.get("kind") == "epoch" and m.get("stage") == "finetune"]


def wait_for(what: str, done, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.2)


def stopped_finetune(dataset: str = "toy") -> str:
    """A real background finetune on `dataset`, stopped with jobs.stop after its first network epoch."""
    run_id = prepare_run(TrainConfig(dataset=dataset, **LONG_FINETUNE))
    runjobs.start(run_id)
    wait_for("the first fine-tuning epoch", lambda: finetune_epochs(run_id)
             or runs.read_status(run_id).get("state") in runs.FINAL_STATES)
    assert runjobs.stop(run_id)["state"] == "cancelled"
    return run_id


def kept_record(run_id: str) -> dict:
    """The epoch record of the model on disk, found through the epoch the trainer wrote into it."""
    meta = runs.model_metadata(runs.run_dir(run_id) / "model.safetensors")
    records = [m for m in runs.read_metrics(run_id) if m.get("kind") == "epoch"]
    if "epoch" in meta:
        return [m for m in records if m["stage"] == "finetune" and m["epoch"] == int(meta["epoch"])][-1]
    head = [m for m in records if m["stage"] == "head"]
    return min(head, key=lambda m: m["val_loss"])


# --- what a stopped run keeps ------------------------------------------------------------------


def fake_run(run_id: str, state: str = "cancelled", strategy: str = "finetune", records=(), meta=None,
             **status) -> str:
    """A run folder written by hand, with a real (tiny) safetensors model carrying `meta`."""
    folder = runs.runs_dir() / run_id
    folder.mkdir(parents=True)
    workspace.atomic_write_json(folder / "config.json", {"dataset": "d", "strategy": strategy, "epochs": 6})
    workspace.atomic_write_json(folder / "status.json", {"state": state, **status})
    for record in records:
        runs.append_metrics(run_id, {"kind": "epoch", **record})
    if meta is not None:
        save_file({"w": np.zeros(2, dtype=np.float32)}, str(folder / "model.safetensors"), metadata=meta)
    return run_id


def epoch(stage: str, n: int, loss: float, acc: float) -> dict:
    return {"stage": stage, "epoch": n, "val_loss": loss, "val_accuracy": acc}


HEAD = [epoch("head", 1, 0.50, 0.6), epoch("head", 2, 0.40, 0.7), epoch("head", 3, 0.39995, 0.9)]


def test_the_kept_model_is_the_epoch_the_trainer_saved():
    # the network stage saved epoch 2; epoch 3 (worse) ran after it
    net = fake_run("20260101-000000-d-finetune-aaaa", records=HEAD + [
        epoch("finetune", 1, 0.45, 0.65), epoch("finetune", 2, 0.30, 0.8), epoch("finetune", 3, 0.35, 0.95)],
        meta={"run": "x", "epoch": "2"})
    assert runs.read_status(net)["result"] == {"val_accuracy": 0.8, "val_loss": 0.30, "best_epoch": 2,
                                               "best_stage": "finetune", "epochs": 3, "stopped_early": True}
    # the last-layer stage's model: the first epoch that beat the best loss by 1e-4 (not epoch 3, by 5e-5)
    head = fake_run("20260102-000000-d-finetune-bbbb", records=HEAD + [epoch("finetune", 1, 0.45, 0.99)],
                    meta={"run": "x", "stage": "head"})
    result = runs.read_status(head)["result"]
    assert (result["val_accuracy"], result["best_epoch"], result["best_stage"]) == (0.7, 0, "head")
    assert "last-layer stage (validation accuracy 70.0%)" in runs.stopped_summary({"epochs": 6}, runs.read_status(head))
    # a resumed run repeats an epoch: its last record is the one that counts
    again = fake_run("20260103-000000-d-full-cccc", strategy="full", state="interrupted", records=[
        epoch("full", 1, 0.5, 0.5), epoch("full", 1, 0.4, 0.75)], meta={"epoch": "1"})
    assert runs.read_status(again)["result"]["val_accuracy"] == 0.75
    # killed between saving the model and logging its epoch: the epoch is known, its score is not
    torn = fake_run("20260104-000000-d-full-dddd", strategy="full", records=[epoch("full", 1, 0.5, 0.5)],
                    meta={"epoch": "2"})
    assert runs.read_status(torn)["result"]["best_epoch"] == 2
    assert runs.read_status(torn)["result"]["val_accuracy"] is None
    assert runs.model_runs("d") == [torn, again, head, net]


def test_only_runs_with_a_model_that_have_ended_are_usable():
    done = fake_run("20260101-000000-d-linear-aaaa", state="done", strategy="linear", meta={},
                    result={"val_accuracy": 0.9, "val_loss": 0.1})
    no_model = fake_run("20260102-000000-d-finetune-bbbb")
    running = fake_run("20260103-000000-d-finetune-cccc", state="running", pid=os.getpid(), meta={"epoch": "1"})
    vanished = fake_run("20260104-000000-d-finetune-dddd", state="running", pid=2**22 + 12345, meta={"epoch": "1"},
                        records=[epoch("finetune", 1, 0.3, 0.8)])
    failed = fake_run("20260105-000000-d-finetune-eeee", state="failed", meta={"epoch": "1"})
    assert runs.read_status(done)["result"] == {"val_accuracy": 0.9, "val_loss": 0.1}  # a finished run's own
    assert "result" not in runs.read_status(no_model) and not runs.stopped_early(runs.read_status(no_model))
    assert "result" not in runs.read_status(running)
    assert runs.read_status(vanished)["state"] == "interrupted"
    assert runs.stopped_early(runs.read_status(vanished))
    assert runs.model_runs("d") == [vanished, done]
    assert not runs.usable(failed, runs.read_config(failed), runs.read_status(failed))
    assert runs.model_metadata(runs.run_dir(no_model) / "model.safetensors") == {}  # no file, no metadata


def test_a_real_stop_after_the_first_finetune_epoch_keeps_a_usable_model():
    make_dataset(per_class=12)
    run_id = stopped_finetune()
    status = runs.read_status(run_id)
    assert runs.stopped_early(status) and runs.model_runs("toy") == [run_id]
    assert status["result"]["val_accuracy"] == kept_record(run_id)["val_accuracy"]
    assert "best model so far is kept" in status["message"]
    label = runnames.describe(run_id, runs.read_config(run_id), status)
    assert label == f"toy finetune 1 · toy · finetune · {status['result']['val_accuracy']:.1%} · stopped early"


def test_a_stop_before_any_model_says_there_is_nothing_to_evaluate():
    make_dataset()
    run_id = prepare_run(TrainConfig(dataset="toy", **LONG_FINETUNE))
    with jobs.slots.hold("cpu"):  # the job waits for the device, so it cannot have saved anything
        runjobs.start(run_id)
        wait_for("the job to queue", lambda: runs.read_status(run_id).get("message") == "Waiting for the device")
        status = runjobs.stop(run_id)
    assert status["state"] == "cancelled" and "nothing to evaluate" in status["message"]
    assert runs.model_runs("toy") == []


# --- names -----------------------------------------------------------------------------------------


def test_new_runs_get_short_unique_names():
    make_dataset()
    names = [runnames.display_name(prepare_run(TrainConfig(dataset="toy", strategy=s, **SMALL)))
             for s in ("linear", "linear", "finetune")]
    assert names == ["toy linear 1", "toy linear 2", "toy finetune 1"]
    lr = prepare_run(TrainConfig(dataset="toy", task="lr_find", **SMALL))
    assert runnames.display_name(lr) == "toy linear LR search 1"
    first = runs.list_runs()[-1]
    runnames.rename_run(first, "Toy Linear 3")  # a name the next run would have had
    nxt = prepare_run(TrainConfig(dataset="toy", **SMALL))
    assert runnames.display_name(nxt) == "toy linear 4"
    assert runs.read_config(nxt)["name"] == "toy linear 4"


def test_a_name_handed_out_is_not_handed_out_again_before_its_run_is_saved():
    assert runnames.new_run_name("toy", "linear") == "toy linear 1"
    assert runnames.new_run_name("toy", "linear") == "toy linear 2"  # the first has no config.json yet


def test_one_rule_for_run_names():
    assert runnames.check_run_name("  ünï 猫 run · 2  ") == "ünï 猫 run · 2"
    assert runnames.check_run_name("👩\u200d💻 test") == "👩\u200d💻 test"  # emoji sequences need the joiner
    assert runnames.check_run_name("x" * runnames.NAME_MAX) == "x" * runnames.NAME_MAX
    for bad, why in (("", "empty"), ("   ", "empty"), (None, "empty"), ("x" * 61, "at most 60"),
                     ("a\nb", "U+000A"), ("a\tb", "U+0009"), ("a\x00b", "U+0000"), ("abc\u202edef", "U+202E"),
                     ("a\u2028b", "U+2028")):
        with pytest.raises(workspace.WorkspaceError, match=re.escape(why)):
            runnames.check_run_name(bad)


def test_renaming_keeps_the_id_and_refuses_a_name_in_use():
    make_dataset()
    first, second = (prepare_run(TrainConfig(dataset="toy", **SMALL)) for _ in range(2))
    assert runnames.rename_run(first, "  red vs blue  ") == "red vs blue"
    assert runs.read_config(first)["name"] == "red vs blue" and sorted(runs.list_runs()) == sorted([first, second])
    with pytest.raises(workspace.WorkspaceError, match="already called"):
        runnames.rename_run(second, "RED VS BLUE")
    assert runnames.rename_run(first, "Red vs Blue") == "Red vs Blue"  # its own name, in other letters
    with pytest.raises(workspace.WorkspaceError, match="no run"):
        runnames.rename_run("no-such-run", "x")


def test_runs_made_before_names_read_as_dataset_strategy_and_time():
    folder = runs.runs_dir() / "20261127-140205-shapes-linear-3f2a"
    folder.mkdir(parents=True)
    workspace.atomic_write_json(folder / "config.json", {"dataset": "shapes", "strategy": "linear"})
    assert runnames.display_name(folder.name) == "shapes linear, 27 Nov 14:02"
    odd = runs.runs_dir() / "hand-made"
    odd.mkdir()
    workspace.atomic_write_json(odd / "config.json", {"dataset": "shapes"})
    assert runnames.display_name("hand-made") == "hand-made"
    # the stand-in counts as taken
    with pytest.raises(workspace.WorkspaceError, match="already called"):
        runnames.rename_run("hand-made", "Shapes linear, 27 Nov 14:02")


def test_runs_made_within_one_second_list_newest_first_whatever_their_id_tails():
    for run_id, created in [("20261201-120000-toy-linear-ffff", 100.0), ("20261201-120000-toy-linear-0000", 200.0),
                            ("20261201-115959-toy-linear-9999", 300.0)]:
        runs.run_dir(run_id).mkdir(parents=True)
        workspace.atomic_write_json(runs.run_dir(run_id) / "config.json", {"dataset": "toy"})
        workspace.atomic_write_json(runs.run_dir(run_id) / "status.json", {"state": "done", "created": created})
    # the id's second decides first; within one second, the time the status records (not the random tail)
    assert runs.list_runs() == ["20261201-120000-toy-linear-0000", "20261201-120000-toy-linear-ffff",
                                "20261201-115959-toy-linear-9999"]
