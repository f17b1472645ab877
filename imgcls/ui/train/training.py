"""Train page widgets: run settings, starting jobs, the live view of a run, and the runs table."""

from __future__ import annotations

import dataclasses
import math
import os
from functools import partial

import streamlit as st

from imgcls.augment.pipeline import load_pipeline, mirrors
from imgcls.store import quotas, runnames, runs, workspace
from imgcls.train import runjobs
from imgcls.train.config import DEFAULTS, STRATEGIES, TrainConfig, TrainError
from imgcls.train.run import prepare_run
from imgcls.ui.common import cached, nav
from imgcls.ui.common.jobview import start_job
from imgcls.ui.common.run_names import rename_controls
from imgcls.ui.common.runlist import run_infos  # noqa: F401 - the Train page reads it from here
from imgcls.ui.common.text import plain
from imgcls.vision import models

# Session-state keys of this page (plain values; the form's widgets keep theirs with persist_state).
RUN = "train.run"  # id of the run shown in the live view
LR_RUN = "train.lr_run"  # id of the latest learning-rate search started here
CHECKED = "train.checked_interrupted"  # mark_interrupted() has run for this session
STRATEGY_TITLES = {"linear": "Last layer only (linear)", "finetune": "Fine-tune the top layers (finetune)",
                   "full": "Train every layer (full)", "scratch": "From scratch, no pretraining (scratch)"}
LR_MODES = {"default": "Strategy default", "auto": "Find it automatically", "custom": "Set it myself"}
KEEP = "session"  # form values survive a visit to another page
PER_STRATEGY = ("epochs", "patience", "batch_size")  # settings reset to the strategy's own when it changes


def check_interrupted_once() -> None:
    """Once per session: runs whose process vanished (server restart) are marked interrupted."""
    if not st.session_state.get(CHECKED):
        runs.mark_interrupted()
        st.session_state[CHECKED] = True


# --- header -------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False)
def device_summary() -> str:
    """What 'auto' trains on here: the GPU with its memory, or the CPU with its threads."""
    import torch  # already loaded by imgcls.train.run; here for clarity

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        more = f" (+{torch.cuda.device_count() - 1} more)" if torch.cuda.device_count() > 1 else ""
        return f"GPU {props.name}, {props.total_memory / 2**30:.0f} GB{more}"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "Apple GPU (mps)"
    return f"CPU, {os.cpu_count() or 1} threads"


@st.cache_data(show_spinner=False)
def available_devices() -> list[str]:
    """Device choices this machine can honour."""
    import torch

    mps = getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    return ["auto", "cpu"] + (["cuda"] if torch.cuda.is_available() else []) + (["mps"] if mps else [])


def augmentation_summary(dataset: str) -> str:
    """What training will use: the pipeline saved on the Augment page, or the light preset."""
    saved = load_pipeline(dataset)
    if not saved:
        df = cached.manifest(dataset)
        if not mirrors(sorted(df.loc[~df["excluded"], "label"].astype(str).unique())):
            return "the light preset without its mirror flip, as your classes look like characters (nothing saved yet)"
        return "the light preset (nothing saved yet)"
    names = [t.get("__class_fullname__", "?").split(".")[-1] for t in saved.get("transform", {}).get("transforms", [])]
    return f"saved pipeline, {len(names)} transform{'s' if len(names) != 1 else ''}" + (
        f" ({', '.join(plain(n) for n in names)})" if names else "")


def show_header(dataset: str, infos: list) -> None:
    """The dataset trained on, the augmentation used, and the device it runs on."""
    splits = cached.summary(dataset)["splits"]
    # top-aligned: the three bold headings share a line however tall each column's text and link are
    left, middle, right = st.columns([3, 2, 2], vertical_alignment="top")
    left.markdown(f"**Dataset:** {plain(dataset)}  \n{cached.summary(dataset)['classes']:,} classes · "
                  f"{splits['train']:,} train · {splits['val']:,} validation · {splits['test']:,} test images")
    # the strategy chosen on the last run of the page (the radio below keeps it), linear before any choice
    unused = st.session_state.get("train.strategy", "linear") == "linear"
    middle.markdown(f"**Augmentation:** {augmentation_summary(dataset)}"
                    + ("  \nNot used by `linear`, which trains on unchanged images." if unused else ""))
    middle.page_link(nav.AUGMENT.path, label="Change it on the Augment page", icon=":material/auto_fix_high:")
    busy = [r for r, _, s in infos if s.get("state") in runs.ACTIVE_STATES]
    right.markdown(f"**Device:** {plain(device_summary())}  \n"
                   + (f"{len(busy)} job{'s' if len(busy) > 1 else ''} queued or running" if busy else "no job running"))


# --- settings -----------------------------------------------------------------------------------


@st.cache_data(ttl=60, show_spinner=False)
def backbones() -> dict[str, dict]:
    """Backbones by name (size, where the weights come from); rechecked every minute for downloads."""
    return {b["name"]: b for b in models.list_backbones()}


