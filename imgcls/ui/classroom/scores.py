"""The class board on the Class page: submitting a run (with a guess of its score first), the ranking the
server's scores on the hidden test split make, everyone's curves, and the teacher's freeze, CSV and
read-only look at any submitted run."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from imgcls import jobs
from imgcls.charts import evaluation as eval_charts, training as train_charts
from imgcls.classroom import board, classes, scoring, shared
from imgcls.store import access, runnames, runs, workspace
from imgcls.ui.classroom.members import when
from imgcls.ui.common import queueview, state
from imgcls.ui.common.jobview import JobView, show_job
from imgcls.ui.common.text import plain

STATES = {"queued": "waiting to be scored", "running": "being scored", "failed": "could not be scored",
          "cancelled": "scoring stopped", "interrupted": "scoring stopped"}
PREDICT_HELP = ("Say how accurate you expect your model to be on images it has never seen, before the server "
                "tells you. The board then shows how good the class's guesses were: a good sense of how well a "
                "model will do is worth as much as a good model.")


# --- submitting ------------------------------------------------------------------------------------


def class_runs(info: classes.ClassInfo) -> list[str]:
    """The student's runs with a model, trained on a dataset they started from this class, newest first."""
    out = []
    for run_id in runs.model_runs():
        dataset = str(runs.read_config(run_id).get("dataset") or "")
        origin = shared.origin(dataset) if dataset and workspace.dataset_exists(dataset) else None
        if origin and origin.get("class_id") == info.id:
            out.append(run_id)
    return out


def show_scoring(info: classes.ClassInfo, user: access.User) -> None:
    """The student's submission being scored, live: its place in line, then its progress."""
    table = board.board(info.id)
    mine = table[(table["student"] == user.key) & table["state"].isin(list(jobs.ACTIVE))]
    if mine.empty:
        return
    path = scoring.status_path(info.id, str(mine.iloc[0]["sub_id"]))
    show_job(JobView(stop_key=f"class.scoring.stop.{info.id}", status=lambda: jobs.status(path),
                     stop=lambda: jobs.stop(path), stop_label="Cancel scoring", device="cpu",
                     caption="The server scores your model on the hidden test images."))


def submit_controls(info: classes.ClassInfo, user: access.User) -> None:
    """Pick a run, guess its score (optional), submit it for scoring on the hidden test split."""
    show_scoring(info, user)
    if info.frozen:
        st.info("The board is frozen: your teacher has closed submissions for now.", icon=":material/ac_unit:")
        return
    found = class_runs(info)
    if not found:
        st.caption("Train a model on a dataset you started from this class (above), then submit it here.")
        return
    with st.form(f"class.submit.{info.id}", border=True):
        st.markdown("**Submit a run to the board**")
        run_id = st.selectbox("Run", found, key=f"class.submit.run.{info.id}",
                              format_func=runnames.display_name)
        guess = st.checkbox("Predict before you see it", value=True, key=f"class.submit.guess.{info.id}",
                            help=PREDICT_HELP)
        expected = st.slider("The accuracy I expect on the hidden test images (%)", 0, 100, 80,
                             key=f"class.submit.expected.{info.id}")
        if st.form_submit_button("Submit for scoring", icon=":material/send:", type="primary"):
            try:
                board.submit(info.id, run_id, user, expected / 100 if guess else None)
            except (workspace.WorkspaceError, PermissionError, ValueError, OSError) as exc:
                st.error(plain(exc))
                return
            state.flash("Submitted. The server scores your model on the hidden test images; the board shows the "
                        "result in a minute or so.")
            st.rerun()


# --- the board -------------------------------------------------------------------------------------


def _share(value) -> str:
    return "" if value is None or pd.isna(value) else f"{float(value):.1%}"


def _shown(table: pd.DataFrame, me: str) -> pd.DataFrame:
    out = pd.DataFrame({
        "Rank": [("" if pd.isna(r) else str(int(r))) for r in table["rank"]],
        "Student": [f"{n} (you)" if k == me else n for n, k in zip(table["name"], table["student"])],
        "Accuracy": [_share(v) if s == "done" else STATES.get(s, s) for v, s in zip(table["accuracy"], table["state"])],
        "Macro F1": ["" if pd.isna(v) else f"{v:.3f}" for v in table["macro_f1"]],
        "Predicted": [_share(v) for v in table["expected"]],
        "Settings (against the baseline)": table["settings"],
        "Submitted": [when(t) for t in table["submitted"]],
    })
    return out


def show_board(info: classes.ClassInfo, user: access.User) -> str | None:
    """The ranking; the submission whose row is picked (its curves are drawn below), or None."""
    table = board.board(info.id)
    if info.frozen:
        st.caption(":material/ac_unit: The board is frozen: no new submissions.")
    if table.empty:
        st.caption("No run has been submitted yet.")
        return None
    st.caption("Ranked by accuracy on the hidden test images, scored by the server; ties by macro F1.")
    # a plain table: a board is read (and read aloud) row by row, and thirty rows need no scrolling grid
    st.table(_shown(table, user.key), hide_index=True, border="horizontal")
    _show_guesses(info)
    labels = {None: "Choose a row of the board", **{
        str(row.sub_id): f"{row.rank if not pd.isna(row.rank) else '–'}. {row.name}, {when(row.submitted)}"
        for row in table.itertuples()}}
    return st.selectbox("Open a submission", list(labels), key=f"class.board.open.{info.id}", format_func=labels.get,
                        help="Its training curves" + ("; as the teacher, also what it got right and wrong on the "
                                                      "hidden test images." if info.teacher == user.key else "."))


