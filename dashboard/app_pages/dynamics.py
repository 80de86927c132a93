"""What every training image did over training: the data map (confidence vs variability), the
images of a region, a preset or a selection with their true-class probability over epochs, the
likely-mislabelled list (the final model's doubt in the given label, else AUM) to download, and the
forgotten images."""

import math
from functools import partial

import numpy as np
import streamlit as st

from dashboard import charts, data, dynamics_charts, dynamics_data, dynamics_views, metrics, widgets
from engine import dynamics_scores

PER_PAGE = 24
COLUMNS = 6

run = widgets.shown_run()
st.title(f"Training dynamics · {data.md(data.run_labels().get(run.id, run.name))}")

found = dynamics_data.dynamics(run.id)
if found is None:
    st.info("This run recorded no training dynamics: it was trained with `--no-dynamics`, or before they were "
            "recorded. New runs record them by default.")
    st.stop()
widgets.show_warnings(run.id, found.problems)
scores = dynamics_data.scores(run.id)
if scores is None:
    st.info("No epoch has been recorded yet: the first one appears when the first epoch ends.")
    st.stop()
names = widgets.class_names(run)
labels = found.train_label


def class_name(index: int) -> str:
    return names[index] if index < len(names) else str(index)


given = [class_name(int(c)) for c in labels] if labels is not None else ["?"] * len(scores)
figures = st.columns(5)
figures[0].metric("Training images", f"{len(scores):,}")
figures[1].metric("Epochs recorded", len(found.epochs))
figures[2].metric("Negative AUM", f"{int(np.sum(scores.aum < 0)):,}",
                  help="Images whose given label's logit stayed, on average, below another class's: "
                       "the first place to look for wrong labels")
figures[3].metric("Forgotten at least once", f"{int(np.sum(scores.forgetting > 0)):,}",
                  help="Right at one epoch, wrong at a later one (Toneva et al., 2019)")
disagreeing = (f"{int(np.sum(found.final_train_pred != labels)):,}"
               if found.final_train_pred is not None and labels is not None else metrics.DASH)
figures[4].metric("Final model disagrees", disagreeing,
                  help="Training images whose given label the final model does not predict (unaugmented, as it "
                       "evaluates the test set); a dash until the run's last epoch is recorded")
st.caption("Recorded from the training forward pass itself, under augmentation and in training mode, so "
           "confidences run lower than the test set's. Confidence and variability: mean and spread of the "
           "probability of the given label over epochs (Swayamdipta et al., 2020); AUM: the given label's "
           "logit minus the largest other, averaged (Pleiss et al., 2020).")

# ---------------------------------------------------------------- the data map
drawn = np.flatnonzero(~np.isnan(scores.confidence))
map_col, view_col = st.columns([3, 2])
event = map_col.plotly_chart(
    dynamics_charts.data_map(drawn, scores.variability[drawn], scores.confidence[drawn], scores.correctness[drawn],
                             [given[i] for i in drawn]),
    config=dynamics_charts.MAP_CONFIG, key=f"data_map_{run.id}", on_select="rerun", selection_mode=("box", "lasso"))
picked = sorted({int(drawn[p["point_index"]]) for p in (event.selection.points if event else [])
                 if isinstance(p.get("point_index"), int) and 0 <= p["point_index"] < len(drawn)})
if picked and picked != st.session_state.get("dyn_picked"):  # a new selection shows its images
    st.session_state["dyn_view"] = "selected on the map"
st.session_state["dyn_picked"] = picked

with view_col:
    view = st.radio("Show", list(dynamics_views.VIEWS), key="dyn_view")
    order = dynamics_views.view_order(view, scores, picked)
    ranked = (f" Ranked by {dynamics_scores.ranking_score(scores)}."
              if view in ("likely mislabelled", "selected on the map") else "")
    st.caption(f"{len(order):,} images: {dynamics_views.VIEWS[view]}.{ranked}")
    if view == "selected on the map" and not picked:
        st.info("Drag a box or a lasso on the data map to pick images.")
    st.download_button("Download the likely-mislabelled list (CSV)", partial(dynamics_data.mislabelled_csv, run.id),
                       on_click="ignore",  # built when clicked, and no rerun
                       file_name=f"{run.id}-likely-mislabelled.csv", mime="text/csv", icon=":material/download:",
                       help="Every training image, the most doubtful label first: index, given label, the final "
                            "model's prediction and its probability of the given label, AUM, confidence, "
                            "variability, correctness, forgetting count; for relabelling")

# ---------------------------------------------------------------- the images of the view
if not len(order):
    st.stop()
pages = math.ceil(len(order) / PER_PAGE)
page = st.pagination(pages, key=f"dyn_page_{view}_{pages}") if pages > 1 else 1
shown = tuple(int(i) for i in order[(page - 1) * PER_PAGE: page * PER_PAGE])
pngs, why = dynamics_data.train_pngs(run.id, shown)
if pngs is None:
    st.info(f"Training images cannot be shown ({why}); their numbers are below.")
verdicts = dynamics_data.final_verdicts(run.id, shown)
for start in range(0, len(shown), COLUMNS):
    cells = st.columns(COLUMNS)
    for offset, (cell, index) in enumerate(zip(cells, shown[start:start + COLUMNS])):
        if pngs is not None:
            cell.image(pngs[start + offset], width=data.IMAGE_PX, output_format="PNG")
        believed = ""
        if verdicts is not None:
            guess, sure = verdicts[start + offset]
            believed = f"  \nfinal model: **{class_name(guess)}** {metrics.percent(sure)}"
            if scores.final_prob is not None and labels is not None and guess != labels[index]:
                believed += f", given label {metrics.percent(scores.final_prob[index])}"
        forgotten = f" · forgotten {scores.forgetting[index]}×" if scores.forgetting[index] else ""
        cell.caption(f"#{index} given **{given[index]}**{believed}  \n"
                     f"AUM {metrics.number_text(scores.aum[index], '.2f')} · "
                     f"conf. {metrics.percent(scores.confidence[index])}{forgotten}")
rows = found.train_prob[:, list(shown)]
st.plotly_chart(dynamics_charts.probability_over_epochs(found.epochs, rows, [f"#{i} {given[i]}" for i in shown]),
                config=charts.CONFIG, key="dyn_curves")
