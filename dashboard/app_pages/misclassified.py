"""The test images a run got wrong: filter by true and predicted class and confidence, sort by
loss or confidence, page through, enlarge one, and pick images for Grad-CAM."""

import math

import numpy as np
import streamlit as st

from dashboard import charts, data, dynamics_data, metrics, widgets

run = widgets.shown_run(before_stop=widgets.write_url)
st.title(f"Misclassifications · {data.md(data.run_labels().get(run.id, run.name))}")

# The filters live in the widgets and in the URL. Parameters the URL brings (a link, a reload, the
# back button, a confusion-matrix click) set the widgets; a filter absent from them is at its default.
tags = dynamics_data.prediction_sources(run)
from_url = widgets.new_url_params(metrics.GALLERY_PARAMS)
if from_url is not None and tags:
    widgets.choose_prediction_source("mis_dump", metrics.gallery_filters(from_url, [], tags)[0].get("dump", tags[0]))

tag = widgets.prediction_source(run, key="mis_dump")
dump, warnings = dynamics_data.predictions_from(run.id, tag) if tag else (None, [])
widgets.show_warnings(run.id, warnings)
if dump is None:
    widgets.write_url()
    st.stop()
names = widgets.class_names(run, dump)
classes = list(range(len(names)))
if from_url is not None:
    found, problems = metrics.gallery_filters(from_url, names, tags)
    st.session_state.update(mis_true=found.get("true", []), mis_pred=found.get("pred", []),
                            mis_conf=found.get("conf", (0.0, 1.0)),
                            mis_sort=found.get("sort", next(iter(metrics.SORTS))),
                            mis_per_page=found.get("per_page", metrics.DEFAULT_PER_PAGE))
    if problems:
        st.warning("Not used from the link: " + "; ".join(problems) + ".", icon=":material/warning:")

cols = st.columns([3, 3, 2.5, 2.5, 1])
true = cols[0].multiselect("True class", classes, key="mis_true", format_func=names.__getitem__,
                           persist_state="session", placeholder="any")
pred = cols[1].multiselect("Predicted class", classes, key="mis_pred", format_func=names.__getitem__,
                           persist_state="session", placeholder="any")
confidence = cols[2].slider("Confidence", 0.0, 1.0, (0.0, 1.0), 0.01, key="mis_conf", persist_state="session")
sort = cols[3].selectbox("Sort by", list(metrics.SORTS), key="mis_sort", persist_state="session")
per_page = cols[4].selectbox("Per page", metrics.PER_PAGE, index=metrics.PER_PAGE.index(metrics.DEFAULT_PER_PAGE),
                             key="mis_per_page", persist_state="session")
widgets.write_url(widgets.gallery_params(true, pred, confidence, tag, names, tags))

rows = metrics.misclassified(dump, true, pred, confidence, sort)
wrong = int((dump["label"] != dump["pred"]).sum())
count_col, note_col, link_col = st.columns([1, 3, 2])
count_col.metric("Matching images", len(rows), help=f"{wrong} of {len(dump['label'])} test images are wrong")
note_col.caption(f"{wrong} of {len(dump['label'])} test images are misclassified "
                 f"({wrong / max(len(dump['label']), 1):.1%}): predictions of the {dynamics_data.source_label(tag)}.")
picked = set(widgets.cam_selection(run.id))
with link_col:
    if picked:
        widgets.page_link("app_pages/grad_cam.py", f"Explain the {len(picked)} ticked image(s) with Grad-CAM",
                          icon=":material/blur_on:")
    else:
        st.caption("Tick images below to explain them with Grad-CAM.")
if not len(rows):
    st.info("No misclassified image matches these filters.")
    st.stop()

pages = math.ceil(len(rows) / per_page)
page = st.pagination(pages, key=f"mis_page_{pages}") if pages > 1 else 1
shown = rows[(page - 1) * per_page: page * per_page]
indices = tuple(int(i) for i in dump["index"][shown])
pngs = data.test_pngs(run.id, indices)
if pngs is None:
    st.warning("This run's test images are missing or unreadable, so only the numbers are shown.")


@st.dialog("Test image", width="large")
def enlarge(row: int) -> None:
    index, label, guess = int(dump["index"][row]), int(dump["label"][row]), int(dump["pred"][row])
    left, right = st.columns([1, 2])
    images = data.test_pngs(run.id, (index,), size=256)
    if images:
        left.image(images[0], output_format="PNG", caption=f"test image #{index}")
    left.write(f"true **{names[label]}**, predicted **{names[guess]}** ({metrics.percent(dump['confidence'][row])}), "
               f"loss {dump['loss'][row]:.3f}")
    if "probs" in dump:
        right.plotly_chart(charts.probability_bars(dump["probs"][row], names, label, guess), config=charts.CONFIG,
                           key=f"probs_{index}")
    else:
        right.caption(f"At {dynamics_data.source_label(tag)} the run recorded two probabilities per test image: the "
                      f"predicted class's and the true class's ({metrics.percent(np.exp(-dump['loss'][row]))}). "
                      "The final and best predictions hold all of them.")


columns = 6
for start in range(0, len(shown), columns):
    cells = st.columns(columns)
    for offset, (cell, row) in enumerate(zip(cells, shown[start:start + columns])):
        index = int(dump["index"][row])
        label, guess = names[int(dump["label"][row])], names[int(dump["pred"][row])]
        caption = (f"#{index}: {label} → {guess}  \n{metrics.percent(dump['confidence'][row])} sure · "
                   f"loss {dump['loss'][row]:.2f}")
        if pngs is not None:
            cell.image(pngs[start + offset], width=data.IMAGE_PX, output_format="PNG")
        cell.caption(caption)
        cell.checkbox("Grad-CAM", value=index in picked, key=f"pick_{run.id}_{index}",
                      on_change=widgets.toggle_cam_selection, args=(run.id, index))
        if cell.button("", key=f"zoom_{index}", icon=":material/zoom_in:", help="Enlarge with probabilities"):
            enlarge(int(row))
