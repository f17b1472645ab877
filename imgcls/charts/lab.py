"""Plotly figures of experiment results: one panel per part of the question, the compared models side by side."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from imgcls.charts.training import RUN_COLOURS

PERCENT_AXES = ("accuracy", "share")  # y axes that hold shares, drawn as percentages


def _colour_of(names: list[str]) -> dict[str, str]:
    """One colour per series name, the same in every panel."""
    unique = list(dict.fromkeys(names))
    return {name: RUN_COLOURS[i % len(RUN_COLOURS)] for i, name in enumerate(unique)}


def _trace(s: dict, colour: str, show_legend: bool):
    hover = f"{s['name']}<br>{s['x_label'] or 'x'} %{{x}}: %{{y:.1%}}<extra></extra>"
    if s.get("type") == "bar":
        return go.Bar(x=s["x"], y=s["y"], name=s["name"], marker_color=colour, legendgroup=s["name"],
                      showlegend=show_legend, hovertemplate=hover, text=[f"{v:.1%}" if v is not None else ""
                                                                          for v in s["y"]], textposition="outside")
    mode = s.get("mode", "lines+markers")
    return go.Scatter(x=s["x"], y=s["y"], name=s["name"], mode=mode, legendgroup=s["name"], showlegend=show_legend,
                      line={"color": colour, "dash": s.get("dash", "solid")},
                      marker={"color": colour, "size": 12 if s.get("symbol") else 7,
                              "symbol": s.get("symbol", "circle")},
                      hovertemplate=hover)


def figure(result: dict) -> go.Figure:
    """The result's series: one subplot per panel, one colour per compared model."""
    series = result.get("series") or []
    panels = list(dict.fromkeys(s.get("panel", "") for s in series)) or [""]
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p.capitalize() for p in panels],
                        horizontal_spacing=0.06 if len(panels) > 2 else 0.1)
    colours, shown = _colour_of([s["name"] for s in series]), set()
    for s in series:
        col = panels.index(s.get("panel", "")) + 1
        fig.add_trace(_trace(s, colours[s["name"]], s["name"] not in shown), row=1, col=col)
        shown.add(s["name"])
        fig.update_xaxes(title_text=s["x_label"], row=1, col=col)
        percent = any(word in s["y_label"] for word in PERCENT_AXES)
        fig.update_yaxes(title_text=s["y_label"] if col == 1 or s["y_label"] != series[0]["y_label"] else None,
                         tickformat=".0%" if percent else None, range=[0, 1.08] if percent else None, row=1, col=col)
    title = f"{result.get('kind', '').capitalize()} on '{result.get('dataset', '')}' ({result.get('mode', '')} mode)"
    fig.update_layout(title={"text": title, "font": {"size": 14}}, barmode="group",
                      height=420, margin={"l": 10, "r": 10, "t": 60, "b": 10},
                      # the legend sits under the axis titles, not on them
                      legend={"orientation": "h", "yanchor": "top", "y": -0.22, "x": 0})
    return fig
