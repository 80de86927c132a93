"""Training dynamics in a real browser (Playwright + Debian's chromium) over the browser suite's
tiny runs: the Run page's epoch slider redraws the confusion matrix of that epoch, whose cells open the gallery at that
epoch. Uses the harness of bench/screenshots.py and the fixtures of tests/test_browser.py."""
# ruff: noqa: F811  (the fixtures `browser`, `app`, `pair` and `page` are imported from tests/test_browser.py)

from __future__ import annotations

import numpy as np
import pytest

from bench import screenshots
from engine import dynamics
from tests.test_browser import app, browser, chips, confusion_points, figure, metric, page, pair, widget  # noqa: F401

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.skipif(not screenshots.CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                "(apt-get install chromium)")


def test_the_epoch_slider_redraws_the_matrix_and_a_cell_opens_that_epochs_gallery(page, app, pair):
    run = pair["runs"][0]
    found = dynamics.read_dynamics(run.path)
    names, n = run.class_names, len(run.class_names)
    screenshots.open_page(page, app, "run", pair["query"])
    radio = widget(page, "stRadio", "Predictions from")
    screenshots.after_rerun(page, radio.get_by_text("an epoch", exact=True).click, what="choose 'an epoch'")
    thumb = widget(page, "stSlider", "Epoch").get_by_role("slider")
    thumb.focus()
    screenshots.after_rerun(page, lambda: thumb.press("Home"), what="slide to the first epoch")
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
