"""Tables and plotly figures of training runs: curves per epoch, step loss, the LR sweep, comparisons."""

from __future__ import annotations

import html
import math

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

STAGE_NAMES = {"head": "last layer", "finetune": "fine-tuning", "full": "all layers", "scratch": "from scratch"}
TRAIN_COLOUR, VAL_COLOUR = "#4C78A8", "#F58518"
# Tableau 10: distinct colours for runs overlaid on one chart (the theme's default blues look alike).
RUN_COLOURS = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#B279A2", "#EECA3B", "#9D755D", "#FF9DA6",
               "#BAB0AC"]
# Config keys that describe how a run was made, in the order a comparison lists them.
COMPARED_KEYS = ["dataset", "backbone", "strategy", "epochs", "lr", "batch_size", "img_size", "augment", "seed",
                 "device", "weight_decay", "label_smoothing", "warmup_epochs", "patience", "layer_decay",
                 "unfreeze", "head_epochs", "compile", "classes", "images", "weights"]


def epoch_frame(records: list[dict]) -> pd.DataFrame:
    """Epoch records in training order, one row per (stage, epoch), with a running index `x` across stages.

    A resumed run repeats the epochs it redid; the last record of an epoch wins.
    """
    rows = [r for r in records if r.get("kind") == "epoch"]
    cols = ["stage", "epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy", "lr"]
    if not rows:
        return pd.DataFrame(columns=[*cols, "x"])
    df = pd.DataFrame(rows).reindex(columns=cols)
    df["stage"] = df["stage"].fillna("")
    order = list(dict.fromkeys(df["stage"]))  # stages in the order they first ran
    df = df.drop_duplicates(["stage", "epoch"], keep="last")
    df = df.assign(rank=df["stage"].map(order.index)).sort_values(["rank", "epoch"]).drop(columns="rank")
    df["x"] = range(1, len(df) + 1)
    return df.reset_index(drop=True)


def _stage_marks(fig: go.Figure, df: pd.DataFrame, cols: int) -> None:
    """A dotted line where a new stage begins (fine-tuning after the last layer)."""
    starts = df.groupby("stage", sort=False)["x"].min().iloc[1:]
    for stage, x in starts.items():
        for col in range(1, cols + 1):
            fig.add_vline(x=x - 0.5, line_dash="dot", line_color="#888", row=1, col=col)
        fig.add_annotation(x=x - 0.5, y=1.0, yref="paper", xref="x", text=f"{STAGE_NAMES.get(stage, stage)} starts",
                           showarrow=False, xanchor="left", yanchor="bottom", font=dict(size=11, color="#666"))


def epoch_curves(records: list[dict]) -> go.Figure:
    """Train and validation loss (left) and accuracy (right) per epoch."""
    df = epoch_frame(records)
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss", "Accuracy"), horizontal_spacing=0.08)
    hover = [f"{STAGE_NAMES.get(s, s)}, epoch {e}" for s, e in zip(df["stage"], df["epoch"])]
    for col, metric in ((1, "loss"), (2, "accuracy")):
        for split, colour in (("train", TRAIN_COLOUR), ("val", VAL_COLOUR)):
            name = "Training" if split == "train" else "Validation"
            fig.add_trace(go.Scatter(
                x=df["x"], y=df[f"{split}_{metric}"], mode="lines+markers", name=name, legendgroup=split,
                showlegend=col == 1, line=dict(color=colour), marker=dict(size=5), customdata=hover,
                hovertemplate=f"{name} {metric}: %{{y:.3f}}<br>%{{customdata}}<extra></extra>",
            ), row=1, col=col)
    fig.update_xaxes(title_text="Epoch", rangemode="tozero")
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    _stage_marks(fig, df, cols=2)
    fig.update_layout(height=340, margin=dict(t=40, b=10), legend=dict(orientation="h", y=-0.2))
    return fig


def step_frame(records: list[dict], steps_per_epoch: int | None = None) -> pd.DataFrame:
    """Step-loss records with `x` in epochs (2.5 = half-way through epoch 3)."""
    rows = [r for r in records if r.get("kind") == "step"]
    if not rows:
        return pd.DataFrame(columns=["epoch", "step", "loss", "lr", "x"])
    df = pd.DataFrame(rows).reindex(columns=["epoch", "step", "loss", "lr"])
    df = df.drop_duplicates(["epoch", "step"], keep="last").sort_values(["epoch", "step"])
    # Without the count, the largest step logged (every few steps) stands in for it.
    per_epoch = max(steps_per_epoch or int(df["step"].max()) + 1, 1)
    df["x"] = df["epoch"] - 1 + (df["step"] + 1) / per_epoch
    return df.reset_index(drop=True)


