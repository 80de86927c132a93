"""The Sweep page and the seed groups on Compare, driven with Streamlit's AppTest over real tiny
sweeps made by `resnet-runs sweep` (the flags of tests/test_sweep.py): the page lists the sweeps
and keeps the one shown in the URL, the trials are sorted by result, the chart draws every trial,
a clicked trial opens on the Run page, and the seed groups and the verdict show the numbers
engine/seed_stats.py gives. Plus the brush's pure parts: a box dragged over an axis's points keeps
those points' trials."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import data, sweep_chart
from engine import run_layout as layout
from engine import seed_stats
from engine.cli import main
from engine.run_summary import summary_of
from engine.sweep import trial_states
from engine.sweep_plan import list_sweeps
from tests.test_dashboard import go
from tests.test_sweep import SWEEP_FLAGS

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP = str(PROJECT_ROOT / "dashboard" / "app.py")


def make_sweeps(root: Path) -> dict:
    """Two real sweeps: `seeds` (lr 0.02 and 0.08, two seeds each: two seed groups of two) and,
    newer, `cutout` (two trials). Returns both plans and each trial's summary by run id."""
    for args in (["--grid", "lr=0.02,0.08", "--seeds", "2", "--name", "seeds"],
                 ["--grid", "cutout=0,8", "--name", "cutout"]):
        assert main(["sweep", *SWEEP_FLAGS, "--epochs", "1", *args, "--runs-dir", str(root)]) == 0
    plans, problems = list_sweeps(root)
    assert not problems and [p.name for p in plans] == ["cutout", "seeds"]
    summaries = {s.run_id: summary_of(s.run_dir) for plan in plans for s in trial_states(plan, root)}
    assert all(s["status"] == "completed" for s in summaries.values())
    return {"root": root, "seeds": plans[1], "cutout": plans[0], "summaries": summaries}


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, sample) -> dict:
    return make_sweeps(tmp_path_factory.mktemp("sweeps"))


def open_sweep_page(monkeypatch, root: Path, query: dict | None = None) -> AppTest:
    monkeypatch.setenv("RUNS_DIR", str(root))
    at = AppTest.from_file(APP, default_timeout=120)
    at.switch_page("app_pages/sweep.py")  # opened on the page itself, as a link does
    for key, value in (query or {}).items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def url_param(at: AppTest, key: str) -> list[str]:
    value = at.query_params[key]
    return [value] if isinstance(value, str) else list(value)


def trials_table(at: AppTest) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "trial" in d.value.columns)


def groups_table(at: AppTest) -> pd.DataFrame:
    return next(d.value for d in at.dataframe if "group" in d.value.columns)


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def trial_ids(sweeps: dict, name: str) -> list[str]:
    return [s.run_id for s in trial_states(sweeps[name], sweeps["root"])]


def best(sweeps: dict, run_id: str) -> float:
    return sweeps["summaries"][run_id]["best_test_acc"]


# ---------------------------------------------------------------- the page


def test_the_page_lists_the_sweeps_and_shows_the_trials_best_first(monkeypatch, sweeps):
    at = open_sweep_page(monkeypatch, sweeps["root"])
    picker = at.selectbox(key="sweep_picker")
    assert picker.options[0].startswith("cutout") and picker.options[1].startswith("seeds")
    assert picker.value == sweeps["cutout"].id  # the newest by default
    assert url_param(at, "sweep") == [sweeps["cutout"].id]
    picker.set_value(sweeps["seeds"].id).run()
    assert url_param(at, "sweep") == [sweeps["seeds"].id]
    table = trials_table(at)
    plan = sweeps["seeds"]
    assert len(table) == 4 and set(table["status"]) == {"completed"}
    assert list(table["best_test_acc"]) == sorted(table["best_test_acc"], reverse=True)
    for row in table.itertuples():
        trial = plan.trials[row.trial - 1]
        assert (row.lr, row.seed) == (trial.params["lr"], trial.seed)
        assert row.best_test_acc == pytest.approx(best(sweeps, row.run_id) * 100)
        assert row.final_test_acc == pytest.approx(sweeps["summaries"][row.run_id]["final_test_acc"] * 100)
    assert chart_axes(at) == ["lr", "seed", "best test acc (%)", "final test acc (%)"]
    points = chart(at)["data"][-1]  # the trials' points, four axes each
    assert sorted(c[0] for c in points["customdata"]) == sorted([row.trial for row in table.itertuples()] * 4)


def test_a_link_opens_its_sweep_and_an_unknown_one_is_named(monkeypatch, sweeps):
    at = open_sweep_page(monkeypatch, sweeps["root"], {"sweep": sweeps["seeds"].id})
    assert at.selectbox(key="sweep_picker").value == sweeps["seeds"].id
    assert len(trials_table(at)) == 4
    at = open_sweep_page(monkeypatch, sweeps["root"], {"sweep": "no-such-sweep"})
    assert any(data.md("no sweep 'no-such-sweep'") in w.value for w in at.warning), [w.value for w in at.warning]
    assert at.selectbox(key="sweep_picker").value == sweeps["cutout"].id


