"""Calibration (engine/calibration.py): the expected calibration error on dumps checked by hand and
on a real tiny run's dumps, and Compare's Calibration section (dashboard/calibration_view.py) showing
those very figures, a dash for a run without dumps. The browser check is
tests/test_browser_calibration.py."""

from __future__ import annotations

import base64
import json
import shutil

import numpy as np
import pytest

from engine import calibration, runs
from engine.calibration import expected_calibration_error, reliability
from engine.run_layout import prediction_path
from tests.test_dashboard import go, open_app, run_ids


def dump(label, pred, confidence) -> dict[str, np.ndarray]:
    return {"label": np.asarray(label, np.int64), "pred": np.asarray(pred, np.int64),
            "confidence": np.asarray(confidence, np.float32)}


def guo_ece(confidence: np.ndarray, right: np.ndarray, bins: int = 15) -> float:
    """The ECE written out as in Guo et al. 2017, bin by bin: a second spelling to check against."""
    total = 0.0
    for m in range(1, bins + 1):
        low, high = (m - 1) / bins, m / bins
        inside = (confidence > low) & (confidence <= high) if m > 1 else (confidence <= high)
        if inside.any():
            total += inside.sum() / len(confidence) * abs(right[inside].mean() - confidence[inside].mean())
    return total


# ---------------------------------------------------------------- by hand


def test_a_perfectly_calibrated_dump_has_an_ece_of_zero():
    # 20 images said 95% and 19 were right; 20 said 65%, 13 right; 20 said 25%, 5 right.
    confidence = [0.95] * 20 + [0.65] * 20 + [0.25] * 20
    right = [True] * 19 + [False] + [True] * 13 + [False] * 7 + [True] * 5 + [False] * 15
    label = np.zeros(60)
    pred = np.where(right, 0, 1)
    bins = reliability(dump(label, pred, confidence))
    assert list(bins.count) == [20, 20, 20]
    assert bins.accuracy == pytest.approx([0.25, 0.65, 0.95])
    assert bins.ece == pytest.approx(0.0, abs=1e-6)


def test_confident_and_always_wrong_has_an_ece_near_one():
    ece = expected_calibration_error(dump(np.zeros(50), np.ones(50), np.full(50, 0.999)))
    assert ece == pytest.approx(0.999, abs=1e-6)


def test_two_bins_by_hand():
    # Bin (0.267, 0.333]: 2 images at 30%, both right: |1.0 - 0.3| = 0.7, weight 2/4.
    # Bin (0.867, 0.933]: 2 images at 90%, one right: |0.5 - 0.9| = 0.4, weight 2/4.  ECE = 0.35 + 0.2.
    bins = reliability(dump([0, 0, 1, 1], [0, 1, 1, 1], [0.9, 0.9, 0.3, 0.3]))
    assert list(bins.count) == [2, 2]
    assert bins.low == pytest.approx([4 / 15, 13 / 15]) and bins.high == pytest.approx([5 / 15, 14 / 15])
    assert bins.confidence == pytest.approx([0.3, 0.9]) and bins.accuracy == pytest.approx([1.0, 0.5])
    assert bins.ece == pytest.approx(0.55)


def test_the_edges_belong_to_the_lower_bin_and_zero_and_one_are_binned():
    bins = reliability(dump(np.zeros(4), np.zeros(4), [0.0, 0.5, 0.5 + 1e-6, 1.0]), bins=2)
    assert list(bins.count) == [2, 2] and bins.images == 4


def test_no_images_give_no_bins_and_no_ece():
    empty = reliability(dump([], [], []))
    assert empty.ece is None and not len(empty.count) and empty.images == 0
    unreadable = reliability(dump([0, 1], [0, 1], [np.nan, np.nan]))
    assert unreadable.ece is None and unreadable.left_out == 2
    some = reliability(dump([0, 1], [0, 0], [np.nan, 0.9]))
    assert some.images == 1 and some.left_out == 1 and some.ece == pytest.approx(0.9)


def test_bins_must_be_at_least_one():
    with pytest.raises(ValueError, match="at least 1"):
        reliability(dump([0], [0], [0.5]), bins=0)


# ---------------------------------------------------------------- a real run


def test_a_real_runs_dumps_match_the_bin_by_bin_formula(tiny_run):
    run = runs.load_run(tiny_run)
    assert run.prediction_tags()
    for tag in run.prediction_tags():
        predictions = run.predictions(tag)
        confidence = predictions["confidence"].astype(np.float64)
        right = predictions["label"] == predictions["pred"]
        bins = reliability(predictions)
        assert bins.count.sum() == len(confidence) == bins.images and bins.left_out == 0
        assert 0.0 <= bins.ece <= 1.0
        assert bins.ece == pytest.approx(guo_ece(confidence, right), abs=1e-9)
        # The accuracy over the bins is the run's test accuracy on this dump.
        assert np.sum(bins.accuracy * bins.count) / bins.images == pytest.approx(right.mean())


# ---------------------------------------------------------------- Compare


def plotted(values) -> np.ndarray:
    """A trace's values as the page sent them: a list, or plotly's packed array {dtype, bdata}."""
    if isinstance(values, dict):
        return np.frombuffer(base64.b64decode(values["bdata"]), np.dtype(values["dtype"])).astype(float)
    return np.asarray(values, float)


def ece_shown(value: float | None) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def test_compare_shows_each_runs_ece_of_both_dumps_and_a_dash_without_dumps(monkeypatch, runs_dir, tmp_path):
    root = tmp_path / "runs"
    ids = sorted(run_ids(runs_dir))
    for run_id in ids:
        shutil.copytree(runs_dir / run_id, root / run_id)
    bare = f"{ids[0]}-nodumps"
    shutil.copytree(runs_dir / ids[0], root / bare)
    for tag in runs.PREDICTION_TAGS:
        prediction_path(root / bare, tag).unlink()
    selected = [*ids, bare]
    at = go(open_app(monkeypatch, root, selected=selected), "compare")
    assert not [t for t in at.dataframe if "ECE, final epoch" in t.value.columns]  # drawn once its tab is chosen
    go(at, "compare", "Calibration")
    (table,) = [t.value for t in at.dataframe if "ECE, final epoch" in t.value.columns]
    assert len(table) == 3
    for row, run_id in zip(table.itertuples(index=False), selected):
        run = runs.load_run(root / run_id)
        for tag, shown in zip(runs.PREDICTION_TAGS, row[1:]):
            expected = expected_calibration_error(run.predictions(tag)) if tag in run.prediction_tags() else None
            assert shown == ece_shown(expected), (run_id, tag)
    assert list(table.iloc[2, 1:]) == ["—", "—"]

    def diagram() -> dict:
        (spec,) = [s for s in (json.loads(n.proto.spec) for n in at.get("plotly_chart"))
                   if s["layout"]["title"]["text"] == "Reliability diagram"]
        return spec

    for tag in ("final", "best"):
        at.radio(key="cmp_calibration_dump").set_value(tag).run()
        traces = diagram()["data"]
        assert traces[0]["name"] == "perfect calibration"
        assert len(traces) == 3  # the diagonal and the two runs with dumps; the bare run draws nothing
        for trace, run_id in zip(traces[1:], ids):
            bins = reliability(runs.load_run(root / run_id).predictions(tag))
            assert plotted(trace["y"]) == pytest.approx(bins.accuracy * 100)
            assert plotted(trace["x"]) == pytest.approx(bins.confidence * 100)
    assert any("Not drawn" in c.value for c in at.caption)
    assert not at.exception and not at.error
    assert calibration.BINS == 15
