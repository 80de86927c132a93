"""Issue 19 on the Runs page, driven with Streamlit's AppTest over real runs written by the engine's
own RunWriter (tests/runs_for_tests.py) and, for large folders, bench/many_runs.py's generator of
realistic runs: the search box, the filters, a bad expression's message, the settings that differ
as columns, sorting, tags and a note, archive and restore, paging at 1,000 runs with the selection
kept, the sidebar's bounded picker, and Compare of ten runs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from bench.many_runs import generate
from dashboard import run_search, widgets
from engine import runs
from engine.run_curation import set_note, set_tags
from engine.run_index import RunIndex
from engine.run_layout import archive_dir
from engine.run_query import compile_query, config_keys
from engine.run_reader import read_note, read_tags
from tests.runs_for_tests import write_run
from tests.test_dashboard import go, open_app


@pytest.fixture
def three(tmp_path) -> tuple[Path, dict[str, str]]:
    """alpha (lr 0.1, best 60%, tagged baseline), beta (fast preset, lr 0.01, a note), gamma (lr 0.2, failed)."""
    root = tmp_path / "runs"
    made = {"alpha": write_run(root, "alpha", lr=0.1), "beta": write_run(root, "beta", lr=0.01, preset="fast"),
            "gamma": write_run(root, "gamma", lr=0.2, status=runs.Status.FAILED)}
    set_tags(made["alpha"], ["baseline"])
    set_note(made["beta"], "tried the fast preset")
    return root, {name: path.name for name, path in made.items()}


def listed(at: AppTest) -> list[str]:
    """The names in the runs table, in its order."""
    return list(at.dataframe[0].value["name"])


def search(at: AppTest, text: str) -> list[str]:
    at.text_input(key="runs_search").set_value(text).run()
    assert not at.exception, at.exception
    return listed(at)


def where(at: AppTest, text: str) -> AppTest:
    at.text_input(key="runs_where").set_value(text).run()
    assert not at.exception, at.exception
    return at


def button(at: AppTest, key: str) -> AppTest:
    at.button(key=key).click().run()
    assert not at.exception, at.exception
    return at


def messages(at: AppTest) -> str:
    return " ".join(e.value for e in (*at.success, *at.error))


def test_the_search_box_finds_runs_by_name_tag_and_note(monkeypatch, three):
    root, ids = three
    at = open_app(monkeypatch, root)
    assert sorted(listed(at)) == ["alpha", "beta", "gamma"]
    assert search(at, "BETA") == ["beta"]  # any case
    assert search(at, "baseline") == ["alpha"]  # a tag
    assert search(at, "fast preset") == ["beta"]  # every word of the note
    assert search(at, ids["gamma"][-12:]) == ["gamma"]  # part of the id
    assert search(at, "nothing-like-this") == []
    assert search(at, "") == listed(at) and len(listed(at)) == 3


def test_filters_and_an_expression_narrow_the_table(monkeypatch, three):
    root, _ = three
    at = open_app(monkeypatch, root)
    at.multiselect(key="runs_status").set_value(["failed"]).run()
    assert listed(at) == ["gamma"]
    at.multiselect(key="runs_status").set_value([]).run()
    at.multiselect(key="runs_tags").set_value(["baseline"]).run()
    assert listed(at) == ["alpha"]
    at.multiselect(key="runs_tags").set_value([]).run()
    assert listed(where(at, "lr > 0.05 and best_test_acc > 0.55")) == ["alpha"]  # gamma failed at 50%
    assert sorted(listed(where(at, 'preset == "fast" or status == "failed"'))) == ["beta", "gamma"]
    assert "2 of 3 runs match" in " ".join(c.value for c in at.caption)


def test_a_bad_expression_is_named_and_the_page_still_lists_runs(monkeypatch, three):
    root, _ = three
    at = where(open_app(monkeypatch, root), "lr >> 2")
    assert not at.exception
    assert len(at.error) == 1 and "is not allowed" in at.error[0].value and "column 1" in at.error[0].value
    assert at.code[0].value.endswith("^")  # the expression with a caret under the column
    assert len(listed(at)) == 3  # the bad expression is not used; nothing else breaks
    where(at, "lrr > 0.1")
    assert "unknown name" in at.error[0].value and "did you mean lr" in at.error[0].value
    where(at, 'status == "complete"')
    assert "no run has status" in at.error[0].value
    where(at, "lr > 0.1")
    assert not at.error and listed(at) == ["gamma"]


def test_the_settings_that_differ_are_columns_and_sorting_orders_every_run(monkeypatch, three):
    root, _ = three
    at = open_app(monkeypatch, root)
    order = list(at.dataframe[0].proto.column_order)
    assert "config.preset" in order and "config.lr" in order  # two presets differ by more than their names
    assert "config.width" not in order and "config.name" not in order  # the same in all, or only a label
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["beta", "config.preset"] == "fast" and table.loc["alpha", "config.lr"] == 0.1
    at.selectbox(key="runs_sort").set_value("config.lr").run()
    at.toggle(key="runs_descending").set_value(False).run()
    assert listed(at) == ["beta", "alpha", "gamma"]
    at.selectbox(key="runs_sort").set_value("best_test_acc").run()
    assert listed(at)[0] == "gamma"  # 50%, then the two at 60%
    at.multiselect(key="runs_settings").set_value(["seed"]).run()  # a chosen setting replaces the default
    assert [c for c in at.dataframe[0].proto.column_order if c.startswith("config.")] == ["config.seed"]


def test_tags_and_a_note_are_edited_for_the_selected_runs(monkeypatch, three):
    root, ids = three
    at = open_app(monkeypatch, root, selected=[ids["alpha"], ids["gamma"]])
    at.text_input(key="runs_tag_add").set_value("good-lr, sweep:1").run()
    button(at, "runs_tag_go")
    assert "Tags changed on 2 runs" in messages(at)
    for name in ("alpha", "gamma"):
        assert read_tags(root / ids[name])[0][-2:] == ["good-lr", "sweep:1"]
    table = at.dataframe[0].value.set_index("name")
    assert table.loc["gamma", "tags"] == "good-lr, sweep:1"
    assert sorted(search(at, "good-lr")) == ["alpha", "gamma"]

    at.multiselect(key="runs_tag_remove").set_value(["baseline"]).run()
    button(at, "runs_tag_go")
    assert read_tags(root / ids["alpha"])[0] == ["good-lr", "sweep:1"]
    at.text_input(key="runs_tag_add").set_value("no spaces allowed!").run()
    button(at, "runs_tag_go")
    assert "is not a tag" in messages(at) and not at.exception

    at.selectbox(key="runs_note_run").set_value(ids["gamma"]).run()
    at.text_area(key=f"runs_note_{ids['gamma']}").set_value("diverged: lr 0.2 is too high").run()
    button(at, "runs_note_go")
    assert read_note(root / ids["gamma"])[0] == "diverged: lr 0.2 is too high"
    assert search(at, "diverged") == ["gamma"]  # the index saw the note at once


def test_archive_then_restore(monkeypatch, three):
    root, ids = three
    at = open_app(monkeypatch, root, selected=[ids["beta"]])
    button(at, "runs_archive")
    assert "Archived: beta" in messages(at)
    assert (archive_dir(root) / ids["beta"] / runs.RUN_JSON).is_file() and not (root / ids["beta"]).exists()
    assert sorted(listed(at)) == ["alpha", "gamma"]
    assert at.sidebar.multiselect(key="runs").value == []  # an archived run leaves the selection

    at.toggle(key="runs_archived").set_value(True).run()
    assert listed(at) == ["beta"]
    at.session_state["archived_picked"] = [ids["beta"]]  # what ticking its row does (tests/test_browser_runs_index.py)
    at.run()
    button(at, "runs_restore")
    assert "Restored: beta" in messages(at)
    assert (root / ids["beta"] / runs.RUN_JSON).is_file() and not (archive_dir(root) / ids["beta"]).exists()
    at.toggle(key="runs_archived").set_value(False).run()
    assert sorted(listed(at)) == ["alpha", "beta", "gamma"]


def test_a_running_run_is_not_archived_and_says_why(monkeypatch, tmp_path):
    from tests.runs_for_tests import open_run

    writer = open_run(tmp_path / "runs", "live", epochs=3, done=1)  # this process holds its lock
    try:
        at = open_app(monkeypatch, tmp_path / "runs", selected=[writer.path.name])
        button(at, "runs_archive")
        assert "it is running" in messages(at) and writer.path.is_dir()
    finally:
        writer.finish(runs.Status.INTERRUPTED, "test over")


@pytest.fixture(scope="module")
def thousand(tmp_path_factory) -> tuple[Path, dict[str, list[str]]]:
    root = tmp_path_factory.mktemp("many") / "runs"
    return root, generate(root, 1000)


def test_a_thousand_runs_are_paged_and_the_selection_survives_pages_and_filters(monkeypatch, thousand):
    root, states = thousand
    at = open_app(monkeypatch, root)
    first = list(at.dataframe[0].value["id"])
    assert len(first) == 100 and first == sorted(first, reverse=True)  # a page, newest first
    assert "1,000 of 1,000 runs match · page 1 of 10" in " ".join(c.value for c in at.caption)
    at.pagination[0].set_value(3).run()
    third = list(at.dataframe[0].value["id"])
    assert len(third) == 100 and not set(third) & set(first)
    at.selectbox(key="runs_per_page").set_value(500).run()
    assert len(at.dataframe[0].value) == 500

    # a torn run is named damaged and breaks nothing; one warning names at most ten of them
    torn = states["torn: garbage config"]
    (warning,) = at.main.warning
    assert "partly unreadable" in warning.value and 1 <= warning.value.count("\n- ") <= 11
    assert search(at, torn[0][-20:]) and at.dataframe[0].value["status"].iloc[0].endswith("(damaged)")
    search(at, "")

    # the sidebar picker offers a bounded list, narrowed by its search box, the selection kept in it
    picker = at.sidebar.multiselect(key="runs")
    assert len(picker.options) == widgets.PICKER_LIMIT
    picked = [first[0], first[7]]
    picker.set_value(picked).run()
    at.sidebar.text_input(key=widgets.FIND_WIDGET).set_value("experiment-1").run()
    options = at.sidebar.multiselect(key="runs").options
    labels = options[len(picked):]
    assert len(options) <= widgets.PICKER_LIMIT + len(picked)
    assert labels and all("experiment-1" in label for label in labels)
    assert at.sidebar.multiselect(key="runs").value == picked
    where(at, "lr > 0.05")  # a filter that may hide the picked runs keeps them selected
    assert at.sidebar.multiselect(key="runs").value == picked
    assert at.query_params["runs"] == picked

    # a sort orders every matching run, and stays right as the filter changes under it
    at.selectbox(key="runs_sort").set_value("best_test_acc")
    at.toggle(key="runs_descending").set_value(False).run()
    rows = RunIndex(root).refresh()
    for expression in ("lr > 0.05", "lr < 0.05 and status == \"completed\""):
        test = compile_query(expression, config_keys(rows)).test
        matching = sorted(row["best_test_acc"] for row in rows if test(row) and row["best_test_acc"] is not None)
        shown = where(at, expression).dataframe[0].value["best_test_acc"]
        assert len(shown) == min(at.selectbox(key="runs_per_page").value, sum(map(test, rows)))
        assert shown.tolist()[:len(matching)] == pytest.approx([acc * 100 for acc in matching[:len(shown)]])


def test_ticks_on_one_page_stay_when_another_page_is_ticked():
    shared = ["a", "x"]
    assert run_search.pick(shared, ["x", "y", "z"], ["z"]) == ["a", "z"]  # x unticked, z ticked, a elsewhere
    assert run_search.pick(["a"], ["b"], ["b"]) == ["a", "b"]
    rows = [{"id": "1", "best_test_acc": None, "config": {"lr": 0.1}}, {"id": "2", "best_test_acc": 0.5, "config": {}},
            {"id": "3", "best_test_acc": 0.7, "config": {"lr": "auto"}}]
    assert run_search.sort_positions(rows, [0, 1, 2], "best_test_acc", True) == [2, 1, 0]  # missing last
    assert run_search.sort_positions(rows, [0, 1, 2], "best_test_acc", False) == [1, 2, 0]
    assert run_search.sort_positions(rows, [0, 1, 2], "config.lr", False) == [0, 2, 1]  # numbers, text, missing


def test_a_filtered_list_picked_from_one_sort_of_every_row_is_sorted_as_if_alone():
    rng = np.random.default_rng(0)
    values = [None, "", float("nan"), "auto", "Auto", 0.1, 0.1, 0.3, 2, -1]  # ties, text, three kinds of missing
    rows = [{"id": str(i), "best_test_acc": values[rng.integers(len(values))]} for i in range(300)]
    for descending in (True, False):
        order = run_search.sort_positions(rows, range(len(rows)), "best_test_acc", descending)
        for size in (0, 1, 37, 299, 300):
            subset = sorted(rng.choice(len(rows), size, replace=False).tolist())
            assert run_search.in_order(order, subset) == run_search.sort_positions(rows, subset, "best_test_acc",
                                                                                   descending)


def test_compare_of_ten_runs_keeps_short_labels_and_the_legend_below(monkeypatch, tmp_path):
    root = tmp_path / "runs"
    generate(root, 10, mix={})
    ids = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
    at = go(open_app(monkeypatch, root, selected=ids), "compare")
    assert not at.error
    curves = [json.loads(node.proto.spec) for node in at.get("plotly_chart")]
    assert len(curves) == 4 and all("per epoch" in json.dumps(s["layout"]["title"]) for s in curves)
    go(at, "compare", "Predictions")
    per_class = [s for s in (json.loads(node.proto.spec) for node in at.get("plotly_chart"))
                 if "Accuracy per class" in json.dumps(s["layout"].get("title", ""))]
    for spec in curves + per_class:
        names = [trace["name"] for trace in spec["data"] if trace.get("name")]
        assert len(set(names)) == 10 and all(len(name) <= 32 for name in names), names
        legend = spec["layout"]["legend"]
        assert legend["orientation"] == "h" and legend["y"] < 0
        assert spec["layout"]["height"] > 340  # taller by the legend's rows: the plot keeps its height
    go(at, "compare", "Key figures and config")
    diff = at.dataframe[1].value
    assert {"lr", "seed"} <= set(diff.index) and "width" not in diff.index  # only what differs


def test_short_labels_keep_the_id_that_tells_runs_apart():
    labels = {"a": "a-very-long-sweep-name-that-goes-on-and-on · 120355-a1b2c3",
              "b": "a-very-long-sweep-name-that-goes-on-and-on · 120356-d4e5f6", "c": "short"}
    short = widgets.short_labels(labels)
    assert short["c"] == "short" and all(len(v) <= 32 for v in short.values())
    assert short["a"].endswith("· 120355-a1b2c3") and short["a"] != short["b"]
