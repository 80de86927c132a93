"""Runs still training, refreshed on their own: epoch progress and the curves so far.
Only files that changed are re-read (the caches key on each file's mtime and size)."""

import pandas as pd
import streamlit as st

from dashboard import charts, data, widgets

st.title("Live")
controls = st.columns([1, 3])
auto = controls[0].toggle("Refresh automatically", value=True, key="live_auto")
every = controls[1].select_slider("Every (seconds)", (2, 5, 10, 30), value=5, key="live_every", disabled=not auto)


@st.fragment(run_every=every if auto else None)
def live_view() -> None:
    table = data.runs_table()
    running = table[table["status"] == "running"]
    if running.empty:
        st.info("No run is training now. Start one with `make demo` (or `python -m engine train`) and it "
                "appears here within a refresh.")
        running = table.head(1)  # the newest run, so the page still shows something useful
    for row in running.itertuples():
        run = data.load_run(row.id)
        if run is None:
            continue
        st.subheader(f"{run.name} · {run.status}")
        widgets.show_warnings(run.id, run.warnings)
        planned = int(run.meta.get("epochs_planned") or 0) or 1
        steps = data.steps(run.id)
        per_epoch = run.epochs[0].get("step") if run.epochs else None
        fraction = min(len(run.epochs) / planned, 1.0)
        if per_epoch and not steps.empty:  # count the steps of the epoch under way too
            fraction = min(float(steps["step"].iloc[-1]) / (per_epoch * planned), 1.0)
        st.progress(fraction, text=f"epoch {len(run.epochs)} of {planned} done ({fraction:.0%} of all steps)")
        if run.epochs:
            last = run.epochs[-1]
            figures = st.columns(4)
            figures[0].metric("Test accuracy", f"{last.get('test_acc', 0):.2%}")
            figures[1].metric("Train loss", f"{last.get('train_loss', 0):.4f}")
            figures[2].metric("Seconds per epoch", f"{last.get('seconds', 0):.1f}")
            figures[3].metric("Images per second", f"{last.get('images_per_s', 0):.0f}")
        epochs = data.epochs(run)
        left, right = st.columns(2)
        if not epochs.empty:
            left.plotly_chart(charts.training_curves(epochs, "acc"), key=f"live_acc_{run.id}")
        if not steps.empty or not epochs.empty:
            right.plotly_chart(charts.training_curves(epochs if not epochs.empty else pd.DataFrame(
                {"epoch": []}), "loss", steps), key=f"live_loss_{run.id}")
    st.caption(f"Checked {pd.Timestamp.now():%H:%M:%S}.")


live_view()
