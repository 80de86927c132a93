"""Issue 18 in a real browser (Playwright + Debian's chromium), where only a browser shows it: a
confusion matrix of touching square cells with the class labels beside them, and no label cut
short on any page. Screenshots go to tests/artifacts/ (git-ignored). Skips without chromium or
the CIFAR-10 sample."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from bench import screenshots
from dashboard import metrics
from engine import runs

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from tests.test_browser import choose_tab  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
TALL = 4000  # px: Streamlit draws only what is in the window, so a tall window shows whole pages at once
pytestmark = pytest.mark.skipif(not screenshots.CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                "(apt-get install chromium)")
expect.set_options(timeout=60_000)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = screenshots.launch(playwright)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def app(browser_runs):
    with screenshots.dashboard(browser_runs) as url:
        yield url


@pytest.fixture(scope="module")
def query(browser_runs) -> str:
    ids = sorted(run.id for run in runs.list_runs(browser_runs))
    return f"runs={ids[0]}&runs={ids[1]}&run={ids[0]}"


@pytest.fixture
def page(browser, request):
    tab = screenshots.new_page(browser, 1400, TALL)
    errors = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshots.full_screenshot(tab, ARTIFACTS / f"{request.node.name}.png")
    exceptions = tab.get_by_test_id("stException").all_inner_texts()
    tab.close()
    assert not exceptions, exceptions
    assert not errors, errors


# ---------------------------------------------------------------- the confusion matrix

CELLS = """el => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left, r.top, r.right, r.bottom]; };
  return {cells: [...el.querySelectorAll('.scatterlayer .trace')[0].querySelectorAll('.point')].map(box),
          x: [...el.querySelectorAll('.xtick text')].map(box), y: [...el.querySelectorAll('.ytick text')].map(box)};
}"""


def assert_touching_squares_with_labels_beside(page, title: str, n: int) -> None:
    plot = page.locator(".js-plotly-plot").filter(has_text=title).first
    expect(plot.locator(".scatterlayer .point")).to_have_count(n * n)
    found = page.evaluate(CELLS, plot.element_handle())
    cells = np.asarray(found["cells"], float).reshape(n, n, 4)  # rows = true class, columns = predicted
    width, height = cells[..., 2] - cells[..., 0], cells[..., 3] - cells[..., 1]
    assert np.allclose(width, width.mean(), atol=1) and np.allclose(height, width, atol=1), (width, height)
    gaps_across = cells[:, 1:, 0] - cells[:, :-1, 2]  # left of a cell minus right of the one before it
    gaps_down = cells[1:, :, 1] - cells[:-1, :, 3]
    assert np.abs(gaps_across).max() <= 1 and np.abs(gaps_down).max() <= 1, (gaps_across, gaps_down)
    left, top, right, bottom = cells[0, 0, 0], cells[0, 0, 1], cells[-1, -1, 2], cells[-1, -1, 3]
    y_labels, x_labels = np.asarray(found["y"], float), np.asarray(found["x"], float)
    assert len(y_labels) == len(x_labels) == n
    assert (left - y_labels[:, 2]).max() <= 12 and (left - y_labels[:, 2]).min() >= 0  # right beside the rows
    assert (x_labels[:, 1] - bottom).max() <= 12 and (x_labels[:, 1] - bottom).min() >= -1  # right under the columns
    assert (y_labels[:, 1] >= top - 1).all() and (x_labels[:, 2] <= right + 60).all()


def test_confusion_matrices_are_grids_of_touching_squares_labelled_beside(page, app, query, browser_runs):
    n = len(runs.list_runs(browser_runs)[0].class_names)
    screenshots.open_page(page, app, "run", query)
    choose_tab(page, "Predictions")
    assert_touching_squares_with_labels_beside(page, "Confusion matrix", n)
    screenshots.after_rerun(page, page.get_by_text("Row-normalised").click)
    assert_touching_squares_with_labels_beside(page, "Confusion matrix", n)
    screenshots.open_page(page, app, "compare", query)
    choose_tab(page, "Predictions")
    own = page.get_by_test_id("stExpander").filter(has_text="own confusion matrices").locator("summary")
    screenshots.after_rerun(page, own.click, what="open the runs' own matrices")  # drawn once opened
    for title in ("Confusion matrix, A,", "Confusion matrix, B,", "Confusion matrix, B − A"):
        assert_touching_squares_with_labels_beside(page, title, n)


# ---------------------------------------------------------------- labels cut short

CUT = """() => {
  const cut = [];
  for (const e of document.querySelectorAll("[data-testid=stMain] *, [data-testid=stSidebar] *")) {
    if (e.tagName === 'INPUT') {
      if (!['range', 'checkbox', 'radio'].includes(e.type) && e.value && e.scrollWidth > e.clientWidth + 1)
        cut.push(`input "${e.value}"`);
    } else if (getComputedStyle(e).textOverflow === 'ellipsis' && e.scrollWidth > e.clientWidth + 1) {
      cut.push(`text "${e.innerText}"`);
    }
  }
  return cut;
}"""


def choose(page, label: str, option: str) -> None:
    box = page.get_by_test_id("stSelectbox").filter(
        has=page.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True))
    if box.locator("input").input_value() == option:
        return
    box.locator("button[aria-label='Open']").click()
    screenshots.after_rerun(page, page.get_by_role("option", name=option, exact=True).click)


@pytest.mark.parametrize("name", screenshots.PAGES)
def test_no_label_is_cut_short(page, app, query, name):
    screenshots.open_page(page, app, name, query)
    assert not page.evaluate(CUT)
    if name == "misclassified":
        for sort in metrics.SORTS:
            choose(page, "Sort by", sort)
            assert not page.evaluate(CUT), sort


HEADER_WIDTH = """([labels]) => document.fonts.ready.then(() => {
  const context = document.createElement('canvas').getContext('2d');
  const family = getComputedStyle(document.querySelector('[data-testid=stDataFrame]')).fontFamily;
  context.font = `600 14px ${family}`;  // the grid's header font, a little bolder to be safe
  return labels.map(label => context.measureText(label).width);
})"""
NAMED_WIDTHS = {"small": 75, "medium": 200, "large": 400}  # Streamlit's column widths, in px


def test_every_runs_table_header_fits_its_column(page, app, query, browser_runs, monkeypatch):
    """A column given a width keeps it whatever its header says (the others size to their header):
    every given width must hold its header, measured in the browser's own font."""
    monkeypatch.setenv("RUNS_DIR", str(browser_runs))
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard" / "app.py"), default_timeout=120).run()
    config = json.loads(at.dataframe[0].proto.columns)
    sized = {c["label"]: NAMED_WIDTHS.get(c["width"], c["width"]) for c in config.values()
             if c.get("width") and c.get("label")}
    screenshots.open_page(page, app, "runs", query)
    texts = page.evaluate(HEADER_WIDTH, [list(sized)])
    padding = 2 * 8 + 4  # the grid's cell padding on either side, and a little air
    too_narrow = {label: (width, round(text)) for (label, width), text in zip(sized.items(), texts)
                  if text + padding > width}
    assert not too_narrow, too_narrow


