"""Pure chart builders: data in, plotly figure out. No Streamlit, no file access.

Every axis has a title with its unit; a class keeps one colour everywhere (`class_colour`),
and in comparisons a run keeps one colour everywhere (`run_colour`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go

# One palette for classes, one for runs: a class or a run is drawn in the same colour on every page.
CLASS_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                 "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")
RUN_PALETTE = ("#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2",
               "#B279A2", "#FF9DA6", "#9D755D", "#BAB0AC", "#EECA3B")
HEIGHT = 340
# The chart toolbar keeps what people use (save as PNG, zoom, pan, reset); plotly's full bar of a
# dozen buttons per chart costs about 0.3 s of drawing on a page of six charts on 2 cores.
CONFIG = {"displaylogo": False, "modeBarButtons": [["toImage", "zoom2d", "pan2d", "resetScale2d"]]}
DIVERGING = [[0.0, "#b2182b"], [0.5, "#f7f7f7"], [1.0, "#1a9850"]]  # red = worse, white = same, green = better


def class_colour(index: int) -> str:
    return CLASS_PALETTE[index % len(CLASS_PALETTE)]


def run_colour(position: int) -> str:
    return RUN_PALETTE[position % len(RUN_PALETTE)]


def _values(table: pd.DataFrame, column: str, scale: float = 1.0) -> np.ndarray:
    """A column as floats for plotting, every value that is no finite number (null, NaN, infinity,
    text) as NaN, which plotly draws as a gap."""
    values = pd.to_numeric(table[column], errors="coerce").to_numpy(dtype=float) * scale
    values[~np.isfinite(values)] = np.nan
    return values


def axes_layout(fig: go.Figure, title: str, x: str, y: str, **extra) -> go.Figure:
    fig.update_layout(title=title, xaxis_title=x, yaxis_title=y, height=extra.pop("height", HEIGHT),
                      margin=dict(l=60, r=20, t=50, b=50), legend=dict(orientation="h", y=-0.25), **extra)
    return fig


def training_curves(epochs: pd.DataFrame, metric: str, steps: pd.DataFrame | None = None) -> go.Figure:
    """Train vs test per epoch for `metric` ("acc" or "loss"); the per-step train loss as a faint line.

    `epochs` has columns epoch, train_<metric>, test_<metric>; `steps` has epoch_position, loss."""
    fig = go.Figure()
    if metric == "loss" and steps is not None and len(steps):
        fig.add_scatter(x=steps["epoch_position"], y=_values(steps, "loss"), mode="lines", name="train loss per step",
                        line=dict(color=run_colour(0), width=1), opacity=0.25)
    scale = 100.0 if metric == "acc" else 1.0
    for split, dash in (("train", "dot"), ("test", "solid")):
        column = f"{split}_{metric}"
        if column in epochs:
            fig.add_scatter(x=epochs["epoch"], y=_values(epochs, column, scale), mode="lines+markers",
                            name=f"{split} {metric}", line=dict(color=run_colour(0 if split == "train" else 1),
                                                                dash=dash))
    label = "accuracy (%)" if metric == "acc" else "cross-entropy loss"
    _whole_epochs(fig, epochs)
    return axes_layout(fig, f"{'Accuracy' if metric == 'acc' else 'Loss'} per epoch", "epoch", label)


def _whole_epochs(fig: go.Figure, *tables: pd.DataFrame) -> None:
    """Epoch axes tick at whole epochs (no "epoch 1.4") while there are few of them."""
    last = max((float(t["epoch"].max()) for t in tables if len(t) and "epoch" in t), default=0)
    if last <= 20:
        fig.update_xaxes(dtick=1)


def lr_schedule(steps: pd.DataFrame) -> go.Figure:
    """The learning rate each optimizer step used."""
    fig = go.Figure(go.Scatter(x=steps["step"], y=_values(steps, "lr"), mode="lines", name="learning rate",
                               line=dict(color=run_colour(2))))
    return axes_layout(fig, "Learning-rate schedule", "optimizer step", "learning rate")


def lr_finder_curve(lr_finder: Mapping) -> go.Figure:
    """Loss against LR on a log axis, the suggestion marked and the LR actually used as a line.

    The "LR used" line is a trace, not a shape: a shape on a log axis takes the exponent, an easy
    way to draw it far off the plot."""
    lrs, raw, smooth = lr_finder.get("lr") or [], lr_finder.get("loss") or [], lr_finder.get("smoothed_loss") or []
    fig = go.Figure()
    fig.add_scatter(x=lrs, y=raw, mode="lines", name="loss", line=dict(color=run_colour(0), width=1), opacity=0.35)
    if smooth:
        fig.add_scatter(x=lrs, y=smooth, mode="lines", name="smoothed loss", line=dict(color=run_colour(0)))
    index, suggested = lr_finder.get("suggestion_index"), lr_finder.get("suggested_lr")
    at = [v for v in (smooth[index] if smooth and index is not None and 0 <= index < len(smooth) else None,
                      raw[index] if index is not None and 0 <= index < len(raw) else None) if v is not None]
    if suggested is not None and index is not None and 0 <= index < len(lrs) and at:
        y = at[0]  # on the smoothed curve, or the raw one where the smoothed value is a gap
        fig.add_scatter(x=[suggested], y=[y], mode="markers", name=f"suggestion {suggested:.3g}",
                        marker=dict(color=run_colour(3), size=12, symbol="star"))
    used = lr_finder.get("used_lr")
    finite = [v for v in (*raw, *smooth) if v is not None and np.isfinite(v)]
    if used and finite:
        fig.add_scatter(x=[used, used], y=[min(finite), max(finite)], mode="lines", name=f"LR used {used:.3g}",
                        line=dict(color=run_colour(2), dash="dash"))
    fig.update_xaxes(type="log")
    return axes_layout(fig, "LR range test", "learning rate (log scale)", "training loss (cross-entropy)")


def lr_finder_progress(rows: pd.DataFrame, start_lr: float | None, end_lr: float | None) -> go.Figure:
    """The range test while it runs: raw loss against LR, the log axis fixed to the whole sweep
    (a little wider, so the end points sit inside it) so the curve grows from the left."""
    fig = go.Figure(go.Scatter(x=rows["lr"], y=_values(rows, "loss"), mode="lines+markers", name="loss at each step",
                               line=dict(color=run_colour(0), width=1), marker=dict(size=3)))
    fig.update_xaxes(type="log")
    if start_lr and end_lr and 0 < start_lr < end_lr:
        fig.update_xaxes(range=[np.log10(start_lr) - 0.1, np.log10(end_lr) + 0.1], autorange=False)
    return axes_layout(fig, "LR range test so far", "learning rate (log scale)", "loss (raw cross-entropy)",
                   showlegend=True)


def per_class_accuracy(table: pd.DataFrame) -> go.Figure:
    """Grouped bars: one group per class, one bar per run (columns of `table`, index = classes).

    With one run the bars take the class colours; with several, each run its own colour. The
    accuracy axis is zoomed to the data, so 97% and 100% bars look different."""
    fig = go.Figure()
    single = len(table.columns) == 1
    for position, run in enumerate(table.columns):
        colours = [class_colour(i) for i in range(len(table))] if single else run_colour(position)
        fig.add_bar(x=list(table.index), y=table[run] * 100, name=str(run), marker_color=colours,
                    hovertemplate="%{x}: %{y:.1f}%<extra>" + str(run) + "</extra>")
    fig.update_layout(barmode="group", showlegend=not single)
    fig.update_yaxes(range=accuracy_range(table.to_numpy() * 100))
    fig.update_xaxes(type="category", tickmode="linear")  # every class named, digits included
    return axes_layout(fig, "Accuracy per class", "true class", "accuracy (%)")


def accuracy_range(values: np.ndarray, margin: float = 5.0) -> list[float]:
    """An accuracy axis (in %) from a little below the lowest value to a little above the highest."""
    finite = np.asarray(values, float)[np.isfinite(np.asarray(values, float))]
    if not finite.size:
        return [0.0, 100.0]
    low, high = float(finite.min()), float(finite.max())
    return [max(0.0, low - margin), min(100.0, high + margin) if high < 100 else 100.5]


def _text_colours(colours: np.ndarray, scale: str, low: float, high: float) -> list[str]:
    """Black or white per cell, whichever contrasts more with the cell's own colour."""
    from plotly.colors import sample_colorscale, unlabel_rgb

    position = np.clip((colours - low) / max(high - low, 1e-9), 0, 1)
    out = []
    for rgb in sample_colorscale(scale, list(position)):
        r, g, b = (c / 255 for c in unlabel_rgb(rgb))
        linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
        out.append("black" if (luminance + 0.05) / 0.05 >= 1.05 / (luminance + 0.05) else "white")
    return out