def chart(at: AppTest) -> dict:
    """The parallel-coordinates chart's figure, as the page sent it."""
    (found,) = [e for e in at.get("plotly_chart") if json.loads(e.proto.spec)["layout"]["title"]["text"]
                == sweep_chart.TITLE]
    return json.loads(found.proto.spec)


def chart_axes(at: AppTest) -> list[str]:
    return chart(at)["layout"]["xaxis"]["ticktext"]


def test_the_sweep_page_shows_each_seed_group(monkeypatch, sweeps):
    at = open_sweep_page(monkeypatch, sweeps["root"], {"sweep": sweeps["seeds"].id})
    groups = groups_table(at)
    assert sorted(groups["group"]) == ["lr=0.02", "lr=0.08"]
    for row in groups.itertuples():
        lr = float(row.group.split("=")[1])
        values = [best(sweeps, s.run_id) for s in trial_states(sweeps["seeds"], sweeps["root"])
                  if s.trial.params["lr"] == lr]
        expected = seed_stats.describe(values)
        assert row.n == 2
        assert row.mean == pytest.approx(expected.mean * 100) and row.std == pytest.approx(expected.std * 100)
        assert (row._5, row._6) == (pytest.approx(expected.low * 100), pytest.approx(expected.high * 100))


def test_a_clicked_trial_opens_on_the_run_page(monkeypatch, sweeps):
    at = open_sweep_page(monkeypatch, sweeps["root"], {"sweep": sweeps["seeds"].id})
    table = trials_table(at)
    key = next(d.key for d in at.dataframe if "trial" in d.value.columns)
    at.session_state[key] = {"selection": {"rows": [], "columns": [], "cells": [[1, "status"]]}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    run_id = table["run_id"][1]
    assert at.title[0].value == f"Run {data.md(sweeps['summaries'][run_id]['name'])}"
    assert at.sidebar.selectbox(key="run").value == run_id


# ---------------------------------------------------------------- Compare: seed groups and the verdict


def open_compare(monkeypatch, root: Path, ids: list[str], tab: str = "Seed groups") -> AppTest:
    monkeypatch.setenv("RUNS_DIR", str(root))
    at = AppTest.from_file(APP, default_timeout=120)
    at.query_params["runs"] = ids
    at.run()
    return go(at, "compare", tab)


def test_compare_gives_two_seed_groups_a_verdict_with_its_method_and_p_value(monkeypatch, sweeps):
    ids = trial_ids(sweeps, "seeds")
    at = open_compare(monkeypatch, sweeps["root"], ids)
    groups = groups_table(at)
    assert list(groups["n"]) == [2, 2]
    by_lr = {lr: [best(sweeps, i) for i, t in zip(ids, sweeps["seeds"].trials) if t.params["lr"] == lr]
             for lr in (0.02, 0.08)}
    first, second = (by_lr[float(label.split("=")[1])] for label in groups["group"])  # best group first: A
    verdict = seed_stats.compare(first, second)
    assert metric(at, "p-value") == f"{verdict.p_value:.3g}"
    assert metric(at, "difference A − B (points)") == f"{verdict.difference * 100:+.2f}"
    assert metric(at, "95% interval (points)") == f"{verdict.low * 100:+.2f} to {verdict.high * 100:+.2f}"
    assert any(seed_stats.METHOD in c.value for c in at.caption)
    notes = [box.value for box in (*at.info, *at.success)]
    assert verdict.note in notes, notes


def test_compare_of_two_single_runs_says_one_seed_each_cannot_tell(monkeypatch, sweeps):
    plan = sweeps["seeds"]
    ids = [s.run_id for s in trial_states(plan, sweeps["root"]) if s.trial.seed == plan.trials[0].seed]
    at = open_compare(monkeypatch, sweeps["root"], ids)
    assert list(groups_table(at)["n"]) == [1, 1]
    assert any("One seed each cannot tell" in box.value for box in at.info), [i.value for i in at.info]
    assert not [m for m in at.metric if m.label == "p-value"]



def test_the_verdict_shows_when_the_runs_have_no_readable_predictions(monkeypatch, sweeps, tmp_path):
    """Compare's Predictions tab says no dump can be read; the verdict, which needs only the runs'
    summaries, still shows in its Seed groups tab."""
    ids = trial_ids(sweeps, "seeds")
    root = tmp_path / "runs"
    for run_id in ids:
        shutil.copytree(sweeps["root"] / run_id, root / run_id)
        shutil.rmtree(root / run_id / layout.PREDICTIONS_DIR)
    at = open_compare(monkeypatch, root, ids)
    assert list(groups_table(at)["n"]) == [2, 2]
    assert metric(at, "p-value")
    go(at, "compare", "Predictions")
    assert any("no readable" in w.value for w in at.warning), [w.value for w in at.warning]


# ---------------------------------------------------------------- the brush's pure parts


def test_a_brush_keeps_the_values_inside_any_of_its_intervals_ends_included():
    table = pd.DataFrame({"lr": [0.02, 0.05, 0.08, 0.02], "best_test_acc": [10.0, 12.0, math.nan, 11.0]})
    (lr, accuracy) = sweep_chart.axes(table, ["lr"])
    assert lr.options == (0.02, 0.05, 0.08) and accuracy.options == (10.0, 11.0, 12.0)
    assert sweep_chart.inside(lr, [[0.05, 0.08]]) == (0.05, 0.08)
    assert sweep_chart.inside(lr, [[0.0, 0.03], [0.07, 0.1]]) == (0.02, 0.08)
    kept = sweep_chart.brushed(table, [lr, accuracy], {"lr": [[0.04, 0.1]]})
    assert list(kept["lr"]) == [0.05, 0.08]  # the trial without a result stays while its axis is not brushed
    kept = sweep_chart.brushed(table, [lr, accuracy], {"lr": [[0.04, 0.1]], "best_test_acc": [[11.0, 12.0]]})
    assert list(kept["lr"]) == [0.05]


def box(figure, axis: int, low: float, high: float) -> dict:
    """A box as Streamlit reports one dragged on the chart, around axis `axis` from the height of its
    point `low` to that of its point `high` (heights read from the figure), a hair beyond each."""
    x, y = (list(v) for v in (figure.data[-1].x, figure.data[-1].y))
    heights = sorted({h for i, h in zip(x, y) if i == axis and not math.isnan(h)})
    return {"xref": "x", "yref": "y", "x": [axis - 0.3, axis + 0.3],
            "y": [heights[int(low)] - 1e-6, heights[int(high)] + 1e-6]}


def test_a_box_over_an_axis_points_keeps_the_trials_of_those_points():
    table = pd.DataFrame({"trial": [1, 2, 3, 4], "lr": [0.02, 0.05, 0.08, 0.02],
                          "cutout": ["none", "8", "16", "8"], "best_test_acc": [10.0, 12.0, 13.0, 11.0]})
    found = sweep_chart.axes(table, ["lr", "cutout"])
    figure = sweep_chart.parallel_coordinates(table, found)
    assert list(figure.layout.xaxis.ticktext) == ["lr", "cutout", "best test acc (%)"]

    def kept(*boxes) -> list[int]:
        return list(sweep_chart.brushed(table, found, sweep_chart.brushes_from(list(boxes), found))["trial"])

    assert kept(box(figure, 0, 1, 2)) == [2, 3]  # lr's top two points: 0.05 and 0.08
    assert kept(box(figure, 1, 1, 1)) == [2, 4]  # cutout's middle point: "8"
    assert kept(box(figure, 0, 1, 2), box(figure, 1, 1, 1)) == [2]  # on two axes: inside both
    assert kept(box(figure, 0, 0, 0), box(figure, 0, 2, 2)) == [1, 3, 4]  # two on one axis: either
    assert kept() == [1, 2, 3, 4]
    spanning = {"x": [-0.5, 1.5], "y": [0.9, 1.1]}  # across lr and cutout, at the top of both
    assert kept(spanning) == [3]


def test_only_boxes_of_two_corners_of_numbers_are_taken_from_the_browser():
    table = pd.DataFrame({"lr": [0.02, 0.05], "best_test_acc": [10.0, 12.0]})
    found = sweep_chart.axes(table, ["lr"])
    sent = [{"x": [0.2, -0.2], "y": [1.0, 0.5]}, {"x": [0, 1, 2], "y": [0, 1]}, {"x": ["a", 0], "y": [0, 1]},
            {"x": [0, 1], "y": [math.inf, 1]}, {"x": [5, 6], "y": [0, 1]}, "box", None, {"y": [0, 1]}]
    assert sweep_chart.brushes_from(sent, found) == {"lr": [[pytest.approx(0.035), pytest.approx(0.05)]]}
    assert sweep_chart.brushes_from(None, found) == {} == sweep_chart.brushes_from({"x": [0, 1]}, found)


def test_values_that_are_not_numbers_get_a_category_axis_in_the_sweeps_order():
    table = pd.DataFrame({"dataset": ["digits", "cifar10", "digits"], "hflip": [True, False, True],
                          "best_test_acc": [50.0, 60.0, 55.0]})
    found = {a.column: a for a in sweep_chart.axes(table, ["dataset", "hflip"])}
    assert found["dataset"].options == ("digits", "cifar10") and not found["dataset"].numeric
    assert not found["hflip"].numeric
    figure = sweep_chart.parallel_coordinates(table, list(found.values()))
    labels = {(a.x, a.y): a.text for a in figure.layout.annotations}
    assert labels[(0, 0.0)] == "digits" and labels[(0, 1.0)] == "cifar10"  # in the sweep's order, bottom up
    assert list(sweep_chart.brushed(table, list(found.values()), {"dataset": [[0.6, 1.2]]})["hflip"]) == [False]
