"""The Train page's check before a finetune run: is fine-tuning expected to beat the last layer alone?

A background job among the dataset's measurements (imgcls.augment.measurejob): one per dataset
version, backbone and image size, so a later visit or a second tab finds the answer already there."""

from __future__ import annotations

from functools import partial

import streamlit as st

from imgcls import jobs
from imgcls.augment import measurejob
from imgcls.store import workspace
from imgcls.train import headroom
from imgcls.train.config import DEFAULTS, TrainConfig
from imgcls.ui.common import cached
from imgcls.ui.common.jobview import JobView, show_job, start_job
from imgcls.ui.common.text import plain
from imgcls.ui.train import training
from imgcls.vision import models


def choices(config: TrainConfig) -> dict:
    """What the measurement runs with: the run's backbone and the size a finetune run of it would use."""
    size = config.img_size or (None if models.fixed_input_size(config.backbone) else DEFAULTS["finetune"]["img_size"])
    return {"backbone": config.backbone, "img_size": size}


def key(dataset: str, config: TrainConfig) -> str:
    return measurejob.key_of(dataset, [{"headroom": choices(config)}], str(cached.stamp(dataset)[1]))


def _start(dataset: str, config: TrainConfig, measure_key: str) -> None:
    start_job(headroom.start, dataset, choices(config), measure_key,
              failed="The check could not start", errors=(workspace.WorkspaceError, OSError))


def show(dataset: str, config: TrainConfig | None) -> None:
    """Under the settings of a finetune run: what the check expects, its progress, or the button to run it."""
    if config is None or config.strategy != "finetune":
        return
    measure_key = key(dataset, config)
    status = measurejob.status(dataset, measure_key)
    state = status.get("state")
    found = measurejob.result(dataset, measure_key) if state == "done" else None
    if found:
        icon = ":material/rocket_launch:" if found["verdict"] == "finetune" else ":material/lightbulb:"
        st.info(headroom.explain(found), icon=icon)  # markdown-safe: numbers and fixed words only
        st.caption(f"Measured on this version of the dataset in {found['seconds']:.0f} s, with "
                   f"{plain(found['backbone'])} at {int(found['img_size'])} px. On the sample sets: hymenoptera "
                   "(ants and bees) fine-tunes no better than `linear`; the digits sample gains.")
        if found["verdict"] == "linear":
            st.button("Use linear instead", key="train.headroom.linear", icon=":material/bolt:",
                      on_click=training.choose_strategy, args=("linear",),
                      help="Switch this run to training only the last layer, with that strategy's defaults. "
                           "You can still choose finetune above.")
        return
    if state in jobs.ACTIVE:
        show_job(JobView(stop_key="train.headroom.stop", status=partial(measurejob.status, dataset, measure_key),
                         stop=partial(measurejob.stop, dataset, measure_key), device="CPU"))
        return
    if state in ("failed", "interrupted"):
        st.error(plain(status.get("message") or "The check could not finish."), icon=":material/error:")
    st.button("Check whether fine-tuning will help", key="train.headroom", icon=":material/troubleshoot:",
              on_click=_start, args=(dataset, config, measure_key),
              help="Under a minute on a CPU: a linear classifier is tried on the features of the network's top "
                   "and of the stages below it. If the top separates your classes best, training only the last "
                   "layer (linear) is expected to do as well as fine-tuning, in a fraction of the time.")