def text_px(labels: Sequence[str], font_px: float = 12) -> int:
    """About how wide the widest label is drawn, in pixels (an average glyph is ~0.6 em wide)."""
    return int(0.6 * font_px * max((len(str(label)) for label in labels), default=1)) + 4


def confusion_cell_px(n: int) -> int:
    """The side of one cell: large enough for its number, a 10-class grid about 440 px a side."""
    return max(14, min(48, 440 // max(n, 1)))


def confusion_grid(matrix: np.ndarray, class_names: Sequence[str], title: str, value_label: str,
                   diverging: bool = False, percent: bool = False) -> go.Figure:
    """A confusion matrix drawn as square scatter markers: unlike go.Heatmap, points can be
    selected (streamlit #8760). Each point's customdata is (true class, predicted class).

    The figure has a fixed size in pixels, so that the plot area is exactly n cells a side and each
    marker exactly one cell: the squares touch, as a heatmap's cells do, and the class labels sit
    right beside them (axes tight to the cells, margins fitted to the labels). Draw it at its own
    width (`st.plotly_chart(..., width="content")`).

    `percent`: the values are percentages. `diverging`: `matrix` is run B minus run A; the colour
    is "better for B" (green): more images on the diagonal, fewer off it, so one colour means one
    thing everywhere, while the numbers stay B − A."""
    n = len(class_names)
    true, pred = np.divmod(np.arange(n * n), n)
    values = matrix.reshape(-1).astype(float)
    if diverging:
        colours = np.where(true == pred, values, -values)
        limit = max(abs(colours).max(), 1e-9)
        scale, low, high = DIVERGING, -limit, limit
        bar_text = f"{value_label}<br>green = B better,<br>red = B worse"
        bar = dict(title=dict(text=bar_text, side="top"))
    else:
        colours = values
        scale, low, high = "Blues", 0.0, max(values.max(), 1e-9)
        bar_text = value_label
        bar = dict(title=dict(text=bar_text, side="top"), ticksuffix="%" if percent else "")
    text = [f"{v:.0f}%" if percent else f"{v:+.0f}" if diverging else f"{v:.0f}" for v in values]
    cell = confusion_cell_px(n)
    side = cell * n
    label = text_px(class_names)
    upright = label <= cell  # x labels fit under their cells; else they lean at 45 degrees
    title_lines = title.count("<br>") + 1
    bar_px = max(text_px(part.split("<br>")) for part in bar_text.split("<br>"))
    margin = dict(l=label + 30, r=max(90, bar_px + 30), t=30 + 22 * title_lines,
                  b=(20 if upright else int(0.72 * label) + 10) + 30, pad=0)
    bar.update(thickness=14, len=1.0, lenmode="fraction", x=1.0, xanchor="left", xpad=12, y=0.5, yanchor="middle")
    fig = go.Figure(go.Scatter(
        x=[class_names[p] for p in pred], y=[class_names[t] for t in true], mode="markers+text",
        text=text, textfont=dict(size=max(8, cell // 4), color=_text_colours(colours, scale, low, high)),
        customdata=np.stack([true, pred], axis=1), cliponaxis=False,
        marker=dict(symbol="square", size=cell, color=colours, colorscale=scale, cmin=low, cmax=high,
                    colorbar=bar, line=dict(width=1, color="white")),
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>"))
    tight = dict(type="category", categoryorder="array", categoryarray=list(class_names), showgrid=False,
                 zeroline=False, showline=False, ticks="", fixedrange=True, tickfont=dict(size=12),
                 title_standoff=10)  # the margins already fit the labels: automargin only places the titles
    fig.update_xaxes(range=[-0.5, n - 0.5], tickangle=0 if upright else -45, ticklabelstandoff=4, **tight)
    fig.update_yaxes(range=[n - 0.5, -0.5], ticklabelstandoff=4, **tight)  # true class 0 at the top
    fig.update_layout(title=dict(text=title, x=0, xanchor="left", xref="paper"),
                      xaxis_title="predicted class", yaxis_title="true class", autosize=False,
                      width=margin["l"] + side + margin["r"], height=margin["t"] + side + margin["b"], margin=margin,
                      showlegend=False, clickmode="event+select", dragmode=False, plot_bgcolor="white")
    return fig


def probability_bars(probs: np.ndarray, class_names: Sequence[str], true: int, pred: int) -> go.Figure:
    """One image's class probabilities, in the class colours; true and predicted classes named."""
    labels = [f"{name}{' (true)' if i == true else ''}{' (predicted)' if i == pred and i != true else ''}"
              for i, name in enumerate(class_names)]
    fig = go.Figure(go.Bar(x=np.asarray(probs) * 100, y=labels, orientation="h",
                           marker_color=[class_colour(i) for i in range(len(class_names))],
                           hovertemplate="%{y}: %{x:.1f}%<extra></extra>"))
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(range=[0, 100])
    return axes_layout(fig, "Class probabilities", "probability (%)", "class")


def compare_curves(epochs_by_run: Mapping[str, pd.DataFrame], column: str, label: str) -> go.Figure:
    """One line per run for an epoch column, in the run colours."""
    fig = go.Figure()
    scale = 100.0 if column.endswith("_acc") else 1.0
    for position, (run, epochs) in enumerate(epochs_by_run.items()):
        if column in epochs:
            fig.add_scatter(x=epochs["epoch"], y=_values(epochs, column, scale), mode="lines+markers", name=run,
                            line=dict(color=run_colour(position)))
    unit = f"{label} (%)" if scale == 100 else label
    _whole_epochs(fig, *epochs_by_run.values())
    return axes_layout(fig, label[:1].upper() + label[1:] + " per epoch", "epoch", unit)



def live_curves(epochs: pd.DataFrame, steps: pd.DataFrame, metric: str, total_steps: int | None,
                steps_per_epoch: int | None, num_classes: int | None = None) -> go.Figure:
    """A live run against optimizer steps, on axes fixed before the first point arrives, so the
    curves grow into them instead of the axes rescaling under them: steps from 0 to the planned
    total, accuracy from 0 to 100 %, and an empty loss chart from 0 to a little above the loss of
    a uniform guess (ln of the class count), where training starts. Every line is named."""
    fig = go.Figure()
    if metric == "loss" and len(steps):
        fig.add_scatter(x=steps["step"], y=_values(steps, "loss"), mode="lines",
                        name="train loss (each logged step)", line=dict(color=run_colour(0), width=1), opacity=0.4)
    scale = 100.0 if metric == "acc" else 1.0
    if len(epochs) and steps_per_epoch:
        at = epochs["epoch"] * steps_per_epoch
        for split, dash, colour in (("train", "dot", 0), ("test", "solid", 1)):
            column = f"{split}_{metric}"
            if column in epochs:
                fig.add_scatter(x=at, y=_values(epochs, column, scale), mode="lines+markers",
                                name=f"{split} {'accuracy' if metric == 'acc' else 'loss'} (end of epoch)",
                                line=dict(color=run_colour(colour), dash=dash))
    if total_steps:
        fig.update_xaxes(range=[0, total_steps], autorange=False)
    else:  # the plan is unknown (no dataset size or batch recorded): the axis grows with the run
        fig.update_xaxes(rangemode="nonnegative")
    if metric == "acc":
        fig.update_yaxes(range=[0, 100], autorange=False)
    elif not any(np.isfinite(np.asarray(trace.y, float)).any() for trace in fig.data):
        fig.update_yaxes(range=[0, round(1.2 * math.log(max(num_classes or 10, 2)), 1)], autorange=False)
    else:
        fig.update_yaxes(rangemode="nonnegative")
    label = "accuracy (%)" if metric == "acc" else "cross-entropy loss"
    return axes_layout(fig, f"{'Accuracy' if metric == 'acc' else 'Loss'} so far", "optimizer step", label,
                   showlegend=True)
