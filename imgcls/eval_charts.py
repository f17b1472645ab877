"""Tables and plotly figures of an evaluation: per-class scores, confusion matrix, reliability, top-k bars."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go

BAR_COLOUR, GAP_COLOUR = "#4C78A8", "#E45756"


def per_class_frame(result: dict) -> pd.DataFrame:
    """One row per class: precision, recall, F1 and how many images of it the split holds."""
    rows = [{"class": c, **result["per_class"][c]} for c in result["classes"]]
    return pd.DataFrame(rows, columns=["class", "precision", "recall", "f1", "support"])


def confusion_figure(result: dict) -> go.Figure:
    """Counts in the cells, coloured by the share of the true class (rows), so rare classes show too."""
    classes = [str(c) for c in result["classes"]]
    counts, shares = result["confusion"], result["confusion_normalised"]
    text = [[str(n) for n in row] for row in counts]
    fig = go.Figure(go.Heatmap(
        z=shares, x=classes, y=classes, text=text, texttemplate="%{text}", hoverinfo="skip",
        colorscale="Blues", zmin=0, zmax=1, colorbar=dict(title="share of<br>true class", tickformat=".0%"),
    ))
    size = max(320, 60 * len(classes) + 160)
    # Plotly reports no clicks on heatmap cells, so an invisible square marker sits on each cell to take them.
    cells = [(t, p, counts[i][j], shares[i][j]) for i, t in enumerate(classes) for j, p in enumerate(classes)]
    fig.add_trace(go.Scatter(
        x=[c[1] for c in cells], y=[c[0] for c in cells], mode="markers", showlegend=False,
        marker=dict(symbol="square", size=max(10, min(80, int(0.9 * (size - 120) / len(classes)))),
                    color="rgba(0,0,0,0)"),
        customdata=[[c[2], c[3]] for c in cells],
        hovertemplate="really %{y}, predicted %{x}<br>%{customdata[0]} images (%{customdata[1]:.0%} of %{y})"
                      "<extra></extra>",
    ))
    fig.update_xaxes(title_text="Predicted", type="category", side="bottom")
    fig.update_yaxes(title_text="True", type="category", autorange="reversed")
    fig.update_layout(height=size, margin=dict(t=20, b=10))
    return fig


def cell_options(result: dict) -> list[str]:
    """Non-empty confusion cells as 'row,col' indices: mistakes first (largest first), then the diagonal."""
    counts = result["confusion"]
    cells = [(n, i, j) for i, row in enumerate(counts) for j, n in enumerate(row) if n]
    cells.sort(key=lambda c: (c[1] == c[2], -c[0], c[1], c[2]))
    return [f"{i},{j}" for _, i, j in cells]


def cell_rows(table: pd.DataFrame, true: str, predicted: str) -> pd.DataFrame:
    """The predictions of one confusion cell, most confident first."""
    rows = table[(table["label"].astype(str) == str(true)) & (table["prediction"].astype(str) == str(predicted))]
    return rows.sort_values("confidence", ascending=False)


def worst_mistakes(table: pd.DataFrame, n: int = 12) -> pd.DataFrame:
    """The wrong predictions the model was surest of."""
    wrong = table[~table["correct"].astype(bool)]
    return wrong.sort_values("confidence", ascending=False).head(n)


def reliability_figure(result: dict) -> go.Figure:
    """Accuracy per confidence bin against the diagonal of perfect calibration."""
    bins = result.get("reliability") or []
    mids = [(b["low"] + b["high"]) / 2 for b in bins]
    width = [b["high"] - b["low"] for b in bins]
    fig = go.Figure()
    fig.add_trace(go.Bar(x=mids, y=[b["accuracy"] for b in bins], width=width, name="Accuracy",
                         marker_color=BAR_COLOUR, customdata=[b["count"] for b in bins],
                         hovertemplate="confidence %{x:.0%}: accuracy %{y:.0%} of %{customdata} images"
                                       "<extra></extra>"))
    fig.add_trace(go.Scatter(x=mids, y=[b["confidence"] for b in bins], mode="markers", name="Mean confidence",
                             marker=dict(color=GAP_COLOUR, size=8)))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Perfectly calibrated",
                             line=dict(color="#888", dash="dot")))
    fig.update_xaxes(title_text="Confidence", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text="Accuracy", range=[0, 1.02], tickformat=".0%")
    fig.update_layout(height=320, margin=dict(t=20, b=10), legend=dict(orientation="h", y=-0.25), bargap=0.05)
    return fig


def top_k_figure(top: list[tuple[str, float]]) -> go.Figure:
    """The top-k class probabilities of one image as horizontal bars, the likeliest on top."""
    names, probs = [str(c) for c, _ in top], [p for _, p in top]
    fig = go.Figure(go.Bar(x=probs, y=names, orientation="h", marker_color=BAR_COLOUR,
                           text=[f"{p:.1%}" for p in probs], textposition="auto",
                           hovertemplate="%{y}: %{x:.1%}<extra></extra>"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(height=60 + 32 * len(names), margin=dict(t=10, b=10, l=10, r=10))
    return fig
