"""Train page, live part: a run's progress, curves and outcome, the learning-rate plot, the runs table."""

from __future__ import annotations

from functools import partial

import streamlit as st

from imgcls.charts import training as training_charts
from imgcls.store import runs, workspace
from imgcls.train import runjobs
from imgcls.ui.common import nav
from imgcls.ui.common.jobview import JobView, show_job
from imgcls.ui.common.runcompare import show_settings_diff
from imgcls.ui.common.text import code, plain
from imgcls.ui.train.training import KEEP, resume_run

# --- the live view --------------------------------------------------------------------------------


def _describe(config: dict) -> str:
    lr = config.get("lr")
    lr = f"{lr:.0e}" if isinstance(lr, float) else lr
    augment = config.get("augment") if isinstance(config.get("augment"), str) else "custom"
    return (f"{code(config.get('backbone'))} · **{plain(config.get('strategy'))}** · up to "
            f"{plain(config.get('epochs'))} epochs · learning rate {plain(lr)} · batch {plain(config.get('batch_size'))}"
            f" · {plain(config.get('img_size'))} px · augmentation {plain(augment)} · {plain(config.get('device'))}")


def _run_job(run_id: str, label: str = "Stop training", **views) -> JobView:
    config = runs.read_config(run_id)
    return JobView(stop_key=f"train.stop.{run_id}", status=partial(runs.read_status, run_id),
                   stop=partial(runjobs.stop, run_id), stop_label=label, device=str(config.get("device")), **views)


def show_run(run_id: str, infos: list) -> None:
    """Live view of a run: polled every second while it is queued or running, still once it is final."""
    # The state the rest of the page was drawn with: any change redraws the page, so the table agrees.
    state = next((s.get("state") for r, _, s in infos if r == run_id), None)
    config = runs.read_config(run_id)

    def settings(_status: dict) -> None:
        st.markdown(f"Settings: {_describe(config)} · id {code(run_id)}")  # its name is in the picker above

    def outcome(status: dict) -> None:
        records = runs.read_metrics(run_id)
        show_outcome(run_id, status, config, records)
        show_curves(config, records, run_id)
    show_job(_run_job(run_id, before=settings, after=outcome), drawn_state=state)


def show_outcome(run_id: str, status: dict, config: dict, records: list[dict]) -> None:
    """The headline of a finished run, or what went wrong and what to do next."""
    state, message = status.get("state"), status.get("message") or ""
    if state == "done":
        result = status.get("result") or {}
        cols = st.columns(4)
        cols[0].metric("Validation accuracy", f"{result.get('val_accuracy', float('nan')):.1%}")
        cols[1].metric("Validation loss", f"{result.get('val_loss', float('nan')):.3f}")
        best = result.get("best_epoch", "?")
        # finetune's best can be its last-layer stage (epoch 0): the network stage did not beat it
        cols[2].metric("Best epoch", "last-layer stage" if best == 0 and config.get("strategy") == "finetune"
                       else f"{plain(best)} of {plain(result.get('epochs', '?'))}")
        cols[3].metric("Training time", f"{result.get('seconds', 0):.0f} s")
        for note in config.get("notes") or []:
            st.caption(plain(note))
        st.success("Training finished. The best model is saved; see what it gets right and wrong on the "
                   "Evaluate page.")
        st.page_link(nav.EVALUATE.path, label="Go to Evaluate", icon=":material/arrow_forward:")
    elif state == "failed":
        st.error(f"The run failed: {plain(message)}")
        show_log_tail(run_id)
    elif state == "cancelled":
        st.warning(plain(message) or "Stopped.")
        show_best_so_far(run_id, config, records)
    elif state == "interrupted":
        st.warning(plain(message))
        show_best_so_far(run_id, config, records)
        if st.button("Resume training", key=f"train.resume.{run_id}", icon=":material/play_arrow:"):
            resume_run(run_id)
            st.rerun()


def show_best_so_far(run_id: str, config: dict, records: list[dict]) -> None:
    """For a run that did not finish: the model it kept, if any, how good it was, and where to use it."""
    status = runs.read_status(run_id)
    if not runs.stopped_early(status):
        st.caption("No model was saved: the run stopped before its first checkpoint.")
        return
    st.caption(plain(runs.stopped_summary(config, status)) + " It can be evaluated, compared, exported and "
               "shared like a finished run.")
    st.page_link(nav.EVALUATE.path, label="Evaluate the model kept", icon=":material/arrow_forward:")


def show_log_tail(run_id: str, chars: int = 3000) -> None:
    """The end of the job's log, for a failed run."""
    path = runs.run_dir(run_id) / "log.txt"
    if path.exists():
        with st.expander("Details from the job's log"):
            st.code(path.read_text(encoding="utf-8", errors="replace")[-chars:], language=None)


