"""Grad-CAM for the images picked in the gallery (or any test index), computed on demand from
the run's checkpoint: the image and its class-activation overlay side by side. Each image's
prediction is the run's recorded one for that checkpoint, as in the gallery and on Compare."""

import streamlit as st

from dashboard import data, metrics, widgets

MAX_IMAGES = 32

run = widgets.shown_run()
st.title(f"Grad-CAM · {data.md(data.run_labels().get(run.id, run.name))}")
widgets.show_warnings(run.id, run.warnings)

tags = run.checkpoint_tags()
if not tags:
    st.warning("This run has no checkpoint, so Grad-CAM cannot be computed. Checkpoints are written after "
               "the best and the last epoch; a run stopped before its first epoch ended has none.",
               icon=":material/warning:")
    st.stop()

METHODS, LAYERS, DEFAULT_LAYER, CLASS_AGNOSTIC = data.cam_choices()
cols = st.columns([2, 2, 2, 2, 2])
tag = cols[0].selectbox("Checkpoint", tags, key="cam_tag", format_func=data.TAG_LABELS.get)
method = cols[1].selectbox("Method", list(METHODS), key="cam_method")
layer = cols[2].selectbox("Target layer", LAYERS, index=LAYERS.index(DEFAULT_LAYER), key="cam_layer")
agnostic = method in CLASS_AGNOSTIC
target_mode = cols[3].selectbox("Explain the class", ("predicted", "true", "chosen"), key="cam_target",
                                disabled=agnostic, help=f"{method} maps the layer's main component and uses no class."
                                if agnostic else "By default the class the run recorded as its prediction.")
opacity = cols[4].slider("Overlay opacity", 0.0, 1.0, 0.5, 0.05, key="cam_opacity")

dump, _ = data.predictions(run.id, tag)
names = widgets.class_names(run, dump)
chosen_class = None
if target_mode == "chosen" and not agnostic:
    chosen_class = st.selectbox("Class", range(len(names)), key="cam_class", format_func=names.__getitem__)
if target_mode == "true" and dump is None:
    st.warning("The true classes come from the prediction dump, which this checkpoint lacks; "
               "explaining the predicted class instead.")
    target_mode = "predicted"
tta = bool((run.config or {}).get("tta_flip"))
st.caption(f"Predictions are the run's recorded ones for the {data.TAG_LABELS[tag]} checkpoint, as the gallery "
           "and Compare show them."
           + (" This run used flip test-time augmentation: a prediction averages the image and its mirror, "
              "while a map is computed on the unflipped image alone." if tta else ""))

default = ", ".join(str(i) for i in widgets.cam_selection(run.id))
text = st.text_input("Test indices (comma-separated)", value=default, key=f"cam_indices_{run.id}",
                     help="Filled from the images ticked in the Misclassifications gallery; any test index works.")
try:
    indices = list(dict.fromkeys(int(part) for part in text.replace(" ", ",").split(",") if part.strip()))
except ValueError:
    st.error("Test indices must be whole numbers separated by commas, e.g. `3, 17, 42`.")
    st.stop()
if not indices:
    st.info("Tick images in the Misclassifications gallery, or type test indices above.")
    st.stop()
count = run.num_test_images() or 0
outside = [i for i in indices if not 0 <= i < count]
if outside:
    st.error(f"Test indices run from 0 to {count - 1} in this run; "
             f"{', '.join(map(str, outside[:5]))}{' …' if len(outside) > 5 else ''} "
             f"{'is' if len(outside) == 1 else 'are'} outside that range.")
    st.stop()
if len(indices) > MAX_IMAGES:
    st.warning(f"Showing the first {MAX_IMAGES} of {len(indices)} images.")
    indices = indices[:MAX_IMAGES]
images = data.test_images(run.id, tuple(indices))
if images is None:
    st.error("Some of these test indices do not exist in this run, or its test images are unreadable.")
    st.stop()

request = (run.id, tag, tuple(indices), method, layer, target_mode, chosen_class)
if st.button("Compute Grad-CAM", type="primary", key="cam_go"):
    st.session_state["cam_request"] = request
if st.session_state.get("cam_request") != request:
    st.caption("Press the button to compute the maps for these settings (each map is computed once, then cached).")
    st.stop()

try:
    with st.spinner("Loading the model (the first time takes a few seconds)…"):
        store = data.cam_store(run.id, tag)
except ValueError as exc:  # CheckpointError: a damaged checkpoint or one of another width, said in a line
    st.error(f"Grad-CAM cannot use this checkpoint: {exc}", icon=":material/error:")
    st.stop()
if store is None:
    st.error("This run lacks the checkpoint or the dataset statistics Grad-CAM needs.")
    st.stop()
with st.spinner(f"Computing {len(indices)} Grad-CAM maps…"):
    recorded = metrics.recorded_predictions(dump, indices)
    unrecorded = [i for i in indices if i not in recorded]
    if unrecorded:  # no readable dump for this checkpoint: predict the way the run evaluates
        at = [indices.index(i) for i in unrecorded]
        probs = store.predict(images[at])
        for i, p in zip(unrecorded, probs):
            recorded[i] = {"label": None, "pred": int(p.argmax()), "confidence": float(p.max())}
    shown = [recorded[i] for i in indices]
    wanted = {"predicted": [p["pred"] for p in shown], "true": [p["label"] for p in shown],
              "chosen": [chosen_class] * len(indices)}[target_mode]
    targets = [int(p["pred"] if t is None else t) for t, p in zip(wanted, shown)]  # no label: the prediction
    cams = store.cams(images, indices, method, layer, targets)
if unrecorded:
    st.warning(f"The {data.TAG_LABELS[tag]} checkpoint's recorded predictions cannot be read for "
               f"{len(unrecorded)} of these images; their predictions are computed now from the checkpoint, "
               "the way the run evaluates.", icon=":material/warning:")

per_row = 3
for start in range(0, len(indices), per_row):
    cells = st.columns(per_row * 2)
    for k in range(start, min(start + per_row, len(indices))):
        left, right = cells[2 * (k - start)], cells[2 * (k - start) + 1]
        p = shown[k]
        truth = "" if p["label"] is None else f"true {names[p['label']]}, "
        left.image(data.to_png(images[k]), caption=f"#{indices[k]}: {truth}predicted {names[p['pred']]} "
                   f"({metrics.percent(p['confidence'])}{'' if p['label'] is not None else ', computed now'})",
                   output_format="PNG")
        explains = " (uses no class)" if agnostic else f", class {names[targets[k]]}"
        right.image(data.to_png(data.overlay(images[k], cams[k], opacity)), caption=f"{method}, {layer}{explains}",
                    output_format="PNG")
