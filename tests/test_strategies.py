"""The four strategies' rules in train.strategies: each rule, the decisions the training executor used to take
from the strategy's name reproduced for every strategy and both tasks, and the name checks kept below
training (workspace, vision, evaluation) held to the same rules."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from imgcls.evaluate import evaluation, ood
from imgcls.store import runs, workspace
from imgcls.train import config as trainconfig
from imgcls.train.config import RunConfig, TrainError
from imgcls.train.heads import HEAD_UNIT
from imgcls.train.netfit import param_groups
from imgcls.train.run import _plan_units
from imgcls.train.strategies import ALL, strategy
from imgcls.vision.preprocess import Preprocess, weights_id

NAMES = ("linear", "finetune", "full", "scratch")
TASKS = ("train", "lr_find")
DATA_CONFIG = {"input_size": [3, 224, 224], "interpolation": "bicubic", "mean": [0.485, 0.456, 0.406],
               "std": [0.229, 0.224, 0.225], "crop_pct": 0.875, "crop_mode": "center"}

# The executor's decisions as it took them from the strategy's name before the strategies were data
# (train/run.py, heads.py, netfit.py): the reference each rule must reproduce.
OLD = {
    "pretrained": lambda c: c["strategy"] != "scratch",
    "last-layer stage": lambda c: c["task"] != "lr_find" and c["strategy"] in ("linear", "finetune"),
    "network stage": lambda c: c["task"] != "lr_find" and c["strategy"] != "linear",
    "sweeps the head": lambda c: c["strategy"] == "linear",
    "head lr": lambda c: c["lr"] if c["strategy"] == "linear" else 3e-3,
    "head epochs": lambda c: c["epochs"] if c["strategy"] == "linear" else c["head_epochs"],
    "head patience": lambda c: c["patience"] if c["strategy"] == "linear" else 10,
    "layer decay": lambda c: 1.0 if c["strategy"] == "scratch" else c["layer_decay"],
    "network stage name": lambda c: c["strategy"],
}


class Fields:
    """A run's fields as attributes, the way the strategy's rules read them."""

    def __init__(self, d: dict):
        self.__dict__.update(d)


def _config(name: str, task: str = "train", **kw) -> dict:
    base = {"strategy": name, "task": task, "epochs": 7, "head_epochs": 13, "patience": 4, "lr": 5e-4,
            "layer_decay": 0.6, "unfreeze": 3, "weight_decay": 0.05}
    return base | kw


def _new(c: dict) -> dict:
    s, f = strategy(c["strategy"]), Fields(c)
    lr_find = c["task"] == "lr_find"
    return {
        "pretrained": s.pretrained,
        "last-layer stage": not lr_find and s.head_first,
        "network stage": not lr_find and s.trains_network,
        "sweeps the head": not s.trains_network,
        "head lr": s.head_stage_lr(f),
        "head epochs": s.head_epochs(f) if s.head_first else None,
        "head patience": s.head_stage_patience(f),
        "layer decay": s.decay(f),
        "network stage name": s.last_stage if s.trains_network else c["strategy"],
    }


@pytest.mark.parametrize("name,task", list(itertools.product(NAMES, TASKS)))
def test_each_rule_gives_what_the_strategys_name_decided_before(name, task):
    c = _config(name, task)
    # the last-layer stage's own rules only where there is one (the old code also named numbers for the others)
    applies = [rule for rule in OLD if strategy(name).head_first or not rule.startswith("head ")]
    new = _new(c)
    assert {rule: new[rule] for rule in applies} == {rule: OLD[rule](c) for rule in applies}
    assert len(applies) == (len(OLD) if name in ("linear", "finetune") else len(OLD) - 3)


def test_the_head_stage_of_an_lr_search_uses_the_sweep():
    for name in ("linear", "finetune"):
        assert strategy(name).head_stage_lr(Fields(_config(name, lr="auto"))) == "auto"


def test_the_four_strategies_and_their_stages():
    assert tuple(ALL) == NAMES
    assert [s.name for s in ALL.values() if not s.pretrained] == ["scratch"]
    assert [s.name for s in ALL.values() if s.head_first] == ["linear", "finetune"]
    assert [s.name for s in ALL.values() if not s.trains_network] == ["linear"]
    assert [s.name for s in ALL.values() if s.top_layers_only] == ["finetune"]
    assert {s.name: s.last_stage for s in ALL.values()} == {"linear": "head", "finetune": "finetune",
                                                            "full": "full", "scratch": "scratch"}
    assert {s.name: s.head_epochs_field for s in ALL.values()} == {"linear": "epochs", "finetune": "head_epochs",
                                                                   "full": None, "scratch": None}


def test_an_unknown_strategy_is_refused_with_the_four_names():
    with pytest.raises(TrainError, match="Unknown strategy 'fast': choose linear, finetune, full, scratch"):
        strategy("fast")
    with pytest.raises(TrainError):
        trainconfig.TrainConfig(dataset="toy", strategy="fast", device="cpu").resolved()


def test_the_config_modules_tables_are_built_from_the_strategies():
    assert list(trainconfig.STRATEGIES) == list(NAMES)
    for name, s in ALL.items():
        assert trainconfig.STRATEGIES[name] == s.description
        assert trainconfig.DEFAULTS[name] == {"epochs": s.defaults.epochs, "lr": s.defaults.lr,
                                              "patience": s.defaults.patience, "batch_size": s.defaults.batch_size,
                                              "img_size": s.defaults.img_size}
    resolved = trainconfig.TrainConfig(dataset="toy", strategy="finetune", device="cpu").resolved()
    assert (resolved.epochs, resolved.lr, resolved.patience, resolved.batch_size, resolved.img_size) == \
        (6, 3e-4, 3, 32, 288)


# --- the name checks below training, held to the rules ---

@pytest.mark.parametrize("name", NAMES)
def test_a_run_without_saved_weights_names_them_by_the_pretrained_rule(name):
    pre = Preprocess.for_run({"backbone": "efficientnet_lite0", "strategy": name, "img_size": 64,
                              "data_config": DATA_CONFIG})
    assert pre.weights == weights_id("efficientnet_lite0", strategy(name).pretrained)


def _run_folder(name: str) -> str:
    run_id = f"20260101-000000-toy-{name}-0000"
    folder = runs.run_dir(run_id)
    folder.mkdir(parents=True)
    workspace.atomic_write_json(folder / "config.json", {"dataset": "toy", "strategy": name, "epochs": 5})
    records = [{"kind": "epoch", "stage": "head", "epoch": e, "val_loss": 1.0 - e / 10, "val_accuracy": 0.5}
               for e in (1, 2, 3)]
    if name != "linear":
        records += [{"kind": "epoch", "stage": name, "epoch": e, "val_loss": 0.5 - e / 10, "val_accuracy": 0.9}
                    for e in (1, 2)]
    for record in records:
        runs.append_metrics(run_id, record)
    return run_id


@pytest.mark.usefixtures("imgcls_home")
@pytest.mark.parametrize("name", NAMES)
def test_a_stopped_run_counts_the_epochs_of_its_last_stage(name):
    kept = runs._kept(_run_folder(name))
    assert kept["epochs"] == (3 if strategy(name).last_stage == "head" else 2)


@pytest.mark.usefixtures("imgcls_home")
@pytest.mark.parametrize("name", NAMES)
def test_only_a_run_whose_network_never_trains_reuses_the_trainings_features(name):
    config = {"backbone": "efficientnet_lite0", "strategy": name, "img_size": 64, "data_config": DATA_CONFIG,
              "weights": weights_id("efficientnet_lite0")}
    pre = Preprocess.for_run(config)
    root = workspace.cache_dir("features") / pre.feature_key()
    root.mkdir(parents=True)
    np.save(root / "abc.npy", np.ones(4, dtype=np.float32))
    cached = evaluation._cached_features(config, ["abc"])
    assert (cached is not None) == (not strategy(name).trains_network)

    run_id = _run_folder(name)
    (runs.run_dir(run_id) / "model.safetensors").write_bytes(b"weights")
    assert (ood._preprocess(run_id, config) == pre) == (not strategy(name).trains_network)


# --- the executor's plan and optimizer groups, against the same decisions taken from the name ---

def _old_units(c: dict, n: int, n_train: int) -> float:
    units = n
    if c["strategy"] in ("linear", "finetune") or c["task"] == "lr_find":
        units += n + n_train * HEAD_UNIT * c["head_epochs" if c["strategy"] != "linear" else "epochs"]
    if c["task"] == "lr_find":
        return float(units)
    if c["strategy"] != "linear":
        units += n_train * c["epochs"] * 3
    return float(units)


@pytest.mark.parametrize("name,task", list(itertools.product(NAMES, TASKS)))
def test_the_planned_work_is_what_it_was_for_every_strategy_and_task(name, task):
    df = pd.DataFrame({"split": ["train"] * 9 + ["val"] * 4})
    c = _config(name, task)
    assert _plan_units(RunConfig.from_dict(c), df) == pytest.approx(_old_units(c, 13, 9))


@pytest.fixture(scope="module")
def model():
    from imgcls.vision.models import create_model

    return create_model("efficientnet_lite0", 2, pretrained=False)


@pytest.mark.parametrize("name", ["finetune", "full", "scratch"])
def test_the_optimizer_groups_follow_the_layer_decay_and_unfreeze_rules(model, name):
    from timm.optim import param_groups_layer_decay

    c = _config(name)
    groups = param_groups(model, RunConfig.from_dict(c))
    old = param_groups_layer_decay(model, weight_decay=0.05, layer_decay=OLD["layer decay"](c))
    if name == "finetune":  # the old rule: only the top `unfreeze` scales learn
        keep = set(sorted({g["lr_scale"] for g in old}, reverse=True)[:c["unfreeze"]])
        old = [g for g in old if g["lr_scale"] in keep]
    assert [(g["lr_scale"], len(g["params"])) for g in groups] == [(g["lr_scale"], len(g["params"])) for g in old]
    frozen = sum(not p.requires_grad for p in model.parameters())
    assert (frozen > 0) == (name == "finetune")
    for p in model.parameters():
        p.requires_grad_(True)
