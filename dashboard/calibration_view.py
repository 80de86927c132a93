"""Calibration, drawn: for the runs on a page (Compare's selection, or one run), a reliability
diagram (each confidence bin's accuracy against its mean confidence, beside the diagonal of perfect
calibration) and the expected calibration error of each run's final and best predictions. The
figures are engine/calibration.py's; this module only lays them out, and reads dumps only through
`data.predictions`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from dashboard import charts, data, metrics, widgets
from engine import calibration
from engine.calibration import Reliability

TITLE = "Reliability diagram"
PERFECT = "perfect calibration"
TAGS = tuple(data.TAG_LABELS)  # final, then best


def ece_text(ece: float | None) -> str:
    """An ECE as a percentage with one decimal ("3.4%"), a dash where there is none."""
    return metrics.number_text(ece, ".1%")


def reliability_figure(curves: Mapping[str, Reliability | None]) -> go.Figure:
    """One line with markers per run, accuracy against mean confidence per bin, in percent, over the
    dashed diagonal a calibrated run follows: below it the run is overconfident, above it
    underconfident. A run without a dump (None) draws nothing but keeps its place, so every run has
    its colour of the other charts."""
    fig = go.Figure()
    fig.add_scatter(x=[0, 100], y=[0, 100], mode="lines", name=PERFECT, hoverinfo="skip",
                    line=dict(color="#888888", dash="dash", width=1))
    for position, (name, bins) in enumerate(curves.items()):
        if bins is None or not len(bins.count):
            continue
        extra = np.stack([bins.low * 100, bins.high * 100, bins.count], axis=-1)
        fig.add_scatter(x=bins.confidence * 100, y=bins.accuracy * 100, mode="lines+markers", name=name,
                        line=dict(color=charts.run_colour(position)), marker=dict(size=8), customdata=extra,
                        hovertemplate="confidence %{customdata[0]:.1f}–%{customdata[1]:.1f}%: %{customdata[2]} "
                                      "images, mean confidence %{x:.1f}%, right %{y:.1f}%<extra>" + name + "</extra>")
    fig.update_xaxes(range=[0, 101], dtick=10)
    fig.update_yaxes(range=[0, 101], dtick=10)
    return charts.axes_layout(fig, TITLE, "mean confidence in the bin (%)", "accuracy in the bin (%)", height=420)


def ece_table(run_ids: Sequence[str], labels: Mapping[str, str],
              bins: Mapping[tuple[str, str], Reliability | None]) -> pd.DataFrame:
    """One row per run: the ECE of its final and its best predictions as text (a dash where the
    run has no readable dump)."""
    rows = {"run": [labels.get(r, r) for r in run_ids]}
    for tag in TAGS:
        rows[f"ECE, {data.TAG_LABELS[tag]}"] = [ece_text(None if bins[r, tag] is None else bins[r, tag].ece)
                                                for r in run_ids]
    return pd.DataFrame(rows)


def run_reliability(run_ids: Sequence[str]) -> dict[tuple[str, str], Reliability | None]:
    """{(run id, tag): its reliability bins, or None where the dump is missing or unreadable}."""
    found = {}
    for run_id in run_ids:
        for tag in TAGS:
            dump, _ = data.predictions(run_id, tag)
            found[run_id, tag] = None if dump is None else calibration.reliability(dump)
    return found


def calibration_section(run_ids: Sequence[str], key_prefix: str = "calibration", heading: bool = True) -> None:
    """The Calibration section for these runs (one or several): the reliability diagram of the
    final or best predictions, and every run's ECE of both. A run without dumps shows dashes.
    `heading=False` leaves the subheader to the caller (Compare draws the section in an expander)."""
    if heading:
        st.subheader("Calibration")
    run_ids = list(run_ids)
    labels = data.run_labels()
    bins = run_reliability(run_ids)
    left, right = st.columns([3, 2])
    tag = left.radio("Diagram of the predictions from", TAGS, horizontal=True, key=f"{key_prefix}_dump",
                     format_func=data.TAG_LABELS.get)
    short = widgets.short_labels({r: labels.get(r, r) for r in run_ids})
    curves = {short[r]: bins[r, tag] for r in run_ids}
    if any(b is not None and b.images for b in curves.values()):
        fig = widgets.legend_below(reliability_figure(curves), [PERFECT, *curves], 700)
        left.plotly_chart(fig, config=charts.CONFIG, key=f"{key_prefix}_diagram")
    else:
        left.info(f"No run here has readable {data.TAG_LABELS[tag]} predictions to draw.")
    missing = [labels.get(r, r) for r in run_ids if bins[r, tag] is None]
    if missing and len(missing) < len(run_ids):
        left.caption(f"Not drawn, no readable {data.TAG_LABELS[tag]} predictions: "
                     + ", ".join(data.md(m) for m in missing))
    unbinned = {labels.get(r, r): bins[r, tag].left_out for r in run_ids if bins[r, tag] and bins[r, tag].left_out}
    if unbinned:
        left.caption("Left out, confidence not a number: "
                     + ", ".join(f"{data.md(name)} ({n} images)" for name, n in unbinned.items()))
    right.dataframe(ece_table(run_ids, labels, bins), hide_index=True, key=f"{key_prefix}_ece")
    right.caption(f"Expected calibration error: how far confidence is from accuracy, averaged over "
                  f"{calibration.BINS} equal-width confidence bins weighted by their images (Guo et al. 2017). "
                  "0% is perfectly calibrated; a dash, no readable predictions.")
