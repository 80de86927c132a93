"""The Sweep page's pure parts: its axes, the brush (a range on each axis), the trials it keeps, and
the parallel-coordinates figure. Table in, figure or table out; no Streamlit, no files.

Why the brush is a range slider per axis and not a drag on the chart: Streamlit reports no
selection from a `go.Parcoords` (its `on_select` covers points, boxes and lassos only), so a
brush drawn on the chart would highlight lines while the table below ignored it. A small custom
component could listen to plotly's `plotly_restyle` events, but it would need its own copy of
plotly.js (4 MB, no CDN offline) and a second drawing of the chart. So each axis gets a range
slider: the slider filters the table, and the chart draws the same range as that axis's
`constraintrange` (the highlighted lines are the table's rows). The chart is drawn static, so it
never shows a brush of its own that the table would not follow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go

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

    @property
    def full(self) -> tuple[Any, Any]:
        return self.options[0], self.options[-1]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def axes(table: pd.DataFrame, swept: Sequence[str]) -> list[Axis]:
    """The swept parameters, then best and final test accuracy; an axis whose column holds one
    value or none is left out (nothing to tell apart, nothing to brush)."""
    found = []
    for column in [*swept, BEST, FINAL]:
        if column not in table:
            continue
        values = [v for v in table[column].tolist() if v is not None and not (isinstance(v, float) and math.isnan(v))]
        numeric = bool(values) and all(_is_number(v) for v in values)
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


def constraint(axis: Axis, low: Any, high: Any) -> list[float] | None:
    """The axis's `constraintrange` for the brush [low, high], or None when the brush is the whole
    axis. It reaches halfway to the neighbouring values, so the lines plotly highlights are exactly
    the trials the table keeps (a range ending on a value, to the float, could drop it)."""
    if (low, high) == axis.full:
        return None
    positions = [_position(axis, v) for v in axis.options]
    i, j = axis.options.index(low), axis.options.index(high)
    span = (positions[-1] - positions[0]) or 1.0
    below = (positions[i] - positions[i - 1]) / 2 if i > 0 else span * 0.02
    above = (positions[j + 1] - positions[j]) / 2 if j + 1 < len(positions) else span * 0.02
    return [positions[i] - below, positions[j] + above]


def brushed(table: pd.DataFrame, found: Sequence[Axis], ranges: Mapping[str, tuple[Any, Any]]) -> pd.DataFrame:
    """The rows inside every brushed axis's range. An axis brushed to its whole range filters
    nothing (a trial with no result yet stays); a narrowed one keeps only rows with a value in it."""
    keep = np.ones(len(table), dtype=bool)
    for axis in found:
        low, high = ranges.get(axis.column, axis.full)
        if (low, high) == axis.full:
            continue
        i, j = axis.options.index(low), axis.options.index(high)
        inside = {repr(v) for v in axis.options[i:j + 1]}
        keep &= np.array([repr(v) in inside for v in table[axis.column].tolist()], dtype=bool)
    return table[keep]


def parallel_coordinates(table: pd.DataFrame, found: Sequence[Axis],
                         ranges: Mapping[str, tuple[Any, Any]]) -> go.Figure:
    """One line per trial with a result, coloured by best test accuracy; each brushed axis shows
    its range as plotly's constraintrange."""
    drawn = table[table[BEST].notna()] if BEST in table else table
    dimensions = []
    for axis in found:
        values = [_position(axis, v) if v in axis.options else np.nan for v in drawn[axis.column].tolist()]
        dimension: dict[str, Any] = dict(label=axis.label, values=values)
        if not axis.numeric:
            dimension.update(tickvals=list(range(len(axis.options))), ticktext=[axis.text(v) for v in axis.options],
                             range=[-0.25, len(axis.options) - 0.75])
        else:
            dimension.update(range=[_position(axis, axis.options[0]), _position(axis, axis.options[-1])])
        limits = constraint(axis, *ranges.get(axis.column, axis.full))
        if limits is not None:
            dimension["constraintrange"] = limits
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
