"""Charts of training dynamics: the data map and true-class probability over epochs. Pure: arrays
in, plotly figure out (dashboard/charts.py holds the shared palette and chart config)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go

from dashboard.charts import HEIGHT, axes_layout, run_colour

MAP_CONFIG = {"displaylogo": False,  # the data map's toolbar: box and lasso to pick images, zoom to look closer
              "modeBarButtons": [["toImage", "select2d", "lasso2d", "zoom2d", "pan2d", "resetScale2d"]]}
CORRECTNESS_SCALE = [[0.0, "#d62728"], [0.5, "#f2c94c"], [1.0, "#1f77b4"]]  # never right .. always right


def data_map(indices: np.ndarray, variability: np.ndarray, confidence: np.ndarray, correctness: np.ndarray,
             given: Sequence[str]) -> go.Figure:
    """Dataset cartography (Swayamdipta et al., 2020): one point per training image, x = variability,
    y = confidence, colour = correctness. WebGL, so 50,000 points draw at once; box or lasso selects."""
    fig = go.Figure(go.Scattergl(
        x=np.round(variability, 4), y=np.round(confidence, 4), mode="markers", customdata=indices,
        text=list(given), marker=dict(size=4, color=correctness, colorscale=CORRECTNESS_SCALE, cmin=0, cmax=1,
                                      opacity=0.6, colorbar=dict(title=dict(text="correctness", side="top"),
                                                                  tickformat=".0%", thickness=12)),
        hovertemplate="#%{customdata} given %{text}<br>confidence %{y:.0%}<br>variability %{x:.2f}"
                      "<br>right in %{marker.color:.0%} of epochs<extra></extra>"))
    for text, x, y in (("easy", 0.02, 0.98), ("hard to learn", 0.02, 0.02), ("ambiguous", 0.98, 0.5)):
        fig.add_annotation(text=text, xref="paper", yref="paper", x=x, y=y, showarrow=False,
                           xanchor="left" if x < 0.5 else "right", font=dict(color="#555"))
    axes_layout(fig, "Data map: drag a box or a lasso to see those images",
            "variability (std of the true-class probability over epochs)",
            "confidence (mean true-class probability)", height=HEIGHT + 120, dragmode="select")
    fig.update_yaxes(range=[-0.02, 1.02], tickformat=".0%")
    fig.update_xaxes(rangemode="tozero")
    return fig


def probability_over_epochs(epochs: np.ndarray, probs: np.ndarray, names: Sequence[str]) -> go.Figure:
    """One line per image: its true-class probability at each recorded epoch (probs: (E, k);
    NaN where an epoch did not draw the image, drawn as a gap)."""
    fig = go.Figure()
    for k, name in enumerate(names):
        fig.add_scatter(x=epochs, y=probs[:, k].astype(float) * 100, mode="lines+markers", name=name,
                        line=dict(width=1.5, color=run_colour(k)), marker=dict(size=4))
    axes_layout(fig, "True-class probability over training, images on this page", "epoch",
            "probability of the given label (%)")
    fig.update_yaxes(range=[0, 100])
    fig.update_xaxes(dtick=1 if len(epochs) <= 20 else None)
    return fig
