"""Plotly figures of datasets, training runs, evaluations and experiments."""
