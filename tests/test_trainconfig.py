"""TrainConfig's fields are the `train` command's options: names, defaults, help and checks come from the fields."""

from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls.store import ranges
from imgcls.cli import Refused, _add_config_options, build_parser
from imgcls.train.config import STRATEGIES, TrainConfig

REPO = Path(__file__).resolve().parents[1]

# the train command's options as they were written out by hand: (option, dest, default, choices, help)
OPTIONS = [
    ("--dataset", "dataset", None, None, "dataset name"),
    ("--backbone", "backbone", "efficientnet_lite0", None, None),
    ("--strategy", "strategy", "linear", ["linear", "finetune", "full", "scratch"], None),
    ("--epochs", "epochs", None, None, None),
    ("--lr", "lr", None, None, "learning rate, or 'auto' for the learning-rate finder"),
    ("--batch-size", "batch_size", None, None, None),
    ("--img-size", "img_size", None, None, None),
    ("--augment", "augment", "saved", None,
     "saved (the dataset's pipeline, else light), none, light, medium, heavy, or a JSON/YAML file"),
    ("--seed", "seed", 0, None, None),
    ("--device", "device", "auto", None, "auto, cpu, cuda or mps"),
    ("--workers", "workers", None, None, "DataLoader worker processes (default: automatic)"),
    ("--patience", "patience", None, None, "early stopping: epochs without a better validation loss"),
    ("--weight-decay", "weight_decay", 0.05, None, None),
    ("--label-smoothing", "label_smoothing", 0.1, None, None),
    ("--warmup-epochs", "warmup_epochs", 1.0, None, None),
    ("--layer-decay", "layer_decay", 0.7, None, "learning-rate factor per layer, top to bottom"),
    ("--unfreeze", "unfreeze", 8, None, "finetune: how many top layer groups learn"),
    ("--head-epochs", "head_epochs", 30, None, "finetune: epochs of the head-only stage"),
    ("--compile", "compile", False, None, "torch.compile the model (CUDA)"),
    ("--threads", "threads", None, None,  # the one field the hand-written list had left out
     "CPU threads (default: every core this process may use); results depend on it"),
    ("--lr-find", "task", "train", None, "only run the learning-rate finder"),
    ("--resume", "resume", None, None, "continue an interrupted run"),
    ("--run", "run", None, None, argparse.SUPPRESS),
    ("--json", "json", False, None, "print one JSON object as the last line"),
]


def train_parser(parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    parser = parser or build_parser()
    verbs = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return verbs.choices["train"]


def actions() -> dict[str, argparse.Action]:
    return {a.option_strings[-1]: a for a in train_parser()._actions}


@pytest.mark.parametrize("option,dest,default,choices,help", OPTIONS, ids=[o[0] for o in OPTIONS])
def test_every_option_of_the_train_command_keeps_its_name_default_choices_and_help(option, dest, default,
                                                                                   choices, help):
    action = actions()[option]
    assert (action.dest, action.default, action.help) == (dest, default, help)
    assert (list(action.choices) if action.choices else None) == choices


def test_every_field_of_the_config_is_an_option_with_the_fields_default():
    by_dest = {a.dest: a for a in train_parser()._actions}
    for field in dataclasses.fields(TrainConfig):
        default = None if field.default is dataclasses.MISSING else field.default
        assert by_dest[field.name].default == default, field.name
        assert by_dest[field.name].help == field.metadata["help"], field.name
    assert list(by_dest["strategy"].choices) == list(STRATEGIES)


def test_parsed_options_become_the_config_field_by_field():
    args = build_parser().parse_args(["train", "--dataset", "toy", "--strategy", "finetune", "--epochs", "4",
                                      "--lr", "auto", "--weight-decay", "0.01", "--threads", "2", "--compile",
                                      "--lr-find", "--workers", "0"])
    config = TrainConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)})
    assert dataclasses.asdict(config) == dataclasses.asdict(TrainConfig(
        dataset="toy", strategy="finetune", epochs=4, lr="auto", weight_decay=0.01, threads=2, compile=True,
        task="lr_find", workers=0))
    plain = build_parser().parse_args(["train", "--dataset", "toy"])
    fields = {f.name: getattr(plain, f.name) for f in dataclasses.fields(TrainConfig)}
    assert dataclasses.asdict(TrainConfig(**fields)) == dataclasses.asdict(TrainConfig(dataset="toy"))


@pytest.mark.parametrize("option,value,field", [("--threads", "0", "threads"), ("--epochs", "1001", "epochs"),
                                                ("--warmup-epochs", "-1", "warmup_epochs")])