# ---------------------------------------------------------------- gallery filters in the URL


def test_gallery_filters_survive_a_reload_and_the_back_button(page, app, query, browser_runs):
    run = sorted(runs.list_runs(browser_runs), key=lambda r: r.id)[0]
    dump, names = run.predictions("final"), run.class_names
    wrong = dump["label"] != dump["pred"]
    true = int(np.bincount(dump["label"][wrong]).argmax())
    screenshots.open_page(page, app, "misclassified", query)
    main = page.get_by_test_id("stMain")
    box = main.get_by_test_id("stMultiSelect").filter(has=page.get_by_text("True class", exact=True))
    box.locator("input").fill(names[true])
    screenshots.after_rerun(page, lambda: page.get_by_role("option", name=names[true], exact=True).click())
    page.keyboard.press("Escape")
    choose(page, "Sort by", "confidence, low first")
    count = str(int(np.sum(wrong & (dump["label"] == true))))
    matching = page.get_by_test_id("stMetric").filter(has_text="Matching images").get_by_test_id("stMetricValue")
    expect(matching).to_have_text(count)
    assert f"true={names[true]}" in page.url and "sort=confidence-low" in page.url, page.url
    first = main.get_by_test_id("stCaptionContainer").filter(has_text="#").first.inner_text()

    screenshots.after_rerun(page, page.reload)  # a new session, from the URL alone
    expect(matching).to_have_text(count)
    assert box.locator("[data-tag]").all_inner_texts() == [names[true]]
    assert main.get_by_test_id("stCaptionContainer").filter(has_text="#").first.inner_text() == first
    screenshots.after_rerun(page, page.go_back)  # the step before: the sort was still by loss
    expect(page.get_by_test_id("stSelectbox").filter(has=page.get_by_text("Sort by", exact=True))
           .locator("input")).to_have_value("top losses")
