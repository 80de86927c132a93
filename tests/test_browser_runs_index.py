"""Issue 19 in a real browser (Playwright + Debian's chromium), over a folder of realistic runs from
bench/many_runs.py's generator: the Runs page's search box and filter expression, choosing the
columns in their popover, tagging the selected runs, ticking rows of a filtered table and opening
them in Compare, and archiving (then restoring) a run. Fixtures and helpers come from
tests/test_browser.py. Skips without chromium."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import screenshots
from bench.many_runs import generate
from engine import runs
from engine.run_index import RunIndex
from engine.run_layout import archive_dir
from engine.run_query import compile_query
from engine.run_reader import read_tags
from tests import test_browser as harness
from tests.test_browser import add_chip, chips, widget

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.skipif(not screenshots.CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                "(apt-get install chromium)")
HEADER_PX = ROW_PX = 35  # the grid's header and row heights (Streamlit's defaults)
MARKER_PX = 30  # the grid's first column: the row markers (tick boxes)
browser, page = harness.browser, harness.page  # the suite's fixtures: a tab checked for errors after each test


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("browser-many") / "runs"
    generate(root, 40, mix={"failed": 0.1})
    return root


@pytest.fixture(scope="module")
def app(folder):
    with screenshots.dashboard(folder) as url:
        yield url


def main(page):
    return page.get_by_test_id("stMain")


def matches(page) -> str:
    return main(page).get_by_test_id("stCaptionContainer").filter(has_text="runs match").first.inner_text()


def type_into(page, label: str, text: str) -> None:
    """Type into the text box labelled `label` and press Enter: one script run."""
    field = widget(main(page), "stTextInput", label).locator("input")
    field.fill(text)
    screenshots.after_rerun(page, lambda: field.press("Enter"), what=f"type {text!r} into {label!r}")


def grid_names(page, prefix: str) -> list[str]:
    """The cells of the runs table that start with `prefix`, row by row, from the grid's accessible
    table (the grid draws on a canvas): the run names when `prefix` starts every listed name."""
    grid = main(page).get_by_test_id("stDataFrame").first
    expect(grid.locator("table td").first).to_be_attached()
    return [cell for cell in grid.locator("table td").all_text_contents() if cell.startswith(prefix)]


def tick_row(page, row: int) -> None:
    """Tick a row's box in the grid's marker column, by position (the grid is a canvas)."""
    grid = main(page).get_by_test_id("stDataFrame").first
    grid.scroll_into_view_if_needed()
    box = grid.bounding_box()
    x, y = box["x"] + MARKER_PX / 2, box["y"] + HEADER_PX + ROW_PX * row + ROW_PX / 2
    page.mouse.move(x, y)  # the box shows on hover
    screenshots.after_rerun(page, lambda: page.mouse.click(x, y), what=f"tick row {row} of the runs table")


def test_the_search_box_and_a_filter_expression_find_runs(page, app, folder):
    rows = RunIndex(folder).refresh()
    screenshots.open_page(page, app, "runs")
    assert matches(page).startswith(f"{len(rows)} of {len(rows)} runs match")
    type_into(page, "Search", "experiment-3")
    wanted = [r for r in rows if "experiment-3" in r["name"]]
    expect(main(page).get_by_text(f"{len(wanted)} of {len(rows)} runs match")).to_be_visible()
    assert sorted(grid_names(page, "experiment-")) == sorted(r["name"] for r in wanted)

    type_into(page, "Search", "")
    expression = "lr > 0.05 and best_test_acc > 0.6"
    type_into(page, "Filter expression", expression)
    count = len(compile_query(expression).filter(rows))
    expect(main(page).get_by_text(f"{count} of {len(rows)} runs match")).to_be_visible()
    expression = "best_test_acc == null or lr < 0.05"  # JSON's null, as list --json prints it
    type_into(page, "Filter expression", expression)
    count = len(compile_query(expression).filter(rows))
    expect(main(page).get_by_text(f"{count} of {len(rows)} runs match")).to_be_visible()
    expect(main(page).get_by_test_id("stAlertContentError")).to_have_count(0)

    type_into(page, "Filter expression", "lr > 0.05 && best_test_acc")
    error = main(page).get_by_test_id("stAlertContentError")
    expect(error).to_contain_text("syntax error")
    expect(error).to_contain_text("join with and / or")
    type_into(page, "Filter expression", "")


def test_columns_and_settings_are_chosen_in_their_popover(page, app):
    screenshots.open_page(page, app, "runs")
    header = main(page).get_by_test_id("stDataFrame").first.locator("table th")  # the grid's accessible table
    expect(header.filter(has_text="note")).to_have_count(0)
    opener = main(page).get_by_role("button", name="Columns and rows")
    columns = widget(page, "stMultiSelect", "Columns")
    screenshots.until(opener.click, lambda ms: expect(columns).to_be_visible(timeout=ms),
                      "open the Columns and rows popover")
    add_chip(page, "Columns", "note")
    expect(header.filter(has_text="note")).to_have_count(1)
    add_chip(page, "Settings", "seed")  # a chosen setting replaces those that differ
    expect(header.filter(has_text="seed")).to_have_count(1)
    remove = columns.locator("[data-tag]").filter(has_text="note").locator("button[aria-label^='Remove']")
    screenshots.after_rerun(page, remove.click, what="remove the note column")
    expect(header.filter(has_text="note")).to_have_count(0)


def test_tagging_the_selected_run(page, app, folder):
    run_id = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))[3]
    screenshots.open_page(page, app, "runs", f"runs={run_id}")
    expect(main(page).get_by_text("The selected runs (1)", exact=True)).to_be_visible()
    type_into(page, "Add tags", "browser-tag")
    screenshots.after_rerun(page, main(page).get_by_role("button", name="Apply to the selected runs").click)
    expect(main(page).get_by_test_id("stAlertContentSuccess")).to_contain_text("Tags changed on 1 run")
    assert "browser-tag" in read_tags(folder / run_id)[0]
    type_into(page, "Search", "browser-tag")
    total = len(RunIndex(folder).refresh())
    expect(main(page).get_by_text(f"1 of {total} runs match")).to_be_visible()
    type_into(page, "Search", "")


def test_rows_ticked_in_a_filtered_table_open_in_compare(page, app, folder):
    screenshots.open_page(page, app, "runs")
    type_into(page, "Search", "lr-sweep")
    names = grid_names(page, "lr-sweep")
    assert len(names) >= 2
    tick_row(page, 0)
    tick_row(page, 1)
    sidebar = page.get_by_test_id("stSidebar")
    expect(widget(sidebar, "stMultiSelect", "Selected runs").locator("[data-tag]")).to_have_count(2)
    assert sorted(chips(page, "Selected runs", sidebar)) == sorted(names[:2])
    screenshots.after_rerun(page, main(page).get_by_role("link", name="Compare the selected runs").click)
    expect(page.locator("h1")).to_have_text("Compare runs")
    harness.choose_tab(page, "Predictions")
    expect(page.get_by_text("A right, B wrong").first).to_be_visible()
    assert sorted(chips(page, "Selected runs", sidebar)) == sorted(names[:2])


def test_archiving_a_run_and_restoring_it(page, app, folder):
    run_id = sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))[5]
    total = len(RunIndex(folder).refresh())
    screenshots.open_page(page, app, "runs", f"runs={run_id}")
    screenshots.after_rerun(page, main(page).get_by_role("button", name="Archive the selected runs (1)").click)
    expect(main(page).get_by_test_id("stAlertContentSuccess")).to_contain_text("Archived")
    assert (archive_dir(folder) / run_id / runs.RUN_JSON).is_file() and not (folder / run_id).exists()
    expect(main(page).get_by_text(f"{total - 1} of {total - 1} runs match")).to_be_visible()

    toggle = main(page).get_by_text("Archived runs", exact=True).first  # the toggle, above the message
    screenshots.after_rerun(page, toggle.click, what="show the archived runs")
    expect(main(page).get_by_text("1 of 1 archived runs match")).to_be_visible()
    tick_row(page, 0)
    screenshots.after_rerun(page, main(page).get_by_role("button", name="Restore the ticked runs (1)").click)
    expect(main(page).get_by_test_id("stAlertContentSuccess")).to_contain_text("Restored")
    assert (folder / run_id / runs.RUN_JSON).is_file() and not (archive_dir(folder) / run_id).exists()
