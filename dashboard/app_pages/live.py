"""Runs still training, refreshed on their own: the range test, progress in steps, and the
curves so far on a fixed step axis. Only files that changed are re-read (dashboard/data.py)."""

import pandas as pd
import streamlit as st

from dashboard import charts, data, metrics, widgets

st.title("Live")
controls = st.columns([1, 3])
auto = controls[0].toggle("Refresh automatically", value=True, key="live_auto")
every = controls[1].select_slider("Every (seconds)", (1, 2, 5, 10, 30), value=2, key="live_every",
                                  disabled=not auto)


def show_run(run_id: str) -> None:
    run = data.load_run(run_id)
    if run is None:
        return
    st.subheader(f"{data.md(data.run_labels().get(run.id, run.name))} · {run.status}")
    widgets.show_warnings(run.id, run.warnings)
    steps = data.steps(run.id)
    per_epoch = metrics.steps_per_epoch(run)
    total = per_epoch * run.epochs_planned if per_epoch and run.epochs_planned else None
    done = int(steps["step"].iloc[-1]) if len(steps) else None
    config = run.config or {}
    # The note and the progress bar keep their places through every phase, so a refresh updates the
    # bar in place: a layout that shifted left the range test's bar beside training's on a slow page.
    note = st.empty()
    if run.status == "running" and not run.lr_finder and config.get("lr") is None and not done and not run.epochs:
        show_range_test(run.id, config, note)
    else:
        fraction, text = metrics.live_progress(run.epochs, done, per_epoch, run.epochs_planned)
        st.progress(fraction, text=text)
    if run.epochs:
        last = run.epochs[-1]
        figures = st.columns(4)
        figures[0].metric("Test accuracy", metrics.number_text(last.get("test_acc"), ".2%"))
        figures[1].metric("Train loss", metrics.number_text(last.get("train_loss"), ".4f"))
        figures[2].metric("Seconds per epoch", metrics.number_text(last.get("seconds"), ".1f"))
        figures[3].metric("Images per second", metrics.number_text(last.get("images_per_s"), ".0f"))
    epochs = data.epochs(run)
    left, right = st.columns(2)
    for where, kind in ((left, "acc"), (right, "loss")):
        where.plotly_chart(charts.live_curves(epochs, steps, kind, total, per_epoch, run.num_classes),
                           config=charts.CONFIG, key=f"live_{kind}_{run.id}")


def show_range_test(run_id: str, config: dict, note) -> None:
    """The LR range test before training: its progress in steps and the loss-vs-LR curve so far
    (the steps file is read only while the test runs; lr_finder.json is its result)."""
    iters, start, end = (config.get(k) for k in ("lr_finder_iters", "lr_finder_start", "lr_finder_end"))
    note.info(f"LR range test under way: up to {iters or '?'} steps with the learning rate rising from "
            f"{start or '?'} to {end or '?'}; training starts at the LR it picks.", icon=":material/speed:")
    rows = data.lr_finder_steps(run_id)
    step = int(rows["step"].iloc[-1]) if len(rows) else 0
    fraction = min(step / iters, 1.0) if iters else 0.0
    st.progress(fraction, text=f"LR range test: step {step} of {iters or '?'} ({fraction:.0%})")
    if len(rows):
        st.plotly_chart(charts.lr_finder_progress(rows, start, end), config=charts.CONFIG,
                        key=f"live_lr_finder_{run_id}")


@st.fragment(run_every=every if auto else None)
def live_view() -> None:
    table = data.runs_table()
    running = table[table["status"] == "running"]
    if running.empty:
        st.info("No run is training now. Start one with `make demo` and it appears here within a refresh.")
        running = table.head(1)  # the newest run, so the page still shows something useful
    for run_id in running["id"]:
        show_run(run_id)
    st.caption(f"Checked {pd.Timestamp.now():%H:%M:%S}.")


live_view()