def show_curves(config: dict, records: list[dict], run_id: str) -> None:
    """Loss and accuracy per epoch, and per-batch loss for the network strategies."""
    if any(r.get("kind") == "epoch" for r in records):
        st.plotly_chart(training_charts.epoch_curves(records), key=f"train.curves.{run_id}")
    if sum(r.get("kind") == "step" for r in records) >= 3:  # a line needs a few points to say anything
        train, batch = (config.get("images") or {}).get("train", 0), config.get("batch_size") or 1
        steps = max(train // batch, 1)  # the loader drops the last partial batch
        st.plotly_chart(training_charts.step_loss(records, steps), key=f"train.steps.{run_id}")


# --- learning-rate finder ---------------------------------------------------------------------------


def _use_lr(value: float) -> None:
    st.session_state["train.lr_mode"] = "custom"
    st.session_state["train.lr_value"] = f"{value:.2e}"


def show_lr_find(run_id: str) -> None:
    """The learning-rate search: its progress, then the loss curve with a button to use the suggestion."""

    def header(status: dict) -> None:
        if status.get("state") in runs.ACTIVE_STATES:
            st.markdown(f"Searching a learning rate for {_searched(run_id)}…")

    show_job(_run_job(run_id, "Stop the search", before=header, after=partial(_lr_result, run_id)))


def _searched(run_id: str) -> str:
    """What a learning-rate search is for, as Markdown: its strategy and backbone."""
    config = runs.read_config(run_id)
    return f"{plain(config.get('strategy'))} with {code(config.get('backbone'))}"


def _lr_result(run_id: str, status: dict) -> None:
    what = _searched(run_id)
    state = status.get("state")
    if state in runs.ACTIVE_STATES:
        return
    found = workspace.read_json(runs.run_dir(run_id) / "lr_find.json") if state == "done" else None
    if not found:
        st.warning(f"The learning-rate search for {what} did not finish: {plain(status.get('message') or state)}")
        return
    suggestion = float(found["suggestion"])
    st.markdown(f"**Learning-rate search** for {what}: the loss falls fastest near **{suggestion:.1e}**.")
    st.plotly_chart(training_charts.lr_sweep(found), key=f"train.lr_chart.{run_id}")
    if st.button(f"Use {suggestion:.2e}", key=f"train.use_lr.{run_id}", on_click=_use_lr, args=(suggestion,),
                 help=f"Sets the learning rate above; found for {what}."):
        st.rerun()  # the settings live outside this fragment: redraw the page to show the new value


# --- comparing runs ---------------------------------------------------------------------------------


def show_runs_table(dataset: str, infos: list) -> None:
    """All training runs; ticked rows get their validation accuracy overlaid and their settings compared."""
    every = st.toggle("Runs of every dataset", key="train.runs.every", persist_state=KEEP)
    shown = [(r, c, s) for r, c, s in infos
             if c.get("task", "train") == "train" and (every or c.get("dataset") == dataset)]
    if not shown:
        st.caption("No runs yet: the runs you start appear here, so you can compare them.")
        return
    rows = [training_charts.run_row(r, c, s) for r, c, s in shown]
    for row in rows:  # shown as 97.3%: one decimal tells close runs apart
        row["best val accuracy"] = None if row["best val accuracy"] is None else 100 * row["best val accuracy"]
    done = [i for i, (_, _, s) in enumerate(shown) if s.get("state") == "done"][:2]
    col = st.column_config
    event = st.dataframe(
        rows, hide_index=True, on_select="rerun", selection_mode="multi-row", placeholder="–",
        key=f"train.runs.{len(rows)}.{every}",  # a new run shifts the rows: start with a fresh selection
        selection_default={"selection": {"rows": done}},
        column_order=None if every else [k for k in rows[0] if k != "dataset"],
        column_config={"best val accuracy": col.NumberColumn(format="%.1f%%"),
                       "val loss": col.NumberColumn(format="%.3f"), "seconds": col.NumberColumn(format="%.0f")})
    picked = [shown[i] for i in event.selection.rows if i < len(shown)]
    if not picked:
        st.caption("Tick runs in the table to overlay their validation accuracy; tick two to compare settings.")
        return
    curves = {}
    for r, c, _ in picked:  # by name; the id where two old runs' stand-in names agree
        curves[r if c.get("name") in curves else c.get("name") or r] = runs.read_metrics(r)
    st.plotly_chart(training_charts.compare_val_accuracy(curves), key="train.compare")
    if len(picked) == 2:
        show_settings_diff(*((c.get("name") or r, c) for r, c, _ in picked), key="train.diff")
