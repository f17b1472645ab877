"""The command line, run as a user would: `python -m imgcls …` in a fresh IMGCLS_HOME."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(imgcls_home, tmp_path):
    """Run the CLI in a subprocess; returns (returncode, stdout, stderr)."""
    env = dict(os.environ, IMGCLS_HOME=str(imgcls_home), PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")

    def run(*args):
        proc = subprocess.run([sys.executable, "-m", "imgcls", *map(str, args)], cwd=tmp_path, env=env,
                              capture_output=True, text=True, encoding="utf-8", timeout=120)
        return proc.returncode, proc.stdout, proc.stderr

    return run


def last_json(stdout: str) -> dict:
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert lines, "no output"
    return json.loads(lines[-1])


def assert_plain_failure(rc, stderr, *words):
    assert rc != 0
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert lines[0].startswith("imgcls: ")
    assert "Traceback" not in stderr
    for word in words:
        assert word in lines[0]


def test_import_sample_json(cli, imgcls_home):
    rc, out, err = cli("import", "sample:shapes", "--json")
    assert rc == 0, err
    report = last_json(out)
    for key in ("name", "images", "classes", "splits", "skipped", "class_counts", "skipped_files", "warnings"):
        assert key in report
    assert report["name"] == "shapes"
    assert report["images"] == 500 and report["classes"] == 5
    assert set(report["splits"]) == {"train", "val", "test"} and sum(report["splits"].values()) == 500
    assert report["skipped"] == {}
    assert (imgcls_home / "datasets" / "shapes" / "manifest.csv").is_file()

    rc, out, err = cli("datasets", "--json")
    assert rc == 0, err
    listing = last_json(out)
    assert listing["datasets"] == ["shapes"]
    assert Path(listing["home"]) == imgcls_home.resolve()


def test_import_zip_with_skips_and_labels(cli, mk, tmp_path):
    zpath = mk.zip(mk.class_members({"cats": 3, "dogs": 3}) + [("cats/notes.txt", b"hi"), ("dogs/e.png", b"")],
                   tmp_path / "pets.zip")
    rc, out, err = cli("import", zpath, "--json")
    assert rc == 0, err
    report = last_json(out)
    assert report["name"] == "pets" and report["images"] == 6
    assert report["skipped"] == {"unsupported format": 1, "empty file": 1}

    # human-readable output names what was skipped
    rc, out, err = cli("import", zpath, "--name", "pets text")
    assert rc == 0, err
    assert "Imported 6 images into 'pets text'" in out
    assert "cats/notes.txt" in out and "dogs/e.png" in out

    flat = mk.zip([(f"{i}.jpg", mk.jpeg(i)) for i in range(6)], tmp_path / "flat.zip")
    labels = tmp_path / "labels.csv"
    labels.write_text("filename,label\n" + "".join(f"{i}.jpg,{i % 2}\n" for i in range(6)), encoding="utf-8")
    rc, out, err = cli("import", flat, "--labels", labels, "--name", "digits", "--json")
    assert rc == 0, err
    assert last_json(out)["class_counts"] == {"0": 3, "1": 3}


def test_import_folder_and_add(cli, mk, tmp_path):
    root = tmp_path / "photos"
    for name, data in mk.class_members({"a": 3, "b": 3}):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    rc, out, err = cli("import", root, "--json")
    assert rc == 0, err
    assert last_json(out)["name"] == "photos"
    more = mk.zip(mk.class_members({"c": 3}, start=50), tmp_path / "more.zip")
    rc, out, err = cli("import", more, "--name", "photos", "--json")
    assert_plain_failure(rc, err, "already exists")
    assert last_json(out) == {"error": err.strip()[len("imgcls: "):]}
    rc, out, err = cli("import", more, "--name", "photos", "--add", "--json")
    assert rc == 0, err
    assert last_json(out)["classes"] == 3


def test_unicode_names_round_trip(cli, mk, tmp_path):
    zpath = mk.zip([("猫/写真.jpg", mk.jpeg(1)), ("Ünïcødé class/photo 1 é.png", mk.png(2))], tmp_path / "ünï.zip")
    rc, out, err = cli("import", zpath, "--name", "Ünï 猫", "--json")
    assert rc == 0, err
    report = last_json(out)
    assert report["name"] == "Ünï 猫"
    assert report["class_counts"] == {"Ünïcødé class": 1, "猫": 1}
    assert last_json(cli("datasets", "--json")[1])["datasets"] == ["Ünï 猫"]


def test_caps_from_the_command_line(cli, mk, tmp_path):
    zpath = mk.zip(mk.class_members({"a": 3, "b": 3}), tmp_path / "six.zip")
    rc, out, err = cli("import", zpath, "--max-files", "5", "--json")
    assert_plain_failure(rc, err, "six.zip", "limit")
    rc, out, err = cli("import", zpath, "--max-pixels", "100", "--json")
    assert_plain_failure(rc, err, "No usable images")
    rc, out, err = cli("datasets", "--json")
    assert last_json(out)["datasets"] == []


def test_failures_are_one_plain_line(cli, tmp_path):
    rc, out, err = cli("import", tmp_path / "missing.zip", "--json")
    assert_plain_failure(rc, err, "missing.zip", "does not exist")
    assert "error" in last_json(out)

    text = tmp_path / "notes.zip"
    text.write_text("not a zip")
    rc, out, err = cli("import", text)
    assert_plain_failure(rc, err, "notes.zip", "not a ZIP")
    assert out == ""

    empty = tmp_path / "empty.zip"
    zipfile.ZipFile(empty, "w").close()
    rc, out, err = cli("import", empty)
    assert_plain_failure(rc, err, "empty.zip")

    rc, out, err = cli("import", "sample:nope")
    assert_plain_failure(rc, err, "nope")

    rc, out, err = cli("import", "sample:shapes", "--name", "../bad")
    assert_plain_failure(rc, err, "cannot be a dataset name")

    rc, out, err = cli("import", text, "--labels", tmp_path / "missing.csv")
    assert_plain_failure(rc, err, "missing.csv")

    rc, out, err = cli("rename", "ghost", "other")
    assert_plain_failure(rc, err, "ghost")

    rc, out, err = cli("datasets", "--json")
    assert last_json(out)["datasets"] == []


def test_rename_and_delete(cli, mk, tmp_path):
    for name, start in (("one", 0), ("two", 20)):
        zpath = mk.zip(mk.class_members({"a": 2, "b": 2}, start=start), tmp_path / f"{name}.zip")
        assert cli("import", zpath, "--json")[0] == 0

    rc, out, err = cli("rename", "one", "two")
    assert_plain_failure(rc, err, "already exists")
    rc, out, err = cli("rename", "one", "three", "--json")
    assert rc == 0, err
    assert last_json(out) == {"old": "one", "new": "three"}

    rc, out, err = cli("delete", "three")
    assert_plain_failure(rc, err, "--yes")
    assert last_json(cli("datasets", "--json")[1])["datasets"] == ["three", "two"]

    rc, out, err = cli("delete", "three", "--yes", "--json")
    assert rc == 0, err
    assert last_json(out) == {"deleted": "three"}
    rc, out, err = cli("datasets")
    assert out.split() == ["two"]
    rc, out, err = cli("delete", "three", "--yes")
    assert_plain_failure(rc, err, "three")


def test_datasets_when_empty(cli):
    rc, out, err = cli("datasets")
    assert rc == 0 and "No datasets yet" in out
    rc, out, err = cli("datasets", "--json")
    assert rc == 0 and last_json(out)["datasets"] == []


# --- train: every option lands in the run's config.json under its field's name ------------------------


def test_train_options_are_saved_as_the_runs_config(imgcls_home, capsys):
    from imgcls.store import runs
    from imgcls.cli import main
    from test_train import make_dataset

    make_dataset(per_class=6)
    given = {"strategy": "linear", "epochs": 2, "img_size": 64, "batch_size": 8, "seed": 3, "device": "cpu",
             "weight_decay": 0.01, "label_smoothing": 0.0, "threads": 1, "workers": 0, "augment": "none"}
    assert main(["train", "--dataset", "toy", *[f"--{k.replace('_', '-')}={v}" for k, v in given.items()],
                 "--json"]) == 0
    result = last_json(capsys.readouterr().out)
    (run_id,) = runs.list_runs()
    config = runs.read_config(run_id)
    assert {k: config[k] for k in given} == given and config["task"] == "train"
    assert result["epochs"] <= 2 and result["name"] == "toy linear 1"

    assert main(["train", "--dataset", "toy", "--lr-find", "--img-size", "64", "--device", "cpu", "--json"]) == 0
    found = last_json(capsys.readouterr().out)
    (finder,) = set(runs.list_runs()) - {run_id}
    assert runs.read_config(finder)["task"] == "lr_find" and found["suggestion"] > 0


# --- runs: a finetune stopped after its first epoch stays usable; names -------------------------------


def test_train_stop_evaluate_and_list_a_stopped_finetune(cli, imgcls_home, tmp_path):
    """train --json → stop RUN after the first fine-tuning epoch → evaluate RUN --json → runs --json."""
    from imgcls.store import runs
    from test_runs import LONG_FINETUNE, finetune_epochs, kept_record, wait_for
    from test_train import make_dataset

    make_dataset(per_class=16)
    env = dict(os.environ, IMGCLS_HOME=str(imgcls_home), PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")
    args = [f"--{k.replace('_', '-')}={v}" for k, v in LONG_FINETUNE.items()]
    with open(tmp_path / "train.out", "w") as out, open(tmp_path / "train.err", "w") as err:
        train = subprocess.Popen([sys.executable, "-m", "imgcls", "train", "--dataset", "toy", *args, "--json"],
                                 cwd=tmp_path, env=env, stdout=out, stderr=err, start_new_session=True)
    try:
        wait_for("the run folder", lambda: runs.list_runs() or train.poll() is not None)
        run_id = runs.list_runs()[0]
        wait_for("the first fine-tuning epoch", lambda: finetune_epochs(run_id) or train.poll() is not None)
        assert train.poll() is None, (tmp_path / "train.err").read_text()
        rc, out, err = cli("stop", run_id, "--json")
        assert rc == 0, err
        train.wait(timeout=30)
    finally:
        if train.poll() is None:
            os.killpg(train.pid, 9)
    stopped, kept = last_json(out), kept_record(run_id)
    assert stopped["state"] == "cancelled" and stopped["stopped_early"] and stopped["usable"]
    assert stopped["val_accuracy"] == kept["val_accuracy"] and stopped["name"] == "toy finetune 1"
    assert train.returncode != 0 and f"Run {run_id} (toy finetune 1)" in (tmp_path / "train.err").read_text()

    rc, out, err = cli("evaluate", run_id, "--json")
    assert rc == 0, err
    result = last_json(out)
    assert result["images"] > 0 and result["stopped_early"] and result["name"] == "toy finetune 1"
    # the kept model scores on the validation split what its epoch recorded during training
    assert result["accuracy"] == pytest.approx(kept["val_accuracy"])

    rc, out, err = cli("runs", "--json")
    row = next(r for r in last_json(out)["runs"] if r["run"] == run_id)
    assert row["name"] == "toy finetune 1" and row["state"] == "cancelled" and row["stopped_early"]
    assert row["val_accuracy"] == kept["val_accuracy"] and row["usable"]

    rc, out, err = cli("runs", "rename", run_id, "one epoch in", "--json")
    assert rc == 0, err
    assert last_json(out) == {"run": run_id, "name": "one epoch in"}
    rc, out, err = cli("runs")
    assert "one epoch in" in out and "stopped early" in out and run_id in out
    rc, out, err = cli("export", run_id, "--out", tmp_path / "bundle", "--json")
    assert rc == 0, err
    card = (tmp_path / "bundle" / "MODEL_CARD.md").read_text()
    assert card.startswith("# Model card: one epoch in") and "Stopped early by the user" in card


def test_a_stopped_train_command_says_which_model_it_kept(imgcls_home, capsys):
    import threading

    from imgcls.store import runs
    from imgcls.cli import main
    from test_runs import LONG_FINETUNE, finetune_epochs, wait_for
    from test_train import make_dataset

    make_dataset(per_class=12)

    def stop_after_the_first_epoch() -> None:  # as Stop does: SIGTERM, here to this very process
        wait_for("the first fine-tuning epoch", lambda: runs.list_runs() and finetune_epochs(runs.list_runs()[0]))
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=stop_after_the_first_epoch, daemon=True).start()
    args = [f"--{k.replace('_', '-')}={v}" for k, v in LONG_FINETUNE.items()]
    assert main(["train", "--dataset", "toy", *args, "--json"]) == 1
    run_id = runs.list_runs()[0]
    out, err = capsys.readouterr()
    message = last_json(out)["error"]
    assert err.splitlines()[-1] == f"imgcls: {message}"
    assert message.startswith(f"Run {run_id} (toy finetune 1) was stopped. Stopped early by the user")
    assert f"python -m imgcls evaluate {run_id}" in message
    assert runs.stopped_early(runs.read_status(run_id))


def test_renaming_a_run_refuses_bad_names_in_one_plain_line(cli, imgcls_home):
    from imgcls.store import runnames
    from imgcls.train.run import TrainConfig, prepare_run
    from test_train import SMALL, make_dataset

    make_dataset()
    first, second = (prepare_run(TrainConfig(dataset="toy", **SMALL)) for _ in range(2))
    assert runnames.display_name(second) == "toy linear 2"
    for bad, why in (("toy linear 2", "already called"), ("a\nb", "control"), ("", "empty"), ("x" * 61, "at most")):
        rc, out, err = cli("runs", "rename", first, bad, "--json")
        assert_plain_failure(rc, err, why)
        assert last_json(out)["error"] in err
    assert_plain_failure(*cli("runs", "rename", "no-such-run", "x")[::2], "no-such-run")
    assert runnames.display_name(first) == "toy linear 1"
    rc, out, err = cli("runs", "--json", "rename", first, "mine")  # --json before the names works too
    assert rc == 0 and last_json(out) == {"run": first, "name": "mine"}


def test_publish_prints_an_unguessable_link_and_unpublish_revokes_it(cli, imgcls_home):
    from imgcls.share import demo
    from imgcls.train.run import TrainConfig, prepare_run, run
    from test_train import SMALL, make_dataset

    make_dataset(per_class=8)
    run_id = prepare_run(TrainConfig(dataset="toy", strategy="linear", epochs=3, **SMALL))
    run(run_id, echo=lambda _: None)
    rc, out, err = cli("publish", run_id, "--base-url", "https://demo.example.org/", "--expires", "3", "--json")
    assert rc == 0, err
    found = last_json(out)
    assert found["url"] == f"https://demo.example.org/?demo={found['token']}" and run_id not in found["url"]
    assert found["expires"] and demo.open_demo(found["token"]).run_id == run_id
    rc, out, err = cli("unpublish", run_id, "--json")
    assert rc == 0 and last_json(out)["revoked"] == 1
    assert demo.open_demo(found["token"]) is None
    queued = prepare_run(TrainConfig(dataset="toy", strategy="linear", **SMALL))
    assert_plain_failure(*cli("publish", queued)[::2], "saved model")
