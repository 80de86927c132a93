"""Search expressions: compiled once from a whitelist of Python's syntax (never evaluated), true or
false per row without raising, and every mistake reported once with what is wrong and where."""

from __future__ import annotations

import pytest

from engine.run_query import QueryError, compile_query, config_keys, known_names

ROWS = [
    {"id": "a", "name": "base", "status": "completed", "best_test_acc": 0.71, "final_test_acc": 0.70,
     "epochs_done": 20, "tags": ["baseline"], "note": "the reference", "dataset": "cifar10",
     "config": {"lr": 0.1, "preset": "s11", "epochs": 20, "tta_flip": False, "name": "base"}},
    {"id": "b", "name": "fast-1", "status": "completed", "best_test_acc": 0.55, "final_test_acc": 0.50,
     "epochs_done": 10, "tags": [], "note": "", "dataset": "cifar10",
     "config": {"lr": 0.02, "preset": "fast", "epochs": 10, "tta_flip": True, "name": "fast-1"}},
    {"id": "c", "name": "broken", "status": "failed", "best_test_acc": None, "final_test_acc": None,
     "epochs_done": 0, "tags": ["bad", "baseline"], "note": "nan at step 3", "dataset": None, "config": None},
    {"id": "d", "name": "new", "status": "running", "best_test_acc": 0.3, "final_test_acc": 0.3, "epochs_done": 2,
     "tags": [], "note": "", "dataset": "digits",
     "config": {"lr": 0.2, "preset": "fast", "epochs": 30, "tta_flip": False, "name": "new", "mixup": 0.2}},
]


@pytest.mark.parametrize("text, ids", [
    ("lr > 0.05 and best_test_acc > 0.6", ["a"]),
    ('status == "completed"', ["a", "b"]),
    ('"baseline" in tags', ["a", "c"]),
    ('preset != "fast" or epochs >= 20', ["a", "c", "d"]),
    ('"bad" not in tags', ["a", "b", "d"]),
    ("0.01 < lr <= 0.1", ["a", "b"]),
    ("best_test_acc - final_test_acc > 0.02", ["b"]),
    ("not tags", ["b", "d"]),
    ("tta_flip", ["b"]),
    ('status in ["failed", "running"]', ["c", "d"]),
    ('"nan" in note', ["c"]),
    ('config.name == "base" and name == "base"', ["a"]),
    ("best_test_acc == None", ["c"]),
    ("best_test_acc == null", ["c"]),  # JSON's spellings, as list --json prints values
    ("dataset != null and tta_flip == false", ["a", "d"]),
    ("tta_flip == true", ["b"]),
    ("epochs_done * 2 >= 40", ["a"]),
    ("lr / 0 > 1", []),
    ("-lr < -0.15", ["d"]),
    ('dataset == "digits"', ["d"]),
    ("mixup > 0", ["d"]),
    ("lr > 0.05 and (preset == 's11' or status == 'running')", ["a", "d"]),
])
def test_good_expressions_select_the_right_runs(text, ids):
    query = compile_query(text, config_keys(ROWS))
    assert [row["id"] for row in query.filter(ROWS)] == ids


def test_a_missing_value_or_a_mismatched_type_is_false_not_an_error():
    query = compile_query('lr > 0.05 and preset < 3 or "x" in epochs_done')
    assert query.filter(ROWS) == []
    assert compile_query("lr > 0.05")({"id": "empty"}) is False


@pytest.mark.parametrize("text, column, fragment", [
    ("lrr > 0.05", 1, "unknown name 'lrr'; did you mean lr"),
    ("best_acc > 0.6", 1, "did you mean best_test_acc, best_epoch"),
    ("status == completed", 11, 'text is quoted: "completed"'),
    ('status == "complete"', 11, "no run has status 'complete'; a status is one of running, completed"),
    ("lr > 0.05 an best_test_acc > 0.6", 11, "syntax error"),
    ("lr = 0.1", 4, "compare with ==, not ="),
    ("lr > 0.1 && epochs > 3", 11, "join with and / or"),
    ("(lr > 0.1", 1, "'(' was never closed"),
    ('__import__("os").system("true")', 1, "a function call is not allowed"),
    ("lr ** 2 > 1", 1, "'**' is not allowed"),
    ("tags[0] == 'x'", 1, "indexing ([...]) is not allowed"),
    ("lr.real > 0", 1, "only config.NAME may use a dot"),
    ("config.lrr > 0", 1, "unknown name 'config.lrr'; did you mean config.lr"),
    ("[x for x in tags]", 1, "a comprehension is not allowed"),
    ('"é" == note and lrr > 1', 17, "unknown name 'lrr'"),
    ("lr in [0.1, epochs]", 13, "a list holds only numbers and quoted text"),
    ("lambda: 1", 1, "lambda is not allowed"),
])
def test_a_bad_expression_says_what_is_wrong_and_where(text, column, fragment):
    with pytest.raises(QueryError) as caught:
        compile_query(text)
    error = caught.value
    assert fragment in error.message and error.column == column, (error.message, error.column)
    assert str(error).startswith(f"column {column}: ")
    assert error.pointer().splitlines() == [text, " " * (column - 1) + "^"]


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_an_empty_expression_is_refused(text):
    with pytest.raises(QueryError, match="empty"):
        compile_query(text)


def test_user_text_is_never_evaluated(tmp_path):
    marker = tmp_path / "ran"
    for text in (f"__import__('pathlib').Path({str(marker)!r}).touch()", f"open({str(marker)!r}, 'w')",
                 "().__class__.__bases__[0].__subclasses__()", "(lambda: 1)()", "{**{}}"):
        with pytest.raises(QueryError):
            compile_query(text)
    assert not marker.exists()


def test_every_summary_field_and_config_field_is_a_name():
    names = known_names({"mixup"})
    for name in ("status", "best_test_acc", "final_test_loss", "tags", "note", "sweep", "epochs_done", "lr", "preset",
                 "epochs", "mixup"):
        assert name in names
    assert "sources" not in names and "format_version" not in names


def test_a_query_over_ten_thousand_rows_is_compiled_once_and_evaluated_fast():
    rows = [{**ROWS[i % 4], "id": str(i)} for i in range(10_000)]
    query = compile_query("lr > 0.05 and best_test_acc > 0.6")
    assert len(query.filter(rows)) == 2_500 and query.names == {"lr", "best_test_acc"}
