"""The dashboard's pure parts, without Streamlit: metrics and selections, charts, Grad-CAM."""

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from dashboard import charts, metrics
from engine import runs
from engine.cam import LAYERS, METHODS, compute_cams, load_model, overlay
from engine.model import create_model


def dump_of(label, pred, confidence=None, loss=None, index=None):
    label, pred = np.asarray(label), np.asarray(pred)
    n = len(label)
    confidence = np.linspace(0.2, 0.9, n, dtype=np.float32) if confidence is None else np.asarray(confidence)
    loss = np.arange(n, dtype=np.float32)[::-1].copy() if loss is None else np.asarray(loss)
    probs = np.full((n, 3), 0.1, np.float32)
    return {"index": np.arange(n) if index is None else np.asarray(index), "label": label, "pred": pred,
            "confidence": confidence, "probs": probs, "loss": loss}


def test_confusion_matrix_counts_rows_true_columns_predicted():
    matrix = metrics.confusion_matrix(np.array([0, 0, 1, 2, 2]), np.array([0, 1, 1, 2, 0]), 3)
    assert matrix.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 1]]
    assert metrics.row_normalised(matrix)[0].tolist() == [0.5, 0.5, 0.0]
    assert metrics.row_normalised(np.zeros((2, 2), int)).tolist() == [[0, 0], [0, 0]]


def test_per_class_accuracy_is_recall_and_nan_for_absent_classes():
    result = metrics.per_class_accuracy(np.array([0, 0, 1]), np.array([0, 1, 1]), 3)
    assert result[:2].tolist() == [0.5, 1.0] and np.isnan(result[2])


def test_misclassified_filters_and_sorts():
    dump = dump_of(label=[0, 1, 2, 0, 1, 2], pred=[1, 1, 0, 2, 0, 2],
                   confidence=[0.9, 0.5, 0.3, 0.6, 0.95, 0.4], loss=[1.0, 0.1, 3.0, 2.0, 0.5, 0.2])
    assert metrics.misclassified(dump).tolist() == [2, 3, 0, 4]  # top losses first
    assert metrics.misclassified(dump, sort="test index").tolist() == [0, 2, 3, 4]
    assert metrics.misclassified(dump, sort="confidence, high first").tolist() == [4, 0, 3, 2]
    assert metrics.misclassified(dump, true_classes=[0]).tolist() == [3, 0]
    assert metrics.misclassified(dump, pred_classes=[0], sort="test index").tolist() == [2, 4]
    assert metrics.misclassified(dump, confidence=(0.5, 0.92), sort="test index").tolist() == [0, 3]
    assert metrics.misclassified(dump, true_classes=[1], pred_classes=[2]).tolist() == []


def test_prediction_diff_matches_on_test_index_in_any_order():
    a = dump_of(label=[0, 1, 2, 3], pred=[0, 1, 0, 0])  # right on 0, 1
    b = dump_of(label=[3, 2, 1, 0], pred=[3, 2, 0, 1], index=[3, 2, 1, 0])  # right on 3, 2
    a_only, b_only = metrics.prediction_diff(a, b)
    assert a_only.tolist() == [0, 1] and b_only.tolist() == [2, 3]
    assert metrics.rows_for_indices(b, np.array([0, 3])).tolist() == [3, 0]


def test_first_epoch_reaching():
    epochs = [{"epoch": 1, "test_acc": 0.5}, {"epoch": 2, "test_acc": 0.86}, {"epoch": 3, "test_acc": 0.86},
              {"epoch": 4, "test_acc": None}]
    assert metrics.first_epoch_reaching(epochs, 0.85) == 2
    assert metrics.first_epoch_reaching(epochs, 0.9) is None


def test_config_diff_keeps_only_fields_that_differ():
    diff = metrics.config_diff({"a": {"lr": 0.1, "seed": 1, "width": 64, "runs_dir": "x"},
                                "b": {"lr": 0.1, "seed": 2, "width": 64, "runs_dir": "y", "ema": 0.9}})
    assert diff == {"ema": {"a": "—", "b": 0.9}, "seed": {"a": 1, "b": 2}}
    assert metrics.config_diff({"a": {"x": 1}, "b": None}) == {"x": {"a": 1, "b": "—"}}


