"""Two or more runs side by side, one tab at a time (dashboard/section_tabs.py): curves; key figures
and config differences; seed groups; calibration; and, from the final model, the best epoch or an
epoch all of them recorded, the predictions: per-class accuracy, both runs' confusion matrices and
their difference, and the images one run got right and the other wrong."""

import math

import numpy as np
import pandas as pd
import streamlit as st

from dashboard import calibration_view, charts, data, dynamics_data, metrics, section_tabs, seed_view, widgets

st.title("Compare runs")
ids = widgets.selected_runs()
if len(ids) < 2:
    st.info("Select two or more runs (in the sidebar or on the Runs page) to compare them.")
    st.stop()
loaded = {run_id: data.load_run(run_id) for run_id in ids}
runs = {run_id: run for run_id, run in loaded.items() if run is not None}
if len(runs) < 2:
    st.warning("Fewer than two of the selected runs can be read.")
    st.stop()
label = data.run_labels()
for run_id, run in runs.items():
    widgets.show_warnings(run_id, run.warnings)

# Runs on another dataset than the first selected run are set aside, not the whole page.
first_id, first = next(iter(runs.items()))
aside = [r for r, run in runs.items() if run.fingerprint != first.fingerprint]
if aside:
    st.warning("Set aside, since they were trained and tested on another dataset than "
               f"{data.md(label[first_id])} ({first.dataset_name or '?'}, fingerprint {first.fingerprint}): "
               + ", ".join(f"{data.md(label[r])} ({runs[r].dataset_name or '?'}, {runs[r].fingerprint})"
                           for r in aside),
               icon=":material/warning:")
    runs = {r: run for r, run in runs.items() if r not in aside}
if len(runs) < 2:
    st.info("Select at least two runs on the same dataset to compare them.")
    st.stop()

if len(runs) > len(charts.RUN_PALETTE):
    st.info(f"{len(runs)} runs: past {len(charts.RUN_PALETTE)} the run colours repeat; select fewer runs to tell "
            "every curve apart.")
short = widgets.short_labels({r: label[r] for r in runs})  # legend entries that fit beside each other


def curves() -> None:
    """Four curves, one colour per run."""
    epochs = {short[r]: data.epochs(run) for r, run in runs.items()}
    left, right = st.columns(2)
    for where, column, title in ((left, "test_acc", "test accuracy"), (right, "test_loss", "test loss"),
                                 (left, "train_acc", "train accuracy"), (right, "train_loss", "train loss")):
        where.plotly_chart(widgets.legend_below(charts.compare_curves(epochs, column, title), list(short.values()),
                                                600), config=charts.CONFIG, key=f"cmp_{column}")


def key_figures_and_config() -> None:
    st.subheader("Key figures")
    figures = metrics.key_figures({label[r]: run for r, run in runs.items()})
    reached = "first epoch at 85%"  # an epoch number or "not reached": one text column, not a mixed one
    figures[reached] = figures[reached].astype(str)
    st.dataframe(figures, key="key_figures",
                 column_config={"best test acc": st.column_config.NumberColumn(format="%.2f%%"),
                                "final test acc": st.column_config.NumberColumn(format="%.2f%%"),
                                "duration (s)": st.column_config.NumberColumn(format="%.0f")})

    st.subheader("Config differences")
    diff = metrics.config_diff({label[r]: data.config_with_used_lr(run) for r, run in runs.items()})
    if diff:
        st.dataframe(pd.DataFrame(diff).T.astype(str), key="config_diff")
    else:
        st.caption("The configs are identical.")


