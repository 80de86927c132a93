"""Training dynamics in the dashboard, driven with AppTest over real tiny runs: the Training
dynamics page ranks and shows the training images by the run's own scores (with what the final
model believes they show), its views hold exactly the engine's regions, the ranked list downloads
as CSV; the Run page's confusion matrix and the gallery show any recorded epoch."""

from __future__ import annotations

import io
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest

from dashboard import dynamics_views, metrics
from engine import dynamics, dynamics_scores, runs
from engine.run_layout import DYNAMICS_DIR, DYNAMICS_LABELS
from tests.test_dashboard_issue18 import figures, go, link, metric, open_app

CAPTION = re.compile(r"#(\d+) given \*\*(.+?)\*\*")


@pytest.fixture(scope="module")
def recorded(runs_dir):
    run = next(r for r in runs.list_runs(runs_dir) if r.name == "seed1")
    found = dynamics.read_dynamics(run.path)
    return run, found, dynamics_scores.image_scores(found)


def shown_images(at) -> list[tuple[int, str, str]]:
    """(training index, given label, whole caption) of each image caption, in page order."""
    out = []
    for caption in at.caption:
        found = CAPTION.search(caption.value)
        if found:
            out.append((int(found[1]), found[2], caption.value))
    return out


def test_the_page_shows_the_likely_mislabelled_first_with_the_final_models_belief(monkeypatch, runs_dir, recorded):
    run, found, scores = recorded
    at = go(open_app(monkeypatch, runs_dir, {"runs": run.id, "run": run.id}), "dynamics")
    assert metric(at, "Training images") == f"{len(scores):,}"
    assert metric(at, "Epochs recorded") == str(len(found.epochs))
    assert metric(at, "Negative AUM") == f"{int(np.sum(scores.aum < 0)):,}"
    assert metric(at, "Forgotten at least once") == f"{int(np.sum(scores.forgetting > 0)):,}"
    assert at.radio(key="dyn_view").value == "likely mislabelled"
    images = shown_images(at)
    ranked = dynamics_scores.likely_mislabelled(scores)
    assert [i for i, _, _ in images] == list(ranked[:24])
    assert [label for _, label, _ in images] == [run.class_names[found.train_label[i]] for i, _, _ in images]
    assert all("final model: **" in caption for _, _, caption in images), images[0]
    assert len(at.image) == 24  # the training images themselves, read back from the run's dataset
    curves = figures(at)["True-class probability over training, images on this page"]
    assert len(curves["data"]) == 24 and curves["data"][0]["name"] == f"#{ranked[0]} {images[0][1]}"


@pytest.mark.parametrize("view", ["hard to learn", "ambiguous", "easy", "forgotten"])
def test_each_view_holds_the_engines_images(monkeypatch, runs_dir, recorded, view):
    run, _, scores = recorded
    at = go(open_app(monkeypatch, runs_dir, {"runs": run.id, "run": run.id}), "dynamics")
    at.radio(key="dyn_view").set_value(view).run()
    expected = (np.flatnonzero(scores.forgetting > 0) if view == "forgotten"
                else np.flatnonzero(dynamics_scores.data_map_regions(scores)[view]))
    assert any(c.value.startswith(f"{len(expected):,} images") for c in at.caption)
    assert {i for i, _, _ in shown_images(at)} <= set(expected.tolist())
    order = dynamics_views.view_order(view, scores)
    assert sorted(order.tolist()) == sorted(expected.tolist())
    if view == "hard to learn":
        assert (np.diff(scores.confidence[order]) >= 0).all()


def test_the_csv_ranks_every_training_image_most_doubtful_label_first(recorded):
    run, found, scores = recorded
    table = dynamics_views.mislabelled_table(scores, found.train_label, run.class_names, found.final_train_pred)
    back = pd.read_csv(io.StringIO(table.to_csv(index=False)))
    assert len(back) == len(scores) and back["index"].is_unique
    assert list(back.columns[:6]) == ["rank", "index", "given_label", "final_model_prediction",
                                      "final_model_prob_given", "aum"]
    assert (np.diff(back["final_model_prob_given"]) >= 0).all()
    first = int(back["index"][0])
    assert back["given_label"][0] == run.class_names[found.train_label[first]]
    assert back["final_model_prediction"][0] == run.class_names[found.final_train_pred[first]]
    assert back["final_model_prob_given"][0] == pytest.approx(float(found.final_train_prob.min()), abs=1e-4)
    assert back["aum"][0] == pytest.approx(float(scores.aum[first]), abs=1e-4)


def test_a_run_whose_dataset_is_gone_shows_the_numbers_and_says_why(monkeypatch, tmp_path, runs_dir, recorded):
    run, _, scores = recorded
    moved = tmp_path / "runs" / run.id
    shutil.copytree(run.path, moved)
    config = json.loads((moved / runs.CONFIG_JSON).read_text())
    config["dataset"] = f"npz:{tmp_path / 'gone.npz'}"
    (moved / runs.CONFIG_JSON).write_text(json.dumps(config))
    at = go(open_app(monkeypatch, tmp_path / "runs", {"runs": run.id, "run": run.id}), "dynamics")
    assert any("Training images cannot be shown" in i.value and "gone.npz" in i.value for i in at.info), \
        [i.value for i in at.info]
    assert len(shown_images(at)) == 24 and not len(at.image)


