"""Plotly figures that describe a dataset: images per class and split, and image sizes."""

from __future__ import annotations

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from imgcls.store.workspace import SPLITS

SPLIT_NAMES = {"train": "Train", "val": "Validation", "test": "Test"}
SPLIT_COLOURS = {"Train": "#4C78A8", "Validation": "#F58518", "Test": "#54A24B"}


def _kept(df: pd.DataFrame) -> pd.DataFrame:
    """Rows that count: excluded images are left out of every chart."""
    return df[~df["excluded"].astype(bool)] if "excluded" in df else df


def class_split_counts(df: pd.DataFrame) -> go.Figure:
    """Bar chart of images per class, one bar per split side by side."""
    kept = _kept(df)
    counts = kept.groupby(["label", "split"]).size().rename("images").reset_index()
    counts["split"] = counts["split"].map(lambda s: SPLIT_NAMES.get(s, s))
    # Classes in a stable order (by name) so the chart does not reshuffle between imports.
    order = sorted(kept["label"].unique(), key=str)
    fig = px.bar(
        counts, x="label", y="images", color="split", barmode="group",
        category_orders={"label": order, "split": [SPLIT_NAMES[s] for s in SPLITS]},
        color_discrete_map=SPLIT_COLOURS,
        labels={"label": "Class", "images": "Images", "split": "Split"},
        title="Images per class and split",
    )
    # Class names like "0"…"9" must stay categories, not become a numeric axis.
    fig.update_xaxes(type="category")
    fig.update_layout(legend_title_text="Split", margin=dict(t=50, b=10))
    return fig


def image_sizes(df: pd.DataFrame) -> go.Figure:
    """Scatter of image width × height; a bigger dot means more images share that size."""
    kept = _kept(df)
    sizes = kept.groupby(["width", "height"]).size().rename("images").reset_index()
    # Dots grow with the square root of the count, from 6 px for one image: a set of varied
    # sizes stays a readable cloud, a set of identical sizes shows one big dot.
    marker = (6 + 3 * (sizes["images"] - 1) ** 0.5).clip(upper=40)
    fig = go.Figure(go.Scatter(
        x=sizes["width"], y=sizes["height"], mode="markers", customdata=sizes["images"],
        marker=dict(size=marker, color="#4C78A8", opacity=0.55, line=dict(width=0)),
        hovertemplate="%{x} × %{y} pixels: %{customdata} images<extra></extra>",
    ))
    fig.update_layout(title="Image sizes", xaxis_title="Width (pixels)", yaxis_title="Height (pixels)",
                      margin=dict(t=50, b=10))
    # Axes from zero and at equal pixel scale: a square image sits on the diagonal, and a set of
    # identical sizes shows as one dot in context rather than on a zoomed-in axis.
    # constrain="domain" shrinks the plot area to keep the scale, instead of adding negative sizes.
    fig.update_xaxes(rangemode="tozero", constrain="domain")
    fig.update_yaxes(rangemode="tozero", scaleanchor="x", scaleratio=1, constrain="domain")
    return fig
