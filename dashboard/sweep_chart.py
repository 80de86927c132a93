"""The Sweep page's pure parts: its axes, the brush (ranges drawn on the axes), the trials it keeps,
and the parallel-coordinates figure. Table in, figure or table out; no Streamlit, no files.

A brush is one or more [low, high] intervals on an axis, in the axis's own coordinates (the value
itself on a number axis, the category's index on the others). The user draws it as a box over an
axis's points (several with Shift); the table keeps the trials whose value lies in every brushed
axis's intervals, ends included: the points inside the boxes are those trials' points there.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.colors import sample_colorscale

from engine.safe_io import is_number

# Result columns of the trials table, in percent.
BEST, FINAL = "best_test_acc", "final_test_acc"
RESULT_LABELS = {BEST: "best test acc (%)", FINAL: "final test acc (%)"}
TITLE = "Swept settings against test accuracy"
COLOURSCALE = "Viridis"
SHADES = 12  # the lines' colours: best test accuracy in this many steps
# The toolbar: save as PNG and box select (the chart's own drag): the brush is all it does.
CONFIG = {"displaylogo": False, "modeBarButtons": [["toImage", "select2d"]]}


@dataclass(frozen=True)
class Axis:
    """One axis of the chart and its brush: a table column, its distinct values in axis order
    (numbers ascending; other values in the order the sweep lists them), and whether it is numeric."""

    column: str
    label: str
    options: tuple[Any, ...]
    numeric: bool

    def text(self, value: Any) -> str:
        if isinstance(value, float):
            return f"{value:.2f}" if self.column in RESULT_LABELS else f"{value:.4g}"
        return str(value)


def axes(table: pd.DataFrame, swept: Sequence[str]) -> list[Axis]:
    """The swept parameters, then best and final test accuracy; an axis whose column holds one
    value or none is left out (nothing to tell apart, nothing to brush)."""
    found = []
    for column in [*swept, BEST, FINAL]:
        if column not in table:
            continue
        values = [v for v in table[column].tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
        numeric = bool(values) and all(is_number(v) for v in values)
        if numeric:
            options = tuple(sorted(set(values)))
        else:
            options = tuple(dict.fromkeys(values))  # first appearance: the sweep's own order
        if len(options) >= 2:
            found.append(Axis(column, RESULT_LABELS.get(column, column), options, numeric))
    return found


def _position(axis: Axis, value: Any) -> float:
    """Where a value sits on its axis: the number itself, or a category's index."""
    return float(value) if axis.numeric else float(axis.options.index(value))


Brushes = Mapping[str, Sequence[Sequence[float]]]  # column -> [[low, high], ...] on its axis


def _height(axis: Axis, value: Any) -> float:
    """Where a value is drawn on its axis, from 0 (its first option, or its smallest number) to 1."""
    low, high = _position(axis, axis.options[0]), _position(axis, axis.options[-1])
    return (_position(axis, value) - low) / (high - low)


def _from_height(axis: Axis, height: float) -> float:
    """The inverse of `_height`: a height on the chart in the axis's own coordinates."""
    low, high = _position(axis, axis.options[0]), _position(axis, axis.options[-1])
    return low + height * (high - low)


def brushes_from(boxes: Any, found: Sequence[Axis]) -> dict[str, list[list[float]]]:
    """The brushes the boxes dragged on the chart make (Streamlit's `selection.box`: each a dict
    whose "x" and "y" are the box's two corners in the chart's coordinates, axis i standing at
    x = i): every axis a box spans gets the box's height as an interval in its own coordinates.
    What the browser sent is kept only where it is such a box (the page never trusts it)."""
    kept: dict[str, list[list[float]]] = {}
    for box in boxes if isinstance(boxes, (list, tuple)) else ():
        corners = [box.get(side) if isinstance(box, Mapping) else None for side in ("x", "y")]
        if not all(isinstance(c, (list, tuple)) and len(c) == 2 and all(is_number(v) for v in c) for c in corners):
            continue
        (left, right), (bottom, top) = (sorted(map(float, c)) for c in corners)
        for index, axis in enumerate(found):
            if left <= index <= right:
                kept.setdefault(axis.column, []).append([_from_height(axis, bottom), _from_height(axis, top)])
    return kept


def inside(axis: Axis, intervals: Sequence[Sequence[float]]) -> tuple[Any, ...]:
    """The axis's values that lie in any of the intervals, ends included."""
    return tuple(v for v in axis.options if any(low <= _position(axis, v) <= high for low, high in intervals))