def predictions() -> None:
    """Per-class accuracy of every run; for two of them, A and B, their confusion matrices and the
    images one got right and the other wrong."""
    tag = widgets.common_prediction_source(list(runs), key="cmp_source")
    source = dynamics_data.source_label(tag)
    dumps = {}
    for run_id in runs:
        dump, _ = dynamics_data.predictions_from(run_id, tag)
        if dump is None:
            st.warning(f"{data.md(label[run_id])} has no readable {source} predictions; it is left out below.")
        else:
            dumps[run_id] = dump
    if not dumps:
        return
    names = widgets.class_names(next(iter(runs.values())), next(iter(dumps.values())))
    per_class = pd.DataFrame({short[r]: metrics.per_class_accuracy(d["label"], d["pred"], len(names))
                              for r, d in dumps.items()}, index=names)
    st.plotly_chart(widgets.legend_below(charts.per_class_accuracy(per_class), list(per_class.columns), 1200),
                    config=charts.CONFIG, key="cmp_per_class")
    if len(dumps) < 2:
        return

    options = list(dumps)
    pick_a, pick_b = st.columns(2)
    run_a = pick_a.selectbox("Run A", options, index=0, key="cmp_a", format_func=label.get)
    run_b = pick_b.selectbox("Run B", options, index=1, key="cmp_b", format_func=label.get)
    if run_a == run_b:
        st.info("Pick two different runs as A and B.")
        return
    dump_a, dump_b = dumps[run_a], dumps[run_b]

    # The difference first; then each run's own matrix, one under the other: a grid keeps its cells
    # square at its own size, which half a page's width cannot hold.
    matrix_a = metrics.confusion_matrix(dump_a["label"], dump_a["pred"], len(names))
    matrix_b = metrics.confusion_matrix(dump_b["label"], dump_b["pred"], len(names))
    title = f"Confusion matrix, B − A, {source}<br><sup>B = {label[run_b]}, A = {label[run_a]}</sup>"
    st.plotly_chart(charts.confusion_grid(matrix_b - matrix_a, names, title, "images, B − A", diverging=True),
                    config=charts.CONFIG, key="cmp_confusion", width="content")
    # Drawn only once opened (a rerun): two more grids would hold up the tab's first visit.
    own = st.expander("Run A's and run B's own confusion matrices", key="cmp_own_matrices", on_change="rerun")
    if own.open:
        for letter, run_id, matrix in (("A", run_a, matrix_a), ("B", run_b, matrix_b)):
            own.plotly_chart(charts.confusion_grid(matrix, names, f"Confusion matrix, {letter}, {source}<br>"
                                                   f"<sup>{label[run_id]}</sup>", "images"),
                             config=charts.CONFIG, key=f"cmp_confusion_{letter}", width="content")
    right_and_wrong(dump_a, dump_b, run_a, names)


def right_and_wrong(dump_a: dict, dump_b: dict, run_a: str, names: list[str]) -> None:
    """The images run A got right and run B wrong, or the other way round, a page at a time."""
    a_only, b_only = metrics.prediction_diff(dump_a, dump_b)
    counts = st.columns(2)
    counts[0].metric("A right, B wrong", len(a_only))
    counts[1].metric("B right, A wrong", len(b_only))
    direction = st.segmented_control("Show", ("A right, B wrong", "B right, A wrong"), default="A right, B wrong",
                                     key="cmp_direction", required=True)
    indices = a_only if direction == "A right, B wrong" else b_only
    if not len(indices):
        st.caption("No such images.")
        return
    per_page = 24
    pages = math.ceil(len(indices) / per_page)
    page = st.pagination(pages, key=f"cmp_page_{direction}_{pages}") if pages > 1 else 1
    shown = indices[(page - 1) * per_page: page * per_page]
    rows_a, rows_b = metrics.rows_for_indices(dump_a, shown), metrics.rows_for_indices(dump_b, shown)
    pngs = data.test_pngs(run_a, tuple(int(i) for i in shown))
    captions = [f"#{i}: true {names[dump_a['label'][ra]]} · A {names[dump_a['pred'][ra]]} "
                f"({metrics.percent(dump_a['confidence'][ra])}) · B {names[dump_b['pred'][rb]]} "
                f"({metrics.percent(dump_b['confidence'][rb])})"
                for i, ra, rb in zip(shown, rows_a, rows_b)]
    if pngs is None:
        st.dataframe(pd.DataFrame({"test image": shown, "prediction": captions}), hide_index=True)
    else:
        widgets.image_grid(pngs, captions, columns=6)
    st.caption(f"{len(np.asarray(indices))} images in all; {len(shown)} shown on this page.")


section_tabs.COMPARE.draw({
    "Curves": curves,
    "Key figures and config": key_figures_and_config,
    "Seed groups": lambda: seed_view.show(list(runs)),
    # can the confidence be trusted
    "Calibration": lambda: calibration_view.calibration_section(list(runs), key_prefix="cmp_calibration",
                                                                heading=False),
    "Predictions": predictions,
})
