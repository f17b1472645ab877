"""Numbers out of range: the command line refuses them in one plain line before anything is made, and the
engine's TrainConfig refuses the same values in the same words (the app builds its runs with it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls.store import ranges

REPO = Path(__file__).resolve().parents[2]

# (verb and its other arguments, option, refused value, words the refusal says)
REFUSED = [
    (["train", "--dataset", "toy"], "--epochs", "-1", "from 1 to 1,000"),
    (["train", "--dataset", "toy"], "--epochs", "0", "from 1 to 1,000"),
    (["train", "--dataset", "toy"], "--epochs", "1001", "from 1 to 1,000"),
    (["train", "--dataset", "toy"], "--epochs", "2.5", "whole number"),
    (["train", "--dataset", "toy"], "--batch-size", "0", "from 1 to 4,096"),
    (["train", "--dataset", "toy"], "--img-size", "1", "from 32 to 1,024"),
    (["train", "--dataset", "toy"], "--img-size", "31", "too small for the backbones"),
    (["train", "--dataset", "toy"], "--lr", "0", "above 0"),
    (["train", "--dataset", "toy"], "--lr", "-0.01", "above 0"),
    (["train", "--dataset", "toy"], "--lr", "nan", "above 0"),
    (["train", "--dataset", "toy"], "--lr", "fast", "'auto'"),
    (["train", "--dataset", "toy"], "--workers", "-1", "from 0 to 256"),
    (["train", "--dataset", "toy"], "--seed", "-5", "Seed must be"),
    (["train", "--dataset", "toy"], "--patience", "0", "Patience must be"),
    (["train", "--dataset", "toy"], "--weight-decay", "-0.1", "from 0 to 1"),
    (["train", "--dataset", "toy"], "--label-smoothing", "1", "below 1"),
    (["train", "--dataset", "toy"], "--warmup-epochs", "-1", "Warm-up epochs"),
    (["train", "--dataset", "toy"], "--layer-decay", "0", "above 0"),
    (["train", "--dataset", "toy"], "--unfreeze", "0", "from 1 to 100"),
    (["train", "--dataset", "toy"], "--head-epochs", "0", "Last-layer epochs"),
    (["predict", "some-run", "a.png"], "--min-confidence", "1.5", "from 0 to 1"),
    (["predict", "some-run", "a.png"], "--min-confidence", "-0.1", "from 0 to 1"),
    (["predict", "some-run", "a.png"], "--top-k", "0", "--top-k"),
    (["import", "sample:shapes", "--name", "refused"], "--max-total-mb", "0", "at least 1"),
    (["import", "sample:shapes", "--name", "refused"], "--max-files", "-3", "at least 1"),
    (["import", "sample:shapes", "--name", "refused"], "--max-ratio", "0.5", "at least 1"),
    (["import", "sample:shapes", "--name", "refused"], "--max-pixels", "0", "at least 1"),
    (["publish", "some-run"], "--expires", "0", "above 0"),
    (["publish", "some-run"], "--expires", "-2", "above 0"),
    (["publish", "some-run"], "--expires", "1e9", "at most 3,650"),
    (["serve-demo"], "--port", "0", "from 1 to 65,535"),
    (["serve-demo"], "--port", "70000", "from 1 to 65,535"),
    (["experiment", "transfer", "--dataset", "toy"], "--seed", "-1", "Seed must be"),
]


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """A workspace with a dataset that trains, so a command let through would make a run."""
    from test_train import make_dataset

    root = tmp_path_factory.mktemp("ranges") / "ws"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("IMGCLS_HOME", str(root))
        make_dataset(per_class=4)
    return root


def tree(root: Path) -> list[str]:
    """Every path under the workspace, so a test sees anything a command made."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, IMGCLS_HOME=str(home), PYTHONPATH=str(REPO), PYTHONIOENCODING="utf-8")
    return subprocess.run([sys.executable, "-m", "imgcls", *args], cwd=home.parent, env=env, capture_output=True,
                          text=True, encoding="utf-8", timeout=120)


@pytest.mark.parametrize("verb,option,value,words", REFUSED, ids=lambda v: v if isinstance(v, str) else None)
def test_the_command_line_refuses_a_number_out_of_range_and_makes_nothing(home, verb, option, value, words):
    before = tree(home)
    proc = cli(home, *verb, option, value, "--json")  # as typed: "--epochs -1"
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("imgcls: "), proc.stderr
    assert option in lines[0] and words in lines[0] and "Traceback" not in proc.stderr
    assert json.loads(proc.stdout.splitlines()[-1]) == {"error": lines[0].removeprefix("imgcls: ")}
    assert tree(home) == before  # no run folder, no dataset, no lock file: nothing was made