def test_a_run_without_dynamics_says_so(monkeypatch, tmp_path, recorded):
    run, _, _ = recorded
    moved = tmp_path / "runs" / run.id
    shutil.copytree(run.path, moved)
    shutil.rmtree(moved / DYNAMICS_DIR)
    at = go(open_app(monkeypatch, tmp_path / "runs", {"runs": run.id, "run": run.id}), "dynamics")
    assert any("recorded no training dynamics" in i.value for i in at.info)
    go(at, "run", "Predictions")  # and the Run page offers the dumps only
    assert at.radio(key="run_dump_kind").options == [runs.TAG_LABELS["final"], runs.TAG_LABELS["best"]]


def test_a_run_whose_labels_file_is_gone_still_shows_its_images_and_scores(monkeypatch, tmp_path, recorded):
    run, found, scores = recorded
    moved = tmp_path / "runs" / run.id
    shutil.copytree(run.path, moved)
    (moved / DYNAMICS_LABELS).unlink()
    at = go(open_app(monkeypatch, tmp_path / "runs", {"runs": run.id, "run": run.id}), "dynamics")
    assert any("labels.npz: missing" in w.value for w in at.warning)
    assert metric(at, "Final model disagrees") == "—"
    assert [i for i, _, _ in shown_images(at)] == list(dynamics_scores.likely_mislabelled(scores)[:24])


def cells(figure: dict) -> np.ndarray:
    """A confusion grid's numbers, row-major (true class, predicted class), as the chart shows them."""
    return np.array([int(float(t)) for t in figure["data"][0]["text"]])


def test_the_confusion_matrix_shows_any_epoch_and_its_cells_open_the_gallery_there(monkeypatch, runs_dir, recorded):
    run, found, _ = recorded
    at = go(open_app(monkeypatch, runs_dir, {"runs": run.id, "run": run.id}), "run", "Predictions")
    at.radio(key="run_dump_kind").set_value("epoch").run()
    assert at.select_slider(key="run_dump_epoch").value == found.epochs[-1]
    at.select_slider(key="run_dump_epoch").set_value(int(found.epochs[0])).run()
    assert not at.exception
    shown = next(f for title, f in figures(at).items() if title.startswith("Confusion matrix, epoch 1"))
    expected = metrics.confusion_matrix(found.test_label, found.test_pred[0], run.num_classes)
    assert (cells(shown) == expected.reshape(-1)).all() and cells(shown).sum() == run.dataset["test_size"]

    wrong = int((found.test_label != found.test_pred[0]).sum())
    # the gallery opened by a link, as a cell click opens it
    at = link(monkeypatch, runs_dir, "misclassified", {"runs": run.id, "run": run.id, "dump": "epoch-1"})
    assert at.radio(key="mis_dump_kind").value == "epoch" and at.select_slider(key="mis_dump_epoch").value == 1
    assert metric(at, "Matching images") == str(wrong)
    assert any("predictions of the epoch 1" in c.value for c in at.caption)


def test_compare_reads_both_runs_at_the_same_epoch_and_draws_their_difference(monkeypatch, runs_dir):
    pair = sorted(runs.list_runs(runs_dir), key=lambda r: r.name)
    recorded = [dynamics.read_dynamics(r.path) for r in pair]
    common = sorted(set(recorded[0].epochs.tolist()) & set(recorded[1].epochs.tolist()))
    assert len(common) >= 2  # the fixture runs record every epoch
    ids = [r.id for r in pair]
    at = go(open_app(monkeypatch, runs_dir, {"runs": ids, "run": ids[0]}), "compare", "Predictions")
    at.session_state["cmp_own_matrices"] = True  # each run's own matrix is drawn once its expander is opened
    at.radio(key="cmp_source_kind").set_value("epoch").run()
    assert at.select_slider(key="cmp_source_epoch").options == [str(e) for e in common]
    epoch = common[0]
    at.select_slider(key="cmp_source_epoch").set_value(epoch).run()
    assert not at.exception, [e.value for e in at.exception]
    shown = figures(at)
    matrices = []
    for letter, found in zip("AB", recorded):
        row = int(np.flatnonzero(found.epochs == epoch)[0])
        expected = metrics.confusion_matrix(found.test_label, found.test_pred[row], pair[0].num_classes)
        title = next(t for t in shown if t.startswith(f"Confusion matrix, {letter}, epoch {epoch}<br>"))
        assert (cells(shown[title]) == expected.reshape(-1)).all()
        matrices.append(expected)
    difference = next(f for t, f in shown.items() if t.startswith(f"Confusion matrix, B − A, epoch {epoch}<br>"))
    assert (cells(difference) == (matrices[1] - matrices[0]).reshape(-1)).all()
    a_right, b_right = (found.test_pred[int(np.flatnonzero(found.epochs == epoch)[0])] == found.test_label
                        for found in recorded)
    assert metric(at, "A right, B wrong") == str(int((a_right & ~b_right).sum()))


def test_the_run_page_shows_its_calibration(monkeypatch, runs_dir, recorded):
    from engine import calibration

    run, _, _ = recorded
    at = go(open_app(monkeypatch, runs_dir, {"runs": run.id, "run": run.id}), "run", "Calibration")
    assert "Reliability diagram" in figures(at)
    (table,) = [t.value for t in at.dataframe if "ECE, final epoch" in t.value.columns]
    for tag in runs.PREDICTION_TAGS:
        ece = calibration.expected_calibration_error(run.predictions(tag))
        assert table[f"ECE, {runs.TAG_LABELS[tag]}"].tolist() == [f"{ece * 100:.1f}%"]