def step_loss(records: list[dict], steps_per_epoch: int | None = None) -> go.Figure:
    """Training loss of single batches as they go by, for the network strategies."""
    df = step_frame(records, steps_per_epoch)
    fig = go.Figure(go.Scatter(x=df["x"], y=df["loss"], mode="lines", line=dict(color=TRAIN_COLOUR, width=1.5),
                               hovertemplate="loss %{y:.3f} at epoch %{x:.2f}<extra></extra>", name="Batch loss"))
    fig.update_layout(title="Training loss, batch by batch", xaxis_title="Epoch", yaxis_title="Loss",
                      height=260, margin=dict(t=40, b=10))
    fig.update_yaxes(rangemode="tozero")
    return fig


def lr_sweep(found: dict) -> go.Figure:
    """Loss against learning rate (log scale) from the finder, with its suggestion marked."""
    lrs, losses, suggestion = found.get("lrs") or [], found.get("losses") or [], found.get("suggestion")
    fig = go.Figure(go.Scatter(x=lrs, y=losses, mode="lines", name="Loss", line=dict(color=TRAIN_COLOUR),
                               hovertemplate="learning rate %{x:.1e}: loss %{y:.3f}<extra></extra>"))
    if suggestion and lrs:
        nearest = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i]) - math.log(suggestion)))
        fig.add_trace(go.Scatter(x=[suggestion], y=[losses[nearest]], mode="markers+text", name="Suggestion",
                                 marker=dict(size=12, color=VAL_COLOUR, symbol="diamond"),
                                 text=[f"suggested {suggestion:.1e}"], textposition="top right",
                                 hovertemplate="suggested learning rate %{x:.1e}<extra></extra>"))
        fig.add_vline(x=suggestion, line_dash="dot", line_color=VAL_COLOUR)
    if losses:  # the loss shoots up at the end of a sweep; keep the interesting part in view
        fig.update_yaxes(range=[0, max(losses[0], min(losses)) * 1.4])
    fig.update_xaxes(type="log", title_text="Learning rate (log scale)", exponentformat="e")
    fig.update_layout(title="Loss while the learning rate grows", yaxis_title="Loss (smoothed)", height=320,
                      margin=dict(t=40, b=10), showlegend=False)
    return fig


def compare_val_accuracy(curves: dict[str, list[dict]]) -> go.Figure:
    """Validation accuracy per epoch of several runs on one chart (run name → its metric records)."""
    fig = go.Figure()
    for i, (label, records) in enumerate(curves.items()):
        df = epoch_frame(records)
        colour = RUN_COLOURS[i % len(RUN_COLOURS)]
        # plotly reads tags in trace names and %{…} in templates: a typed name is escaped, and not templated
        fig.add_trace(go.Scatter(x=df["x"], y=df["val_accuracy"], mode="lines+markers",
                                 name=html.escape(label, quote=False), marker=dict(size=4, color=colour),
                                 line=dict(color=colour),
                                 hovertemplate="%{y:.1%} at epoch %{x}<extra>%{fullData.name}</extra>"))
    fig.update_layout(title="Validation accuracy per epoch", xaxis_title="Epoch (all stages in a row)",
                      yaxis_title="Validation accuracy", height=340, margin=dict(t=40, b=10),
                      legend=dict(orientation="h", y=-0.25))
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    return fig


def run_row(run_id: str, config: dict, status: dict) -> dict:
    """One line of the runs table from a run's config.json and status.json."""
    result = status.get("result") or {}
    lr = result.get("lr", config.get("lr"))
    state = status.get("state", "?")
    return {
        "name": config.get("name") or run_id, "dataset": config.get("dataset"), "strategy": config.get("strategy"),
        "backbone": config.get("backbone"), "epochs": result.get("epochs", config.get("epochs")),
        "lr": f"{lr:.1e}" if isinstance(lr, (int, float)) else str(lr or ""),
        "best val accuracy": result.get("val_accuracy"), "val loss": result.get("val_loss"),
        "seconds": result.get("seconds"),
        # a stopped run's result is the model it kept (imgcls.store.runs.read_status)
        "state": f"stopped early ({state})" if result.get("stopped_early") else state, "run": run_id,
    }


def _shown(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items()) if "__version__" not in value else "custom pipeline"
    if isinstance(value, list):
        return ", ".join(map(str, value))
    return "" if value is None else str(value)


def config_diff(a: dict, b: dict) -> pd.DataFrame:
    """The settings on which two run configs differ, side by side (setting, first, second)."""
    keys = [k for k in COMPARED_KEYS if k in a or k in b]
    rows = [(k, _shown(a.get(k)), _shown(b.get(k))) for k in keys]
    return pd.DataFrame([r for r in rows if r[1] != r[2]], columns=["setting", "first", "second"])
