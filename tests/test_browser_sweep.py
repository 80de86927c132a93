"""The Sweep page in a real browser (Playwright + Debian's chromium) over real tiny sweeps
(tests/test_dashboard_sweep.py's `make_sweeps`): a brush dragged on an axis of the
parallel-coordinates chart filters the trials table and a click beside it clears it, a clicked
trial opens on the Run page, and ticked trials of two seed groups go to Compare, where the verdict
shows. Uses the harness of bench/screenshots.py and the fixtures of tests/test_browser.py. Skips
without chromium or the sample."""
# ruff: noqa: F811  (the fixtures `browser` and `page` are imported from tests/test_browser.py)

from __future__ import annotations

import pytest

from bench import screenshots
from engine import seed_stats
from engine.sweep import trial_states
from tests.test_browser import browser, metric, page  # noqa: F401
from tests.test_dashboard_sweep import make_sweeps

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect  # noqa: E402

pytestmark = pytest.mark.skipif(not screenshots.CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                "(apt-get install chromium)")
ROW_PX = 35  # st.dataframe's row and header height
CHART = "iframe[title='dashboard.parcoords_brush.parcoords_brush']"  # the component's frame (its module.name)
DIMENSIONS = "el => el.data[0].dimensions.map(d => ({name: d.name, constraintrange: d.constraintrange || null}))"


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


def chart(page):
    plot = page.frame_locator(CHART).locator(".js-plotly-plot")
    expect(plot.locator(".axis-brush").first).to_be_attached()
    return plot


def dimensions(page) -> dict[str, list[float] | None]:
    return {d["name"]: d["constraintrange"] for d in chart(page).evaluate(DIMENSIONS)}


def axis_box(page, n: int) -> dict:
    """The n-th axis's brush area, in the page's coordinates (the mouse's)."""
    return chart(page).locator(".axis-brush").nth(n).bounding_box()


def test_a_brush_dragged_on_an_axis_filters_the_table_and_a_click_beside_it_clears_it(page, app, sweeps):
    plan = sweeps["seeds"]
    open_sweep(page, app, sweeps)
    by_best = [s.trial.number for s in sorted(trial_states(plan, sweeps["root"]),
                                              key=lambda s: (-s.value("best_test_acc"), s.trial.number))]
    assert table_trials(page) == by_best
    assert dimensions(page)["lr"] is None
    lr = axis_box(page, 0)  # lr 0.02 at the bottom, 0.08 at the top
    x = lr["x"] + lr["width"] / 2

    def drag_over_the_top_third():
        page.mouse.move(x, lr["y"] + lr["height"] * 0.3)
        page.mouse.down()
        page.mouse.move(x, lr["y"] - 20, steps=8)  # past the axis's end: the brush stops there
        page.mouse.up()

    screenshots.after_rerun(page, drag_over_the_top_third, what="brush lr's top third")
    high_lr = [n for n in by_best if plan.trials[n - 1].params["lr"] == 0.08]
    expect(page.get_by_role("heading", name="Trials (2 of 4)")).to_be_visible()
    assert table_trials(page) == high_lr
    low, high = dimensions(page)["lr"]  # the chart, redrawn by the page's run, keeps the brush
    assert 0.02 < low < 0.08 <= high
    screenshots.after_rerun(page, lambda: page.mouse.click(x, lr["y"] + lr["height"] * 0.9),
                            what="click lr outside its brush")
    expect(page.get_by_role("heading", name="Trials (4 of 4)")).to_be_visible()
    assert dimensions(page)["lr"] is None


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