def test_a_number_is_refused_with_the_sentence_of_its_range(option, value, field):
    with pytest.raises(Refused) as refused:
        build_parser().parse_args(["train", "--dataset", "toy", option, value])
    assert str(refused.value).startswith(f"argument {option}: {ranges.TRAIN[field].refusal(int(value))}")


def test_the_strategy_is_one_of_the_four():
    with pytest.raises(Refused, match="invalid choice: 'fast'"):
        build_parser().parse_args(["train", "--strategy", "fast"])


@dataclasses.dataclass
class Wider(TrainConfig):
    """TrainConfig with fields it may gain later, none of them known to the command line."""

    mixup: float = dataclasses.field(default=0.0, metadata={"help": "mixup strength"})
    stages: int | None = None
    tag: str = "plain"
    ema: bool = True
    internal: int = dataclasses.field(default=1, metadata={"cli": False})


def test_a_new_field_becomes_an_option_with_no_other_change():
    parser = argparse.ArgumentParser()
    _add_config_options(parser, Wider)
    args = parser.parse_args(["--dataset", "toy", "--mixup", "0.2", "--stages", "3", "--tag", "x", "--no-ema"])
    assert (args.mixup, args.stages, args.tag, args.ema) == (0.2, 3, "x", False)
    assert not hasattr(args, "internal")
    defaults = parser.parse_args([])
    assert (defaults.mixup, defaults.stages, defaults.tag, defaults.ema) == (0.0, None, "plain", True)
    assert "mixup strength" in parser.format_help()
    with pytest.raises(SystemExit):  # a number field reads numbers
        parser.parse_args(["--stages", "many"])


def test_the_train_module_gives_the_same_config_and_the_backbone_name_agrees():
    from imgcls.vision import models
    from imgcls.train import run as train, config as trainconfig

    assert train.TrainConfig is TrainConfig and train.TrainError is trainconfig.TrainError
    assert train.resolve_device is trainconfig.resolve_device and train.DEFAULTS is trainconfig.DEFAULTS
    assert trainconfig.DEFAULT_BACKBONE == models.DEFAULT_BACKBONE
    assert trainconfig.resolve_device("cpu") == "cpu"
    assert TrainConfig(dataset="toy", device="cpu").resolved().threads >= 1


def test_the_train_help_reads_the_fields_without_loading_torch():
    code = ("import sys\nfrom imgcls.cli import main\n"
            "try:\n    main(['train', '--help'])\nexcept SystemExit:\n    pass\n"
            "print('torch' in sys.modules, 'imgcls.train.run' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines[-1] == "False False"
    text = "\n".join(lines)
    for option in ("--dataset DATASET", "--strategy {linear,finetune,full,scratch}", "--lr-find", "--threads",
                   "--resume RUN", "finetune: epochs of the head-only stage"):
        assert option in text
    assert "--run" not in text  # hidden: a run prepared by the app


OLD_RUN = Path(__file__).resolve().parent / "fixtures" / "workspace-0.1" / "runs" / "20261201-171226-tiny-linear-6bd6"


def test_an_old_runs_config_reads_typed_and_writes_back_the_same():
    from imgcls.train.config import RunConfig

    d = json.loads((OLD_RUN / "config.json").read_text())
    config = RunConfig.from_dict(d)
    assert config.to_dict() == d and list(config.to_dict()) == list(d)
    assert (config.strategy.name, config.epochs, config.classes, config.experiment) == ("linear", 2, ("blue", "red"), None)
    assert config.preprocess.weights == d["weights"] and config.preprocess.img_size == 256


def test_missing_keys_get_defaults_and_unknown_keys_are_kept():
    from imgcls.train.config import RunConfig

    d = json.loads((OLD_RUN / "config.json").read_text())
    for key in ("notes", "head_epochs", "weights"):
        del d[key]
    d["mixup"] = {"alpha": 0.2}
    config = RunConfig.from_dict(d)
    assert (config.notes, config.head_epochs, config.extra) == ((), 30, {"mixup": {"alpha": 0.2}})
    assert config.to_dict() == d  # nothing the file lacked is added, nothing it had is lost
    assert config.preprocess.weights == "efficientnet-lite0-57934424.pth"  # the pretrained rule names them
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.epochs = 3


def test_a_fixed_size_backbone_keeps_its_own_input_size_under_every_strategy():
    from imgcls.train.config import TrainConfig
    from imgcls.vision.models import fixed_input_size

    assert fixed_input_size("vit_small_patch16_224") and not fixed_input_size("efficientnet_lite0")
    for name in ("linear", "finetune", "full", "scratch"):
        vit = TrainConfig(dataset="d", backbone="vit_small_patch16_224", strategy=name).resolved()
        assert vit.img_size is None  # the run takes the backbone's 224
    assert TrainConfig(dataset="d", strategy="linear").resolved().img_size == 288