def test_steps_per_epoch_before_and_after_the_first_epoch(tiny_run):
    run = runs.load_run(tiny_run)
    per_epoch = run.epochs[0]["step"]
    assert metrics.steps_per_epoch(run) == per_epoch
    run.epochs = []  # as during epoch 1: from the config and the dataset alone
    assert metrics.steps_per_epoch(run) == per_epoch


def test_diverging_confusion_colours_mean_better_for_b_everywhere():
    difference = np.array([[2, -1], [3, -4]])  # B: 2 more right on class 0, 3 more mistakes 1 -> 0
    grid = charts.confusion_grid(difference, ["cat", "dog"], "B − A", "images, B − A", diverging=True).data[0]
    assert list(grid.marker.color) == [2, 1, -3, -4]
    assert "green = B better" in grid.marker.colorbar.title.text
    assert list(grid.text) == ["+2", "-1", "+3", "-4"]


def test_cell_numbers_contrast_with_their_cells():
    grid = charts.confusion_grid(np.array([[0, 100], [50, 3]]), ["cat", "dog"], "cm", "images").data[0]
    colours = list(grid.textfont.color)
    assert colours[0] == "black" and colours[1] == "white"  # on the palest and on the darkest cell


def test_per_class_accuracy_axis_is_zoomed_to_the_data():
    import pandas as pd

    figure = charts.per_class_accuracy(pd.DataFrame({"a": [0.97, 1.0], "b": [0.98, 0.99]}, index=["cat", "dog"]))
    low, high = figure.layout.yaxis.range
    assert 90 <= low <= 97 and 100 <= high <= 101


def test_charts_have_axis_titles_and_stable_class_colours():
    import pandas as pd

    epochs = pd.DataFrame({"epoch": [1, 2], "train_acc": [0.5, 0.6], "test_acc": [0.4, 0.55],
                           "train_loss": [1.0, 0.8], "test_loss": [1.1, 0.9]})
    steps = pd.DataFrame({"step": [1, 2], "loss": [1.2, 1.0], "lr": [0.01, 0.02], "epoch_position": [0.5, 1.0]})
    live = charts.live_curves(epochs, steps, "loss", total_steps=8, steps_per_epoch=4)
    assert list(live.layout.xaxis.range) == [0, 8] and all(trace.name for trace in live.data)
    finder = {"lr": [1e-5, 1e-3, 1e-1], "loss": [2.3, 2.0, 3.0], "smoothed_loss": [2.3, 2.1, 2.6],
              "suggested_lr": 1e-3, "suggestion_index": 1, "used_lr": 1e-3}
    figures = [charts.training_curves(epochs, "acc"), charts.training_curves(epochs, "loss", steps),
               charts.lr_schedule(steps), charts.lr_finder_curve(finder),
               charts.per_class_accuracy(pd.DataFrame({"run": [0.5, 0.7]}, index=["cat", "dog"])),
               charts.confusion_grid(np.eye(2), ["cat", "dog"], "cm", "images"),
               charts.probability_bars(np.array([0.3, 0.7]), ["cat", "dog"], 0, 1),
               charts.compare_curves({"a": epochs, "b": epochs}, "test_acc", "test accuracy")]
    for figure in figures:
        assert isinstance(figure, go.Figure)
        assert figure.layout.xaxis.title.text and figure.layout.yaxis.title.text is not None
    assert figures[3].layout.xaxis.type == "log"
    bars = figures[6].data[0].marker.color
    assert list(bars) == [charts.class_colour(0), charts.class_colour(1)]
    grid = figures[5].data[0]
    assert grid.marker.symbol == "square" and grid.customdata.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    curves = figures[7].data
    assert [c.line.color for c in curves] == [charts.run_colour(0), charts.run_colour(1)]


@pytest.mark.parametrize("method", list(METHODS))
def test_compute_cams_gives_one_unit_range_map_per_image(method):
    torch.manual_seed(0)
    model = create_model(10, 4).eval()
    images = np.random.default_rng(0).integers(0, 256, (3, 32, 32, 3), dtype=np.uint8)
    cams = compute_cams(model, images, [0.5] * 3, [0.25] * 3, method, "layer3", [0, 1, 2])
    assert cams.shape == (3, 32, 32) and cams.dtype == np.float32
    assert cams.min() >= 0 and cams.max() <= 1
    hooks = sum(len(m._forward_hooks) + len(m._backward_hooks) for m in model.modules())
    assert hooks == 0, "Grad-CAM left hooks on the shared model"