def test_values_at_the_edges_of_a_range_are_taken():
    from imgcls.cli import build_parser

    args = build_parser().parse_args(["train", "--dataset", "toy", "--epochs", "1000", "--batch-size", "4096",
                                      "--img-size", "32", "--lr", "auto", "--workers", "0", "--seed", "0",
                                      "--label-smoothing", "0", "--layer-decay", "1", "--warmup-epochs", "0"])
    assert (args.epochs, args.batch_size, args.img_size, args.lr, args.workers) == (1000, 4096, 32, "auto", 0)
    assert build_parser().parse_args(["train", "--lr", "3e-3"]).lr == pytest.approx(0.003)
    predict = build_parser().parse_args(["predict", "r", "a.png", "--min-confidence", "1", "--top-k", "1"])
    assert (predict.min_confidence, predict.top_k) == (1.0, 1)
    assert build_parser().parse_args(["publish", "r", "--expires", "0.5"]).expires == 0.5
    assert build_parser().parse_args(["import", "x.zip", "--seed", "-7"]).seed == -7  # a split seed is any int


# (TrainConfig field, refused value, the CLI option that names the same setting)
ENGINE = [("epochs", -1, "--epochs"), ("epochs", 0, "--epochs"), ("batch_size", 0, "--batch-size"),
          ("img_size", 1, "--img-size"), ("lr", 0, "--lr"), ("workers", -1, "--workers"), ("seed", -1, "--seed"),
          ("label_smoothing", 1.0, "--label-smoothing"), ("patience", 0, "--patience"),
          ("head_epochs", 0, "--head-epochs"), ("unfreeze", 0, "--unfreeze"), ("layer_decay", 0.0, "--layer-decay")]


@pytest.mark.parametrize("field,value,option", ENGINE)
def test_the_engine_refuses_the_same_values_in_the_same_words(imgcls_home, field, value, option):
    from imgcls.cli import Refused, build_parser
    from imgcls.train.run import TrainConfig, TrainError, prepare_run
    from test_train import make_dataset

    make_dataset(per_class=4)
    with pytest.raises(TrainError) as refused:
        prepare_run(TrainConfig(dataset="toy", **{field: value}))
    assert not (imgcls_home / "runs").exists() or not any((imgcls_home / "runs").iterdir())
    with pytest.raises(Refused) as by_cli:
        build_parser().parse_args(["train", "--dataset", "toy", option, str(value)])
    assert str(refused.value) == ranges.TRAIN[field].refusal(value)
    # the command line says the same sentence, naming the option and where to read about it
    assert str(by_cli.value).startswith(f"argument {option}: {refused.value}")


def test_a_config_changed_after_it_was_made_is_checked_again():
    import dataclasses

    from imgcls.train.run import TrainConfig, TrainError

    config = TrainConfig(dataset="toy", epochs=5.0, lr="3e-3")
    assert (config.epochs, config.lr) == (5, 0.003)  # whole numbers and typed rates come out as numbers
    with pytest.raises(TrainError, match="Epochs must be a whole number from 1 to 1,000; 0 is not"):
        dataclasses.replace(config, epochs=0)  # 0 was once taken as "the default" silently
    with pytest.raises(TrainError, match="Batch size"):
        TrainConfig(dataset="toy", batch_size=True)


def test_the_train_pages_fields_stay_inside_the_engines_ranges(app_home):
    """Every number the Train page lets a person type is one TrainConfig accepts: the page never builds a
    config the engine refuses."""
    from streamlit.testing.v1 import AppTest

    from imgcls.store import workspace
    from imgcls.ui.common import nav
    from test_train import make_dataset

    make_dataset(per_class=4)
    workspace.save_setting("active_dataset", "toy")
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=90).run()
    at.switch_page(nav.TRAIN.path).run()
    assert not at.exception
    checked = 0
    for box in at.number_input:
        field = box.key.removeprefix("train.")
        if field in ranges.TRAIN:
            allowed = ranges.TRAIN[field]
            assert allowed.check(box.min) == box.min and allowed.check(box.max) == box.max, field
            checked += 1
    assert checked >= 10, [b.key for b in at.number_input]