def brushed(table: pd.DataFrame, found: Sequence[Axis], brushes: Brushes) -> pd.DataFrame:
    """The rows inside every brushed axis's intervals. An axis without a brush filters nothing (a
    trial with no result yet stays); a brushed one keeps only rows with a value in it."""
    keep = np.ones(len(table), dtype=bool)
    for axis in found:
        if axis.column not in brushes:
            continue
        kept = {repr(v) for v in inside(axis, brushes[axis.column])}
        keep &= np.array([repr(v) in kept for v in table[axis.column].tolist()], dtype=bool)
    return table[keep]


def parallel_coordinates(table: pd.DataFrame, found: Sequence[Axis]) -> go.Figure:
    """One line per trial with a result across the axes (axis i at x = i, each value at its
    `_height`), coloured by best test accuracy, with a point where it crosses each axis: the points
    are what a box selects. Drawn as SVG, not plotly's WebGL parcoords: on a machine without a GPU
    that cost a second per visit, and a plain chart reports its box selections to Streamlit itself."""
    drawn = table[table[BEST].notna()] if BEST in table else table
    values = list(drawn[[axis.column for axis in found]].itertuples(index=False))
    heights = np.array([[_height(axis, v) if v in axis.options else np.nan for axis, v in zip(found, row)]
                        for row in values], dtype=float).reshape(len(drawn), len(found))
    best = pd.to_numeric(drawn[BEST], errors="coerce").to_numpy(dtype=float) if BEST in drawn else np.zeros(len(drawn))
    low, high = (np.nanmin(best), np.nanmax(best)) if np.isfinite(best).any() else (0.0, 1.0)
    shade = (best - low) / (high - low) if high > low else np.full(len(best), 0.5)
    figure = go.Figure()
    positions = list(range(len(found)))
    # Lines of one shade share a trace, cut apart by gaps: a dozen traces for any number of trials.
    tones = np.round(np.nan_to_num(shade, nan=0.0) * (SHADES - 1)).astype(int)
    for tone, colour in enumerate(sample_colorscale(COLOURSCALE, np.linspace(0, 1, SHADES).tolist())):
        rows = heights[tones == tone]
        if len(rows):
            figure.add_scatter(x=np.tile([*positions, None], len(rows)),
                               y=np.column_stack([rows, np.full(len(rows), np.nan)]).ravel(),
                               mode="lines", line=dict(color=colour, width=2), opacity=0.8, connectgaps=False,
                               hoverinfo="skip", showlegend=False)
    trials = drawn["trial"].tolist() if "trial" in drawn else list(range(1, len(drawn) + 1))
    figure.add_scatter(
        x=[i for _ in range(len(drawn)) for i in positions], y=heights.ravel(), mode="markers", showlegend=False,
        customdata=[[trial, axis.label, axis.text(v)] for trial, row in zip(trials, values)
                    for axis, v in zip(found, row)],
        hovertemplate="trial %{customdata[0]}<br>%{customdata[1]}: %{customdata[2]}<extra></extra>",
        marker=dict(size=9, color=np.repeat(best, len(found)), colorscale=COLOURSCALE, cmin=low, cmax=high,
                    line=dict(width=1, color="white"),
                    colorbar=dict(title=dict(text=RESULT_LABELS[BEST], side="right"), thickness=12)),
        selected=dict(marker=dict(opacity=1.0)), unselected=dict(marker=dict(opacity=0.25)))
    for index, axis in enumerate(found):
        figure.add_shape(type="line", x0=index, x1=index, y0=0, y1=1, line=dict(color="#888", width=1), layer="below")
        for value in _ticks(axis):
            figure.add_annotation(x=index, y=_height(axis, value), text=axis.text(value), showarrow=False,
                                  xanchor="right", xshift=-6, font=dict(size=11, color="#444"))
    figure.update_xaxes(tickvals=positions, ticktext=[axis.label for axis in found], side="top",
                        range=[-0.6, len(found) - 0.6], showgrid=False, zeroline=False, fixedrange=True)
    figure.update_yaxes(range=[-0.06, 1.06], visible=False, fixedrange=True)
    figure.update_layout(title=TITLE, height=380, margin=dict(l=40, r=20, t=90, b=20), dragmode="select",
                         plot_bgcolor="white")
    return figure


def _ticks(axis: Axis, most: int = 6) -> tuple[Any, ...]:
    """The values written beside an axis: every option while there are few, else evenly spaced
    values (a number axis) or options (the others) from end to end."""
    if len(axis.options) <= most:
        return axis.options
    if axis.numeric:
        return tuple(np.linspace(float(axis.options[0]), float(axis.options[-1]), 5).tolist())
    picks = np.linspace(0, len(axis.options) - 1, most).round().astype(int)
    return tuple(axis.options[i] for i in dict.fromkeys(picks.tolist()))