def _show_guesses(info: classes.ClassInfo) -> None:
    quality = board.prediction_quality(info.id)
    if not quality or not quality.get("n"):
        return
    st.caption(f"How well the class predicted its scores: off by {quality['mean_abs_error']:.1f} points on average "
               f"over {quality['n']:,} guesses; {quality['within_5']:.0%} within 5 points.")


def show_curves(info: classes.ClassInfo, sub_id: str) -> None:
    """The training curves of one submitted run."""
    records = board.curves(info.id, sub_id)
    if not records:
        st.caption("This run saved no curves.")
        return
    st.plotly_chart(train_charts.epoch_curves(records), key=f"class.curves.{info.id}.{sub_id}")


def teacher_controls(info: classes.ClassInfo, user: access.User) -> None:
    """Freeze or reopen the board, and download it as CSV."""
    left, right = st.columns(2)
    if info.frozen:
        if left.button("Reopen the board", key=f"class.unfreeze.{info.id}", icon=":material/lock_open:"):
            classes.set_frozen(info.id, user.key, False)
            st.rerun()
    elif left.button("Freeze the board", key=f"class.freeze.{info.id}", icon=":material/ac_unit:",
                     help="No new submissions until you reopen it; the ranking stays as it is."):
        classes.set_frozen(info.id, user.key, True)
        st.rerun()
    right.download_button("Download the board (CSV)", board.board_csv(info.id), file_name=f"{info.name}-board.csv",
                          mime="text/csv", key=f"class.csv.{info.id}", icon=":material/download:")


# --- a teacher's read-only look at one submission ------------------------------------------------------


def open_controls(info: classes.ClassInfo, user: access.User, sub_id: str) -> None:
    """What a submitted run did on the hidden test split: metrics, confusion matrix, its settings, and the
    hidden images it got wrong (the teacher only)."""
    try:
        report = board.hidden_report(info.id, sub_id, user.key)
    except PermissionError as exc:
        st.error(plain(exc))
        return
    sub = board.submission(info.id, sub_id)
    score = report.get("score") or {}
    if not score:
        st.caption("Not scored yet.")
        return
    st.markdown(f"**{plain(sub.get('name') or 'A student')}**, run "
                f"**{plain(sub.get('run_name') or sub.get('run_id') or '')}** (read-only)")
    cols = st.columns(3)
    cols[0].metric("Accuracy", f"{score['accuracy']:.1%}")
    cols[1].metric("Macro F1", f"{score['macro_f1']:.3f}")
    cols[2].metric("Hidden test images", f"{int(score.get('images') or score.get('n') or 0):,}")
    if score.get("confusion") and score.get("classes"):
        st.plotly_chart(_confusion(score), key=f"class.open.confusion.{sub_id}")
    if score.get("per_class"):
        st.dataframe(eval_charts.per_class_frame(score, percent_scale=True), hide_index=True,
                     key=f"class.open.per_class.{sub_id}")
    settings = (sub.get("config") or {})
    st.caption("Settings: " + plain(sub.get("settings") or "as the baseline") + " · backbone "
               + plain(settings.get("backbone", "?")))
    _show_mistakes(info, user, report, sub_id)


def _confusion(score: dict) -> go.Figure:
    if "confusion_normalised" not in score:
        rows = [max(1, sum(r)) for r in score["confusion"]]
        score = {**score, "confusion_normalised": [[n / t for n in r] for r, t in zip(score["confusion"], rows)]}
    return eval_charts.confusion_figure(score)


def _show_mistakes(info: classes.ClassInfo, user: access.User, report: dict, sub_id: str, most: int = 8) -> None:
    rows = [r for r in report.get("rows") or [] if not r.get("correct")]
    if not rows:
        st.caption("It got every hidden test image right.")
        return
    rows.sort(key=lambda r: -float(r.get("confidence") or 0))
    st.markdown(f"**Its most confident mistakes** ({len(rows):,} wrong in all)")
    cols = st.columns(4)
    for i, row in enumerate(rows[:most]):
        try:
            data = board.hidden_image(info.id, report["dataset"], row["path"], user.key)
        except (OSError, PermissionError, KeyError):
            continue
        cols[i % 4].image(data, caption=f"{plain(row.get('label'))} → {plain(row.get('prediction'))} "
                                       f"({float(row.get('confidence') or 0):.0%})")


def show_queue(info: classes.ClassInfo) -> None:
    """The class's jobs waiting for the machine, which the teacher may reorder or cancel."""
    names = {key: m.get("name") or key[:8] for key, m in info.members.items()}
    st.caption("Jobs of this class waiting for the machine, in the order they will run. Move one up when it "
               "matters more, or cancel it.")
    queueview.show_queue(set(names), names, can_manage=True, key=f"class.queue.{info.id}")
