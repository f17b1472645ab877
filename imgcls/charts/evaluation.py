"""Tables and plotly figures of an evaluation: per-class scores, confusion matrix, reliability, top-k bars."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import qualitative

from imgcls.evaluate.compare import confusion_difference

BAR_COLOUR, GAP_COLOUR = "#4C78A8", "#E45756"
# Every share the Evaluate page shows has one decimal (81.8% beside 80.0%, never 81.82% beside 80%): in text,
# in tables (PERCENT_COLUMN, on values scaled to 0-100) and in hover labels (PERCENT_HOVER, d3 format).
PERCENT_COLUMN, PERCENT_HOVER = "%.1f%%", ".1%"


def percent(share: float) -> str:
    """A share (0-1) as the Evaluate page writes it: 81.8%."""
    return f"{share:.1%}"


def per_class_frame(result: dict, percent_scale: bool = False) -> pd.DataFrame:
    """One row per class: precision, recall, F1 and how many images of it the split holds; precision and
    recall as percentages (0-100) with percent_scale, for a table formatted with PERCENT_COLUMN."""
    rows = [{"class": c, **result["per_class"][c]} for c in result["classes"]]
    frame = pd.DataFrame(rows, columns=["class", "precision", "recall", "f1", "support"])
    if percent_scale:
        frame[["precision", "recall"]] = frame[["precision", "recall"]] * 100
    return frame


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
        hovertemplate=f"really %{{y}}, predicted %{{x}}<br>%{{customdata[0]}} images "
                      f"(%{{customdata[1]:{PERCENT_HOVER}}} of %{{y}})"
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
                         hovertemplate=f"confidence %{{x:{PERCENT_HOVER}}}: accuracy %{{y:{PERCENT_HOVER}}} of "
                                       "%{customdata} images"
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
                           text=[percent(p) for p in probs], textposition="auto",
                           hovertemplate=f"%{{y}}: %{{x:{PERCENT_HOVER}}}<extra></extra>"))
    fig.update_xaxes(range=[0, 1], tickformat=".0%")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(height=60 + 32 * len(names), margin=dict(t=10, b=10, l=10, r=10))
    return fig


def roc_points(positive: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """False and true positive rates at every distinct score, highest first, from (0, 0) (as scikit-learn's
    roc_curve with drop_intermediate=False), and those thresholds (the first is +inf)."""
    order = np.argsort(-score, kind="mergesort")
    score, positive = np.asarray(score)[order], np.asarray(positive, dtype=bool)[order]
    last = np.r_[np.flatnonzero(np.diff(score)), len(score) - 1]  # the last row of each run of equal scores
    tp, fp = np.cumsum(positive)[last], np.cumsum(~positive)[last]
    fpr = np.r_[0.0, fp / max(fp[-1], 1)]
    tpr = np.r_[0.0, tp / max(tp[-1], 1)]
    return fpr, tpr, np.r_[np.inf, score[last]]


def roc_curves(table: pd.DataFrame, classes: list[str]) -> list[dict]:
    """One-vs-rest ROC curve of each class from a predictions table (its p:<class> columns) with its area;
    for two classes only the second's (the other is its mirror). Classes absent from the split, or the
    only one present, have no curve."""
    labels = table["label"].astype(str).to_numpy()
    shown = classes[1:] if len(classes) == 2 else classes
    curves = []
    for c in shown:
        positive = labels == str(c)
        if positive.all() or not positive.any():
            continue
        fpr, tpr, _ = roc_points(positive, table[f"p:{c}"].to_numpy(dtype=float))
        curves.append({"class": str(c), "fpr": fpr, "tpr": tpr, "auc": float(np.trapezoid(tpr, fpr))})
    return curves


def roc_figure(table: pd.DataFrame, classes: list[str]) -> go.Figure:
    """ROC curves, one per class against the rest, their areas (AUC) in the legend."""
    fig = go.Figure()
    colours = qualitative.Plotly
    for n, curve in enumerate(roc_curves(table, classes)):
        name = curve["class"] if len(classes) > 2 else f"{curve['class']} vs {classes[0]}"
        fig.add_trace(go.Scatter(x=curve["fpr"], y=curve["tpr"], mode="lines",
                                 line=dict(color=colours[n % len(colours)]), name=f"{name} (AUC {curve['auc']:.3f})",
                                 hovertemplate=f"{name}: %{{y:{PERCENT_HOVER}}} found at "
                                               f"%{{x:{PERCENT_HOVER}}} false alarms<extra></extra>"))
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Chance", line=dict(color="#888", dash="dot")))
    fig.update_xaxes(title_text="False positive rate (other classes flagged)", range=[0, 1], tickformat=".0%")
    fig.update_yaxes(title_text="True positive rate (class found)", range=[0, 1.02], tickformat=".0%")
    fig.update_layout(height=320, margin=dict(t=20, b=10), legend=dict(orientation="h", y=-0.3))
    return fig


def confusion_difference_figure(first: dict, second: dict) -> go.Figure:
    """Second run's row-normalised confusion minus the first's: blue where the second puts more images,
    red where fewer (more on the diagonal is better)."""
    classes = [str(c) for c in first["classes"]]
    diff = confusion_difference(first, second)
    top = max(0.1, float(np.abs(diff).max()))  # the scale fits the largest change, so small ones still show
    fig = go.Figure(go.Heatmap(
        z=diff, x=classes, y=classes, text=[[f"{v:+.1%}" if abs(v) >= 0.0005 else "" for v in row] for row in diff],
        texttemplate="%{text}", colorscale="RdBu", zmid=0, zmin=-top, zmax=top,
        colorbar=dict(title="second − first<br>share of true class", tickformat="+.0%"),
        hovertemplate="really %{y}, predicted %{x}: %{z:+.1%}<extra></extra>"))
    fig.update_xaxes(title_text="Predicted", type="category")
    fig.update_yaxes(title_text="True", type="category", autorange="reversed")
    fig.update_layout(height=max(320, 60 * len(classes) + 160), margin=dict(t=20, b=10))
    return fig
