"""One run in full: key figures, then one tab at a time (dashboard/section_tabs.py): curves, LR
schedule and range test; per-class accuracy and a confusion matrix whose cells open the
misclassification gallery; calibration; config, model and training samples."""

import pandas as pd
import streamlit as st

from dashboard import calibration_view, charts, data, dynamics_data, metrics, section_tabs, widgets

run = widgets.shown_run()

st.title(f"Run {data.md(data.run_labels().get(run.id, run.name))}")
st.caption(f"`{run.id}` · {run.status} · dataset {run.dataset_name or '?'} · created {run.created or '?'} · "
           f"{run.device_name or 'device unknown'}")
if run.status in ("failed", "interrupted"):
    st.error(f"The run {run.status}: {run.error or 'no reason recorded'}")
widgets.show_warnings(run.id, run.warnings)

# ---------------------------------------------------------------- key figures
best_acc, best_epoch = run.best_epoch()
final_acc = run.epochs[-1].get("test_acc") if run.epochs else None
reached = metrics.first_epoch_reaching(run.epochs, 0.85)
figures = st.columns(6)
figures[0].metric("Parameters", metrics.number_text(run.total_params, ",.0f"))
figures[1].metric("Best test accuracy", metrics.number_text(best_acc, ".2%"),
                  help=f"epoch {best_epoch}" if best_epoch else None)
figures[2].metric("Final test accuracy", metrics.number_text(final_acc, ".2%"))
figures[3].metric("First epoch at 85%", reached or metrics.DASH, help=None if reached else "not reached yet")
figures[4].metric("Max LR", metrics.number_text(run.used_lr, ".3g"))
figures[5].metric("Epochs", f"{len(run.epochs)} / {run.epochs_planned or '?'}")


def curves() -> None:
    epochs, steps = data.epochs(run), data.steps(run.id)
    if epochs.empty:
        st.info("No epoch has finished yet.")
    else:
        left, right = st.columns(2)
        left.plotly_chart(charts.training_curves(epochs, "acc"), config=charts.CONFIG, key="acc_curve")
        right.plotly_chart(charts.training_curves(epochs, "loss", steps), config=charts.CONFIG, key="loss_curve")
    left, right = st.columns(2)
    if not steps.empty:
        left.plotly_chart(charts.lr_schedule(steps), config=charts.CONFIG, key="lr_schedule")
    if run.lr_finder:
        right.plotly_chart(charts.lr_finder_curve(run.lr_finder), config=charts.CONFIG, key="lr_finder")
    else:
        right.info("No LR range test recorded: a fixed max LR was given with --lr, or the test has not finished.")


def predictions() -> None:
    """Per-class accuracy and the confusion matrix of the test-set predictions chosen."""
    tag = widgets.prediction_source(run, key="run_dump")
    dump, problems = dynamics_data.predictions_from(run.id, tag) if tag else (None, [])
    if tag and dump is None:
        st.warning(f"The {dynamics_data.source_label(tag)} predictions could not be read: {'; '.join(problems)}.",
                   icon=":material/warning:")
    if dump is None:
        return
    names = widgets.class_names(run, dump)
    n = len(names)
    sources = dynamics_data.prediction_sources(run)
    per_class = metrics.per_class_accuracy(dump["label"], dump["pred"], n)
    st.plotly_chart(charts.per_class_accuracy(pd.DataFrame({run.name: per_class}, index=names)),
                    config=charts.CONFIG, key="per_class")

    normalised = st.toggle("Row-normalised (fraction of each true class)", key="cm_normalised")
    counts = metrics.confusion_matrix(dump["label"], dump["pred"], n)
    matrix = metrics.row_normalised(counts) if normalised else counts
    figure = charts.confusion_grid(matrix * 100 if normalised else matrix, names,
                                   f"Confusion matrix, {dynamics_data.source_label(tag)} (click a cell for its images)",
                                   "% of the true class" if normalised else "images", percent=normalised)
    event = st.plotly_chart(figure, config=charts.CONFIG, key="confusion", on_select="rerun", selection_mode="points",
                            width="content")
    points = event.selection.points if event else []
    if points:  # the browser sends customdata as {"0": .., "1": ..}: read the cell's class labels instead
        cell = points[0]
        if cell.get("y") in names and cell.get("x") in names:
            widgets.open_gallery(names.index(cell["y"]), names.index(cell["x"]), tag, names, sources)

    with st.form("cell_picker", border=False):
        cols = st.columns([2, 2, 1])
        true = cols[0].selectbox("True class", range(n), format_func=names.__getitem__)
        pred = cols[1].selectbox("Predicted class", range(n), index=min(1, n - 1), format_func=names.__getitem__)
        if cols[2].form_submit_button("Show these images"):
            widgets.open_gallery(true, pred, tag, names, sources)


def config_and_model() -> None:
    left, right = st.columns(2)
    left.subheader("Config")
    left.dataframe(data.config_table(run), height=400)
    right.subheader("Model summary")
    right.container(height=400).text(run.model_summary_text() or "No model summary recorded.")

    names = widgets.class_names(run)
    samples = data.train_samples(run.id)
    if samples is not None and len(samples["images"]):
        st.subheader("Training samples")
        shown = samples["images"][:16]
        labels = [names[int(y)] if int(y) < len(names) else str(y) for y in samples["labels"][:16]]
        widgets.image_grid([data.to_png(image, 96) for image in shown], labels, columns=8, width=96)


section_tabs.RUN.draw({
    "Curves": curves,
    "Predictions": predictions,
    # can the confidence be trusted
    "Calibration": lambda: calibration_view.calibration_section([run.id], key_prefix="run_calibration", heading=False),
    "Config and model": config_and_model,
})