def test_cams_from_a_real_checkpoint_for_every_layer(tiny_run):
    run = runs.load_run(tiny_run)
    model = load_model(run, "final")
    images = np.asarray(run.test_images()[:4])
    for layer in LAYERS:
        cams = compute_cams(model, images, run.dataset["mean"], run.dataset["std"], "GradCAM", layer, None)
        assert cams.shape == (4, 32, 32)
    with pytest.raises(ValueError, match="unknown Grad-CAM method"):
        compute_cams(model, images, run.dataset["mean"], run.dataset["std"], "NoCAM")
    blended = overlay(images[0], cams[0], 0.5)
    assert blended.shape == (32, 32, 3) and blended.dtype == np.uint8
    assert np.abs(overlay(images[0], cams[0], 0.0).astype(int) - images[0]).max() <= 2  # opacity 0: the image
    assert np.abs(blended.astype(int) - images[0]).max() > 10  # opacity 0.5: the map shows


def test_a_checkpoint_of_another_width_is_refused_in_one_line(tiny_run, tmp_path):
    import json
    import shutil

    from engine.checkpoint import CheckpointError

    copy = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, copy)
    config = json.loads((copy / runs.CONFIG_JSON).read_text())
    (copy / runs.CONFIG_JSON).write_text(json.dumps({**config, "width": config["width"] * 2}))
    with pytest.raises(CheckpointError, match="does not fit a width-") as refused:
        load_model(runs.load_run(copy), "final")
    assert "\n" not in str(refused.value)


# ---------------------------------------------------------------- issue 18: one prediction, any value, axes


def test_a_value_a_run_does_not_hold_is_a_dash_never_nan_none_or_zero():
    for nothing in (None, float("nan"), float("inf"), float("-inf"), "0.9", True):
        assert metrics.finite(nothing) is None
        assert metrics.number_text(nothing, ".2%") == metrics.DASH
    assert metrics.finite(np.float32(0.5)) == 0.5 and metrics.finite(0) == 0.0
    assert metrics.number_text(0.12345, ".2%") == "12.35%" and metrics.number_text(11173962, ",.0f") == "11,173,962"
    assert metrics.percent(0.174) == "17%" and metrics.percent(None) == metrics.DASH


def test_recorded_predictions_are_the_dumps_rows_by_test_index():
    dump = dump_of(label=[0, 1, 2], pred=[0, 2, 2], confidence=[0.9, 0.4, 0.6], loss=[0.1, 2.0, 0.5],
                   index=[7, 3, 5])
    found = metrics.recorded_predictions(dump, [5, 3, 99])
    assert list(found) == [5, 3]  # in the order asked; an index the dump lacks is left out
    assert found[3] == {"label": 1, "pred": 2, "confidence": pytest.approx(0.4), "loss": 2.0, "right": False}
    assert found[5]["right"] and found[5]["confidence"] == pytest.approx(0.6)
    assert metrics.recorded_predictions(None, [1]) == {}


def test_live_progress_says_what_it_does_not_know():
    epochs = [{"epoch": 1, "step": 4}, {"epoch": 2}]
    assert metrics.live_progress(epochs, 6, 4, 4) == (6 / 16, "step 6 of 16 · epoch 2 of 4 done (38%)")
    fraction, text = metrics.live_progress(epochs, None, 4, None)  # no plan recorded, no steps file
    assert fraction == 0.0 and text.startswith("step 0 of ? · epoch 2 of ? done")
    assert metrics.live_progress(epochs, None, None, 4)[0] == 0.5


def test_curves_draw_null_nan_and_infinite_values_as_gaps():
    import pandas as pd

    epochs = pd.DataFrame({"epoch": [1, 2, 3], "train_acc": [0.5, None, 0.7], "test_acc": [None, None, None],
                           "train_loss": [1.0, float("inf"), np.nan], "test_loss": ["x", 0.9, 0.8]})
    for figure in (charts.training_curves(epochs, "acc"), charts.training_curves(epochs, "loss"),
                   charts.compare_curves({"a": epochs}, "test_acc", "test accuracy"),
                   charts.live_curves(epochs, epochs.assign(step=[1, 2, 3], loss=[None, 1.0, np.inf]), "loss", 9, 3),
                   charts.lr_schedule(pd.DataFrame({"step": [1, 2], "lr": [None, None]})),
                   charts.lr_finder_progress(pd.DataFrame({"lr": [1e-3, 1e-2], "loss": [None, np.nan]}), 1e-4, 1),
                   charts.training_curves(epochs, "loss", pd.DataFrame({"epoch_position": [1], "loss": [None]}))):
        for trace in figure.data:
            values = np.asarray(trace.y, float)
            assert values.dtype == float and not np.isinf(values).any()
        figure.to_json()  # strict-JSON-safe for the browser
    acc = charts.training_curves(epochs, "acc").data
    assert np.isnan(acc[0].y[1]) and acc[0].y[2] == pytest.approx(70)