def _backbone_label(info: dict, name: str) -> str:
    b = info[name]
    return f"{name} · {b['params_millions']:.1f} M parameters · {b['weights']}"


def _strategy_defaults() -> None:
    """A new strategy brings its own epochs, patience and batch size (what works for it)."""
    d = DEFAULTS[st.session_state["train.strategy"]]
    for field in PER_STRATEGY:
        st.session_state[f"train.{field}"] = d[field]


def choose_strategy(strategy: str) -> None:
    """Pick a strategy from a button, with the defaults it brings, as choosing it in the list does."""
    st.session_state["train.strategy"] = strategy
    _strategy_defaults()


def _init(defaults: dict) -> None:
    for key, value in defaults.items():
        st.session_state.setdefault(key, value)


def _lr_mode_changed() -> None:
    """'Set it myself' starts from the strategy's default rather than an empty box."""
    if st.session_state["train.lr_mode"] == "custom" and not st.session_state.get("train.lr_value"):
        st.session_state["train.lr_value"] = f"{DEFAULTS[st.session_state['train.strategy']]['lr']:g}"


def _lr_controls(strategy: str) -> float | str | None:
    """Learning rate: the strategy's default, 'auto' (the finder runs first), or a number."""
    mode = st.radio("Learning rate", list(LR_MODES), format_func=LR_MODES.get, key="train.lr_mode",
                    horizontal=True, persist_state=KEEP, on_change=_lr_mode_changed,
                    help="How big each learning step is. The default suits most datasets; 'automatically' "
                         "runs a quick search at the start of the run.")
    if mode == "default":
        st.caption(f"The default for {plain(strategy)} is {DEFAULTS[strategy]['lr']:g}.")
        return None
    if mode == "auto":
        return "auto"
    text = st.text_input("Learning rate value", key="train.lr_value", persist_state=KEEP,
                         placeholder="e.g. 3e-3 or 0.001")
    if not (text or "").strip():
        st.caption("Type a learning rate to start.")
        return "invalid"
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = float("nan")
    if not (math.isfinite(value) and 0 < value < 10):
        st.error("Type the learning rate as a positive number, such as 0.003 or 3e-3.")
        return "invalid"
    return value


def _native_size(backbone: str) -> int:
    return int(models.data_config(backbone)["input_size"][-1])


def _advanced_controls(strategy: str, backbone: str) -> dict:
    """Expert settings with working defaults."""
    size = DEFAULTS[strategy].get("img_size") or _native_size(backbone)
    with st.expander("Advanced settings", key="train.advanced"):
        c1, c2, c3 = st.columns(3)
        out = {
            "batch_size": c1.number_input("Batch size", 1, 1024, step=8, key="train.batch_size", persist_state=KEEP,
                                          help="Images per step. Lower it if the device runs out of memory."),
            "img_size": c2.number_input("Image size (pixels)", 32, 1024, value=None, step=32, key="train.img_size",
                                        persist_state=KEEP, placeholder=f"default: {size}",
                                        help="Side of the square the images are resized to. Empty: the "
                                             "strategy's default, else the size the backbone was trained with."),
            "seed": c3.number_input("Seed", 0, 2**31 - 1, key="train.seed", persist_state=KEEP,
                                    help="Same seed, same settings: the same result."),
            "weight_decay": c1.number_input("Weight decay", 0.0, 1.0, step=0.01, format="%.3f",
                                            key="train.weight_decay", persist_state=KEEP,
                                            help="Pulls weights towards zero; a mild guard against overfitting."),
            "label_smoothing": c2.number_input("Label smoothing", 0.0, 0.5, step=0.05, format="%.2f",
                                               key="train.label_smoothing", persist_state=KEEP,
                                               help="Keeps the model from being over-confident."),
            "warmup_epochs": c3.number_input("Warm-up epochs", 0.0, 20.0, step=0.5, format="%.1f",
                                             key="train.warmup_epochs", persist_state=KEEP,
                                             help="The learning rate climbs from zero over this many epochs."),
            "patience": c1.number_input("Patience (epochs)", 1, 1000, key="train.patience", persist_state=KEEP,
                                        help="Stop early after this many epochs without a better validation loss."),
            "layer_decay": c2.number_input("Layer decay", 0.1, 1.0, step=0.05, format="%.2f", key="train.layer_decay",
                                           persist_state=KEEP, help="finetune/full: each layer further down "
                                                                    "learns this much slower than the one above."),
            "unfreeze": c3.number_input("Layers to unfreeze", 1, 100, key="train.unfreeze", persist_state=KEEP,
                                        help="finetune: how many of the top layer groups adjust."),
            "device": c1.selectbox("Device", available_devices(), key="train.device", persist_state=KEEP,
                                   help="auto: the GPU if there is one, else the CPU."),
        }
        out["head_epochs"] = c2.number_input("Last-layer epochs", 1, 1000, key="train.head_epochs",
                                             persist_state=KEEP, help="finetune: epochs of the first stage, "
                                                                      "which trains only the last layer.")
        out["compile"] = c3.checkbox("torch.compile", key="train.compile", persist_state=KEEP,
                                     help="CUDA only: compiles the model first; faster on long runs.")
    return out


