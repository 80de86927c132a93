"""The Sweep page in a real browser (Playwright + Debian's chromium) over real tiny sweeps
(tests/test_dashboard_sweep.py's `make_sweeps`): a box dragged over an axis's points on the
parallel-coordinates chart filters the trials table and a double-click clears it, a clicked
trial opens on the Run page, and ticked trials of two seed groups go to Compare, where the verdict
shows. Uses the harness of bench/screenshots.py and the fixtures of tests/test_browser.py. Skips
without chromium or the sample."""
# ruff: noqa: F811  (the fixtures `browser` and `page` are imported from tests/test_browser.py)

from __future__ import annotations

import pytest

from bench import screenshots
from dashboard import sweep_chart
from engine import seed_stats
from engine.sweep import trial_states
from tests.test_browser import browser, metric, page  # noqa: F401
from tests.test_dashboard_sweep import make_sweeps

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.skipif(not screenshots.CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                "(apt-get install chromium)")
ROW_PX = 35  # st.dataframe's row and header height
# The chart's pixel for a point (axis, height) in its own coordinates, found by its title.
FIND_CHART = """title => [...document.querySelectorAll('.js-plotly-plot')].find(
    e => (((e._fullLayout || {}).title || {}).text || '').replace(/<[^>]+>/g, '') === title)"""
CHART_PIXEL = """([title, x, y]) => {
  const el = (""" + FIND_CHART + """)(title);
  const box = el.getBoundingClientRect(), xa = el._fullLayout.xaxis, ya = el._fullLayout.yaxis;
  return [box.left + xa._offset + xa.l2p(x), box.top + ya._offset + ya.l2p(y)];
}"""


@pytest.fixture(scope="module")
def sweeps(tmp_path_factory, sample) -> dict:
    return make_sweeps(tmp_path_factory.mktemp("browser-sweeps"))


@pytest.fixture(scope="module")
def app(sweeps):
    with screenshots.dashboard(sweeps["root"]) as url:
        yield url


def open_sweep(page, app, sweeps) -> None:
    screenshots.open_page(page, app, "sweep", f"sweep={sweeps['seeds'].id}")
    expect(page.locator("h1")).to_have_text("Sweep")


def trials_grid(page):
    return page.get_by_test_id("stMain").get_by_test_id("stDataFrame").first


def table_trials(page) -> list[int]:
    """The trial numbers the trials table shows, top to bottom (its accessible table: the grid is a canvas)."""
    grid = trials_grid(page)
    expect(grid.locator("table td").first).to_be_attached()
    rows = grid.locator("table tbody tr")
    return [int(rows.nth(i).locator("td").nth(0).inner_text()) for i in range(rows.count())]


def pixel(page, axis: float, height: float) -> list[float]:
    page.wait_for_function(FIND_CHART, arg=sweep_chart.TITLE)
    return page.evaluate(CHART_PIXEL, [sweep_chart.TITLE, axis, height])


def test_a_box_dragged_over_an_axis_filters_the_table_and_a_double_click_clears_it(page, app, sweeps):
    plan = sweeps["seeds"]
    open_sweep(page, app, sweeps)
    by_best = [s.trial.number for s in sorted(trial_states(plan, sweeps["root"]),
                                              key=lambda s: (-s.value("best_test_acc"), s.trial.number))]
    assert table_trials(page) == by_best
    (left, top), (right, bottom) = pixel(page, -0.25, 1.04), pixel(page, 0.25, 0.7)  # lr 0.08 at the top

    def drag_a_box_over_lr_top() -> None:
        page.mouse.move(left, top)
        page.mouse.down()
        for step in range(1, 6):
            page.mouse.move(left + (right - left) * step / 5, top + (bottom - top) * step / 5)
        page.mouse.up()

    screenshots.after_rerun(page, drag_a_box_over_lr_top, what="box over lr's top point")
    high_lr = [n for n in by_best if plan.trials[n - 1].params["lr"] == 0.08]
    expect(page.get_by_role("heading", name="Trials (2 of 4)")).to_be_visible()
    assert table_trials(page) == high_lr
    box = trials_grid(page).bounding_box()  # another widget's run keeps the box: the chart is the same
    screenshots.after_rerun(page, lambda: page.mouse.click(box["x"] + 12, box["y"] + ROW_PX * 1.5),
                            what="tick the first row")
    expect(page.get_by_role("button", name="Compare the 1 ticked trials")).to_be_visible()
    expect(page.get_by_role("heading", name="Trials (2 of 4)")).to_be_visible()
    middle = pixel(page, 1.5, 0.5)
    screenshots.after_rerun(page, lambda: page.mouse.dblclick(*middle), what="double-click the chart")
    expect(page.get_by_role("heading", name="Trials (4 of 4)")).to_be_visible()
    assert table_trials(page) == by_best


def test_a_clicked_trial_opens_on_the_run_page(page, app, sweeps):
    open_sweep(page, app, sweeps)
    first = table_trials(page)[0]
    box = trials_grid(page).bounding_box()
    screenshots.after_rerun(page, lambda: page.mouse.click(box["x"] + 100, box["y"] + ROW_PX * 1.5),
                            what="click the first trial")
    expect(page.locator("h1")).to_have_text(f"Run {sweeps['seeds'].name}-{first}")


def test_two_seed_groups_go_to_compare_and_the_verdict_shows(page, app, sweeps):
    plan = sweeps["seeds"]
    states = trial_states(plan, sweeps["root"])
    open_sweep(page, app, sweeps)
    box = trials_grid(page).bounding_box()
    for row in range(len(states)):  # tick every trial in its row's marker column
        screenshots.after_rerun(page, lambda row=row: page.mouse.click(box["x"] + 12, box["y"] + ROW_PX * (row + 1.5)),
                                what=f"tick row {row + 1}")
    button = page.get_by_role("button", name=f"Compare the {len(states)} ticked trials")
    screenshots.after_rerun(page, button.click, what="compare the ticked trials")
    expect(page.locator("h1")).to_have_text("Compare runs")  # on its Seed groups tab, which the button is for
    expect(page.get_by_role("tab", name="Seed groups", exact=True)).to_have_attribute("aria-selected", "true")
    assert "tab=seed-groups" in page.url, page.url
    by_lr: dict[float, list[float]] = {}
    for state in states:
        by_lr.setdefault(state.trial.params["lr"], []).append(state.value("best_test_acc"))
    a, b = sorted(by_lr.values(), key=lambda values: -sum(values))  # the best group is A
    verdict = seed_stats.compare(a, b)
    expect(metric(page, "p-value")).to_have_text(f"{verdict.p_value:.3g}")
    expect(page.get_by_text(f"Method: {seed_stats.METHOD}.")).to_be_attached()