def test_empty_live_charts_have_the_axes_they_will_have():
    import pandas as pd

    epochs, steps = pd.DataFrame(columns=["epoch", "train_acc", "test_acc"]), pd.DataFrame(columns=["step", "loss"])
    acc = charts.live_curves(epochs, steps, "acc", total_steps=200, steps_per_epoch=20, num_classes=10)
    assert list(acc.layout.yaxis.range) == [0, 100] and list(acc.layout.xaxis.range) == [0, 200]
    loss = charts.live_curves(epochs, steps, "loss", total_steps=200, steps_per_epoch=20, num_classes=10)
    low, high = loss.layout.yaxis.range
    assert low == 0 and np.log(10) < high < 4  # a uniform guess's loss, ln 10, fits: training starts there
    assert list(loss.layout.xaxis.range) == [0, 200]
    with_data = charts.live_curves(epochs, pd.DataFrame({"step": [1, 2], "loss": [2.4, 2.2]}), "acc", 200, 20)
    assert list(with_data.layout.yaxis.range) == [0, 100]  # accuracy keeps its 0-100 % axis as points arrive


def test_the_range_test_suggestion_sits_on_the_raw_curve_where_the_smoothed_one_has_a_gap():
    finder = {"lr": [1e-5, 1e-3, 1e-1], "loss": [2.3, 2.0, None], "smoothed_loss": [2.3, None, None],
              "suggested_lr": 1e-3, "suggestion_index": 1, "used_lr": 1e-3}
    star = next(t for t in charts.lr_finder_curve(finder).data if t.name.startswith("suggestion"))
    assert list(star.y) == [2.0]


@pytest.mark.parametrize("n", [2, 10, 40])
def test_confusion_cells_are_touching_squares_with_tight_axes(n):
    names = [f"class number {i}" for i in range(n)]
    figure = charts.confusion_grid(np.arange(n * n).reshape(n, n), names, "Confusion matrix", "images")
    layout, grid = figure.layout, figure.data[0]
    cell = grid.marker.size
    plot_width = layout.width - layout.margin.l - layout.margin.r
    plot_height = layout.height - layout.margin.t - layout.margin.b
    assert plot_width == plot_height == n * cell  # one marker a cell, side by side: squares that touch
    assert list(layout.xaxis.range) == [-0.5, n - 0.5] and list(layout.yaxis.range) == [n - 0.5, -0.5]
    assert grid.marker.symbol == "square" and not layout.autosize
    label = charts.text_px(names)
    assert label <= layout.margin.l <= label + 40  # the class labels beside the cells, with their title
    assert grid.customdata.tolist()[1] == [0, 1]  # cell clicks still carry (true, predicted)


def test_gallery_filters_round_trip_through_the_url():
    names = ["cat", "dog", "frog"]
    assert list(metrics.SORT_PARAMS) == list(metrics.SORTS)
    query = metrics.gallery_query([0, 2], [1], (0.2, 0.55), "confidence, low first", 12, "best", names, "final")
    assert query == {"true": ["cat", "frog"], "pred": ["dog"], "conf": "0.2-0.55", "sort": "confidence-low",
                     "per_page": "12", "dump": "best"}
    as_read = {key: value if isinstance(value, list) else [value] for key, value in query.items()}
    found, problems = metrics.gallery_filters(as_read, names, ["final", "best"])
    assert found == {"true": [0, 2], "pred": [1], "conf": (0.2, 0.55), "sort": "confidence, low first",
                     "per_page": 12, "dump": "best"} and not problems
    assert metrics.gallery_query([], [], (0.0, 1.0), "top losses", 24, "final", names, "final") == {}
    found, problems = metrics.gallery_filters({"true": ["cat", "unicorn"], "conf": ["high"], "sort": ["x"],
                                               "per_page": ["7"], "dump": ["best"]}, names, ["final"])
    assert found == {"true": [0]} and len(problems) == 5 and "unicorn" in problems[0]
