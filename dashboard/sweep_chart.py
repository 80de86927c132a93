"""The Sweep page's pure parts: its axes, the brush (ranges drawn on the axes), the trials it keeps,
and the parallel-coordinates figure. Table in, figure or table out; no Streamlit, no files.

A brush is what plotly's parcoords calls an axis's `constraintrange`: one or more [low, high]
intervals in the axis's own coordinates (the value itself on a number axis, the category's index
on the others). The chart is drawn by dashboard/parcoords_brush.py, which sends the brushes drawn
on it back; the table keeps the trials whose value lies in every brushed axis's intervals, by
the same inclusive test plotly uses to highlight lines, so the lines and the rows are the same trials.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

from engine.safe_io import is_number

# Result columns of the trials table, in percent.
BEST, FINAL = "best_test_acc", "final_test_acc"
RESULT_LABELS = {BEST: "best test acc (%)", FINAL: "final test acc (%)"}
TITLE = "Swept settings against test accuracy"
COLOURSCALE = "Viridis"


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


def brushes_from(value: Any, found: Sequence[Axis]) -> dict[str, list[list[float]]]:
    """The brushes a chart sent back, kept only where they name one of `found`'s axes and are
    intervals of two finite numbers (the page never trusts what a browser sends)."""
    columns = {axis.column for axis in found}
    kept: dict[str, list[list[float]]] = {}
    if not isinstance(value, Mapping):
        return kept
    for column, intervals in value.items():
        if column not in columns or not isinstance(intervals, (list, tuple)):
            continue
        good = [sorted(map(float, pair)) for pair in intervals
                if isinstance(pair, (list, tuple)) and len(pair) == 2 and all(is_number(v) for v in pair)]
        if good:
            kept[column] = good
    return kept


def inside(axis: Axis, intervals: Sequence[Sequence[float]]) -> tuple[Any, ...]:
    """The axis's values that lie in any of the intervals (ends included, as plotly highlights)."""
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


def parallel_coordinates(table: pd.DataFrame, found: Sequence[Axis], brushes: Brushes) -> go.Figure:
    """One line per trial with a result, coloured by best test accuracy; each brushed axis shows
    its brushes as plotly's constraintrange. Each dimension is named after its column, which is
    how the chart names the brushes it sends back (a user may drag the axes into another order)."""
    drawn = table[table[BEST].notna()] if BEST in table else table
    dimensions = []
    for axis in found:
        values = [_position(axis, v) if v in axis.options else np.nan for v in drawn[axis.column].tolist()]
        dimension: dict[str, Any] = dict(label=axis.label, name=axis.column, values=values)
        if not axis.numeric:
            dimension.update(tickvals=list(range(len(axis.options))), ticktext=[axis.text(v) for v in axis.options],
                             range=[-0.25, len(axis.options) - 0.75])
        else:
            dimension.update(range=[_position(axis, axis.options[0]), _position(axis, axis.options[-1])])
        intervals = [list(pair) for pair in brushes.get(axis.column, ())]
        if intervals:
            dimension["constraintrange"] = intervals[0] if len(intervals) == 1 else intervals
        dimensions.append(dimension)
    colour = drawn[BEST].tolist() if BEST in drawn else None
    figure = go.Figure(go.Parcoords(
        dimensions=dimensions,
        line=dict(color=colour, colorscale=COLOURSCALE, showscale=True,
                  colorbar=dict(title=dict(text="best test acc (%)"))) if colour else {},
        unselected=dict(line=dict(color="#d0d0d0", opacity=0.35)),
    ))
    figure.update_layout(title=TITLE, height=380, margin=dict(l=70, r=70, t=90, b=30))
    return figure