def config_controls(dataset: str) -> TrainConfig | None:
    """The run settings; a TrainConfig for the active dataset, or None while a value is invalid."""
    base = TrainConfig(dataset)
    _init({"train.strategy": "linear", "train.lr_mode": "default", "train.lr_value": "",
           **{f"train.{k}": DEFAULTS["linear"][k] for k in PER_STRATEGY},
           **{f"train.{k}": getattr(base, k) for k in ("seed", "weight_decay", "label_smoothing", "warmup_epochs",
                                                         "layer_decay", "unfreeze", "head_epochs", "device",
                                                         "compile")}})
    info = backbones()
    left, right = st.columns(2)
    with left:
        backbone = st.selectbox("Backbone", list(info), key="train.backbone", persist_state=KEEP,
                                format_func=partial(_backbone_label, info),
                                help="The pretrained network the model starts from.")
        st.caption(plain(info[backbone]["description"].capitalize()) + ".")
        epochs = st.number_input("Epochs", 1, 1000, key="train.epochs", persist_state=KEEP,
                                 help="Passes over the training images (early stopping may end sooner).")
    with right:
        strategy = st.radio("Strategy", list(STRATEGIES), format_func=STRATEGY_TITLES.get, key="train.strategy",
                            captions=list(STRATEGIES.values()), on_change=_strategy_defaults, persist_state=KEEP)
    lr = _lr_controls(strategy)
    advanced = _advanced_controls(strategy, backbone)
    if lr == "invalid":
        return None
    return TrainConfig(dataset, backbone=backbone, strategy=strategy, epochs=int(epochs), lr=lr,
                       augment="saved", **advanced)


# --- starting jobs ------------------------------------------------------------------------------


def _queue(config: TrainConfig, key: str) -> None:
    """Check and queue a run, start its job, and make it the run shown under `key`."""
    quotas.check_disk()
    quotas.check_job_start()  # before the run is made, so a refusal leaves no run behind
    run_id = prepare_run(config)
    runjobs.start(run_id)
    st.session_state[key] = run_id


def start(config: TrainConfig, key: str) -> bool:
    """Start a run that becomes the one shown under `key`; False (after a plain error) when it cannot."""
    return start_job(_queue, config, key, failed="Training cannot start", errors=(TrainError, workspace.WorkspaceError))


def start_training(config: TrainConfig) -> bool:
    """'Start training': the new run becomes the one shown; False (after a plain error) if it cannot."""
    return start(config, RUN)


def start_lr_find(config: TrainConfig) -> bool:
    """'Find a learning rate': a short job that sweeps the rate for the chosen strategy and backbone."""
    return start(dataclasses.replace(config, lr=None, task="lr_find"), LR_RUN)


def resume_run(run_id: str) -> None:
    """Continue a stopped or interrupted run in the background, or say why it cannot start now."""
    if not start_job(runjobs.resume, run_id, errors=()):
        st.stop()  # the caller's rerun would wipe the message: end this run with it shown


# --- which run to show ----------------------------------------------------------------------------


def current_run(dataset: str, infos: list, task: str = "train", key: str = RUN) -> str | None:
    """The run shown: this session's choice, else (after a refresh) the newest active, else newest run."""
    mine = [(r, s) for r, c, s in infos if c.get("dataset") == dataset and c.get("task", "train") == task]
    ids = [r for r, _ in mine]
    chosen = st.session_state.get(key)
    if chosen not in ids:
        active = [r for r, s in mine if s.get("state") in runs.ACTIVE_STATES]
        chosen = active[0] if active else (ids[0] if ids and task == "train" else None)
        st.session_state[key] = chosen
    return chosen


def _run_label(labels: dict, run_id: str) -> str:
    return labels.get(run_id, run_id)


def _picked_run() -> None:
    st.session_state[RUN] = st.session_state["train.picker"]


def run_picker_controls(dataset: str, infos: list, shown: str) -> None:
    """Pick which of the dataset's runs the live view shows (by name), and rename it."""
    mine = [(r, c, s) for r, c, s in infos if c.get("dataset") == dataset and c.get("task", "train") == "train"]
    left, right = st.columns([5, 1], vertical_alignment="bottom")
    if len(mine) < 2:
        left.markdown(f"**{plain(runnames.display_name(shown))}**")
    else:
        labels = {r: runnames.describe(r, c, s, dataset=False) for r, c, s in mine}
        st.session_state["train.picker"] = shown  # follow a run just started or recovered
        left.selectbox("Run shown", list(labels), key="train.picker", format_func=partial(_run_label, labels),
                       on_change=_picked_run)
    with right:
        rename_controls(shown, "train")

