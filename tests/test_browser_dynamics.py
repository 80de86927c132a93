"""Training dynamics in a real browser (Playwright + Debian's chromium) over the browser suite's
tiny runs: the Run page's epoch slider redraws the confusion matrix of that epoch, whose cells open
the gallery at that epoch; Compare's epoch slider reads both runs at that epoch; a box dragged on
the data map shows the images inside it. Uses the harness of bench/screenshots.py and the fixtures
of tests/test_browser.py."""
# ruff: noqa: F811  (the fixtures `browser`, `app`, `pair` and `page` are imported from tests/test_browser.py)

from __future__ import annotations

import numpy as np
import pytest

from bench import screenshots
from engine import dynamics
from tests.test_browser import app, browser, chips, choose_tab, confusion_points, figure, metric, page, pair, widget  # noqa: F401

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.skipif(not screenshots.CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                "(apt-get install chromium)")


def show_the_first_epoch(page) -> None:
    """Predictions from "an epoch", the slider at its first (the Run page's and Compare's picker)."""
    radio = widget(page, "stRadio", "Predictions from")
    screenshots.after_rerun(page, radio.get_by_text("an epoch", exact=True).click, what="choose 'an epoch'")
    thumb = widget(page, "stSlider", "Epoch").get_by_role("slider")
    thumb.focus()
    screenshots.after_rerun(page, lambda: thumb.press("Home"), what="slide to the first epoch")


def test_the_epoch_slider_redraws_the_matrix_and_a_cell_opens_that_epochs_gallery(page, app, pair):
    run = pair["runs"][0]
    found = dynamics.read_dynamics(run.path)
    names, n = run.class_names, len(run.class_names)
    screenshots.open_page(page, app, "run", pair["query"])
    choose_tab(page, "Predictions")
    show_the_first_epoch(page)
    first = int(found.epochs[0])
    shown = figure(page, f"Confusion matrix, epoch {first}")
    counts = np.bincount(found.test_label.astype(int) * n + found.test_pred[0].astype(int), minlength=n * n)
    assert [int(float(t)) for t in shown["data"][0]["text"]] == counts.tolist()

    k = next(int(k) for k in np.argsort(-counts, kind="stable") if k // n != k % n and counts[k])
    true, pred = names[k // n], names[k % n]
    plot, points = confusion_points(page)
    screenshots.click_chart_point(page, plot, points.nth(k), f"true {true}, predicted {pred}")
    expect(page.locator("h1")).to_have_text(f"Misclassifications · {pair['names'][0]}")
    expect(metric(page, "Matching images")).to_have_text(str(counts[k]))
    assert chips(page, "True class") == [true] and chips(page, "Predicted class") == [pred]
    expect(page.get_by_text(f"predictions of the epoch {first}")).to_be_visible()
    assert f"dump=epoch-{first}" in page.url


def test_compares_epoch_slider_reads_both_runs_at_that_epoch(page, app, pair):
    found = [dynamics.read_dynamics(run.path) for run in pair["runs"]]
    n = len(pair["runs"][0].class_names)
    first = int(min(set(found[0].epochs.tolist()) & set(found[1].epochs.tolist())))
    screenshots.open_page(page, app, "compare", pair["query"])
    choose_tab(page, "Predictions")
    show_the_first_epoch(page)
    a, b = (np.bincount(f.test_label.astype(int) * n + f.test_pred[int(np.flatnonzero(f.epochs == first)[0])]
                        .astype(int), minlength=n * n) for f in found)
    shown = figure(page, f"Confusion matrix, B − A, epoch {first}")
    assert [int(float(t)) for t in shown["data"][0]["text"]] == (b - a).tolist()
    right = [f.test_pred[int(np.flatnonzero(f.epochs == first)[0])] == f.test_label for f in found]
    expect(metric(page, "A right, B wrong")).to_have_text(str(int((right[0] & ~right[1]).sum())))


MAP_PIXEL = """([x, y]) => {
  const el = [...document.querySelectorAll('.js-plotly-plot')].find(
    e => (((e._fullLayout || {}).title || {}).text || '').replace(/<[^>]+>/g, '').startsWith('Data map'));
  const box = el.getBoundingClientRect(), xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis;
  return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)];
}"""


def test_a_box_dragged_on_the_data_map_shows_the_images_inside_it(page, app, pair):
    screenshots.open_page(page, app, "dynamics", pair["query"])
    expect(page.get_by_text("Ranked by the final model's probability of the given label")).to_be_visible()
    shown = figure(page, "Data map", points=True)
    x, y = np.asarray(shown["data"][0]["x"], float), np.asarray(shown["data"][0]["y"], float)
    (x0, x1), (y0, y1) = np.quantile(x, [0.2, 0.8]), np.quantile(y, [0.2, 0.8])
    (left, top), (right, bottom) = (page.evaluate(MAP_PIXEL, [x0, y1]), page.evaluate(MAP_PIXEL, [x1, y0]))
    # a pixel either side of the box's edges, in data units: points there may fall either way
    slack_x, slack_y = 2 * (x1 - x0) / (right - left), 2 * (y1 - y0) / (bottom - top)

    def inside(grow_x: float, grow_y: float) -> int:
        return int(np.sum((x >= x0 - grow_x) & (x <= x1 + grow_x) & (y >= y0 - grow_y) & (y <= y1 + grow_y)))

    def drag() -> None:
        page.mouse.move(left, top)
        page.mouse.down()
        for step in range(1, 6):
            page.mouse.move(left + (right - left) * step / 5, top + (bottom - top) * step / 5)
        page.mouse.up()

    screenshots.after_rerun(page, drag, what="drag a box on the data map")
    caption = page.get_by_test_id("stCaptionContainer").filter(has_text="the points selected with box or lasso")
    expect(caption).to_be_visible()
    count = int(caption.inner_text().split(" images")[0].replace(",", ""))
    assert inside(-slack_x, -slack_y) <= count <= inside(slack_x, slack_y), (count, inside(0, 0))
    assert count > 0
    expect(widget(page, "stRadio", "Show").get_by_role("radio", name="selected on the map")).to_be_checked()
