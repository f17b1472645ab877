"""Train: choose how to train, start a run in the background, watch it live, and compare runs."""

import streamlit as st

from imgcls.ui.common import state, teach, widgets
from imgcls.ui.train import headroom as headroom_check, live as training_live, training

st.title("Train")
if not widgets.show_dataset_nudge():
    st.stop()

dataset = state.active_dataset()
training.check_interrupted_once()
infos = training.run_infos()
training.show_header(dataset, infos)

st.subheader("Settings")
teach.show_concept("transfer")
config = training.config_controls(dataset)
headroom_check.show(dataset, config)
buttons = st.container(horizontal=True)
if buttons.button("Start training", key="train.start", type="primary", icon=":material/play_arrow:",
                    disabled=config is None):
    if training.start_training(config):
        st.rerun()
if buttons.button("Find a learning rate", key="train.find_lr", icon=":material/search:", disabled=config is None,
                 help="A short job that tries growing learning rates on a few batches and suggests one."):
    if training.start_lr_find(config):
        st.rerun()
teach.show_train_code(config)
lr_run = training.current_run(dataset, infos, task="lr_find", key=training.LR_RUN)
if lr_run:
    training_live.show_lr_find(lr_run)

st.subheader("Progress")
run_id = training.current_run(dataset, infos)
if run_id:
    training.run_picker_controls(dataset, infos, run_id)
    training_live.show_run(run_id, infos)
else:
    st.caption("No run yet on this dataset: choose the settings above and press **Start training**.")

st.subheader("Compare runs")
training_live.show_runs_table(dataset, infos)
