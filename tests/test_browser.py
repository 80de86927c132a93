"""The dashboard in a real browser, used as a person uses it: `streamlit run` over real tiny runs
(tests/conftest.py), driven by Playwright in Debian's chromium. Charts are checked through the
figure each page holds, and every drawn line must lie inside its plot. Screenshots go to
tests/artifacts/ (git-ignored). Skips without chromium or the CIFAR-10 sample."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import numpy as np
import pytest

from bench import screenshots
from dashboard import section_tabs
from engine import runs

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(not screenshots.CHROMIUM.exists(), reason="/usr/bin/chromium is not installed "
                                "(apt-get install chromium)")
ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"
TALL = 4000  # px: Streamlit draws only what is in the window, so a tall window shows whole pages at once
expect.set_options(timeout=60_000)


# ---------------------------------------------------------------- fixtures


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
def pair(browser_runs) -> dict:
    """The two fixture runs: ids, names, final dumps, and the URL query selecting both."""
    found = sorted(runs.list_runs(browser_runs), key=lambda run: run.name)
    ids = [run.id for run in found]
    return {"ids": ids, "names": [run.name for run in found], "runs": found,
            "dumps": [run.predictions("final") for run in found],
            "query": f"runs={ids[0]}&runs={ids[1]}&run={ids[0]}"}


@pytest.fixture
def page(browser, request):
    """A fresh tab; after the test: no exception box, no script error, no request off this machine."""
    tab = screenshots.new_page(browser, 1400, TALL)
    errors, outside = [], []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.on("request", lambda req: outside.append(req.url) if urlparse(req.url).hostname not in
           ("127.0.0.1", "localhost", None, "") and not req.url.startswith(("data:", "blob:")) else None)
    yield tab
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    screenshots.full_screenshot(tab, ARTIFACTS / f"{request.node.name}.png")
    exceptions = tab.get_by_test_id("stException").all_inner_texts()
    tab.close()
    assert not exceptions, exceptions
    assert not errors, errors
    assert not outside, f"the dashboard fetched from the internet: {outside}"


# ---------------------------------------------------------------- helpers


def heading(page) -> str:
    return page.locator("h1").first.inner_text()


def metric(page, label: str):
    return page.get_by_test_id("stMetric").filter(has_text=label).get_by_test_id("stMetricValue")


def widget(where, kind: str, label: str):
    """The widget of `kind` labelled `label`, within `where` (a page or a part of one)."""
    page = getattr(where, "page", where)  # the label locator must start from the page itself
    label_of = page.get_by_test_id("stWidgetLabel").get_by_text(label, exact=True)
    return where.get_by_test_id(kind).filter(has=label_of)


def chips(page, label: str, where=None) -> list[str]:
    return widget(where or page, "stMultiSelect", label).locator("[data-tag]").all_inner_texts()


def choose(page, label: str, option: str) -> None:
    """Pick `option` in the selectbox labelled `label` and wait for the rerun (none when it is chosen)."""
    box = widget(page, "stSelectbox", label)
    if box.locator("input").input_value() == option:
        return
    item = page.get_by_role("option", name=option, exact=True)

    def pick() -> None:  # open the list (unless a lost try left it open), click the option
        if not item.is_visible():
            box.locator("button[aria-label='Open']").click()
        item.click(timeout=screenshots.REGISTERED_S * 1000)

    screenshots.after_rerun(page, pick, what=f"choose {option!r} in {label!r}")


def add_chip(page, label: str, option: str) -> None:
    box = widget(page, "stMultiSelect", label)

    def pick() -> None:
        box.locator("input").fill(option)
        page.get_by_role("option", name=option, exact=True).click(timeout=screenshots.REGISTERED_S * 1000)

    screenshots.after_rerun(page, pick, what=f"add {option!r} to {label!r}")
    page.keyboard.press("Escape")


def clear_chips(page, label: str) -> None:
    box = widget(page, "stMultiSelect", label)
    while box.locator("[data-tag]").count():
        screenshots.after_rerun(page, box.locator("[data-tag] button[aria-label^='Remove']").first.click)


FIGURE = """el => {
  const plain = v => ArrayBuffer.isView(v) ? Array.from(v) : Array.isArray(v) ? v.map(plain) : v;
  const trace = t => ({name: t.name, type: t.type, x: plain(t.x), y: plain(t.y), text: plain(t.text),
    marker: t.marker && {color: plain(t.marker.color), colorbar: t.marker.colorbar &&
      {title: {text: t.marker.colorbar.title.text}, ticksuffix: t.marker.colorbar.ticksuffix}},
    textfont: t.textfont && {color: plain(t.textfont.color)}});
  const axis = a => a && {range: a.range, type: a.type, title: {text: a.title.text}};
  const f = el._fullLayout;
  return {data: el._fullData.map(trace),
          full: {title: {text: f.title.text}, xaxis: axis(f.xaxis), yaxis: axis(f.yaxis)}};
}"""


def figure(page, title: str, points: bool = False, trace: str = "") -> dict:
    """The plotly figure a page holds, found by the start of its title: its traces as plotly.js
    holds them (arrays decoded) and its laid-out axes (`full`: ranges, types, titles). With
    `points`, once some trace shows points; with `trace`, once a trace's name holds it. The figure
    is read in the same instant it is found, so a page that redraws (Live) cannot swap it between."""
    found = page.wait_for_function(f"""([title, points, trace]) => {{
        const figure = {FIGURE};
        for (const el of document.querySelectorAll('.js-plotly-plot')) {{
          const shown = ((el._fullLayout || {{}}).title || {{}}).text || '';
          const data = el._fullData || [];
          if (el._fullLayout && shown.replace(/<[^>]+>/g, '').startsWith(title)
              && (!points || data.some(t => t.x && t.x.length > 0))
              && (!trace || data.some(t => (t.name || '').includes(trace))))
            return figure(el);
        }}
        return false;
    }}""", arg=[title, points, trace], timeout=120_000)
    return found.json_value()


def assert_drawn_inside(page) -> None:
    """Every trace line and shape of every chart lies inside its plot area (a line drawn off the
    plot, e.g. at a log axis's exponent instead of its value, fails here)."""
    for handle in page.locator(".js-plotly-plot").element_handles():
        off = page.evaluate("""el => {
          const area = el.querySelector('.draglayer .nsewdrag');
          if (!area) return [];
          const a = area.getBoundingClientRect(), off = [];
          for (const p of el.querySelectorAll('.scatterlayer .js-line, .shapelayer path')) {
            const b = p.getBoundingClientRect();
            if (b.width === 0 && b.height === 0) continue;
            if (b.left < a.left - 2 || b.right > a.right + 2 || b.top < a.top - 2 || b.bottom > a.bottom + 2)
              off.push({title: el._fullLayout.title.text, box: [b.left, b.top, b.right, b.bottom],
                        area: [a.left, a.top, a.right, a.bottom]});
          }
          return off; }""", handle)
        assert not off, off


def selection_in_url(page) -> list[str]:
    return parse_qs(urlparse(page.url).query).get("runs", [])


def assert_selection_kept(page, pair: dict) -> None:
    sidebar = page.get_by_test_id("stSidebar")
    expect(widget(sidebar, "stMultiSelect", "Selected runs").locator("[data-tag]")).to_have_count(2)
    assert sorted(chips(page, "Selected runs", sidebar)) == sorted(pair["names"])
    assert sorted(selection_in_url(page)) == sorted(pair["ids"]), page.url


def open_run_page(page, app, pair) -> None:
    screenshots.open_page(page, app, "run", pair["query"])
    expect(page.locator("h1")).to_have_text(f"Run {pair['names'][0]}")


def choose_tab(page, label: str) -> None:
    """Open a tab of a page drawn in tabs (dashboard/section_tabs.py): a rerun draws its content."""
    tab = page.get_by_test_id("stMain").get_by_role("tab", name=label, exact=True)
    if tab.get_attribute("aria-selected") != "true":
        screenshots.after_rerun(page, tab.click, what=f"open the {label} tab")
    expect(tab).to_have_attribute("aria-selected", "true")


def confusion_points(page):
    plot = page.locator(".js-plotly-plot").filter(has_text="Confusion matrix").first
    return plot, plot.locator(".scatterlayer .trace").first.locator(".point")


# ---------------------------------------------------------------- every page


@pytest.mark.parametrize("name", screenshots.PAGES)
def test_every_page_renders_with_its_charts_inside_their_plots(page, app, pair, name):
    screenshots.open_page(page, app, name, pair["query"])
    expect(page.locator("h1").first).to_be_visible()
    assert_drawn_inside(page)
    for tab in section_tabs.BY_PAGE[name].labels[1:] if name in section_tabs.BY_PAGE else ():
        choose_tab(page, tab)
        assert_drawn_inside(page)


def test_the_run_page_shows_its_config_and_model_summary_on_demand(page, app, pair):
    run = pair["runs"][0]
    screenshots.open_page(page, app, "run", pair["query"])
    main = page.get_by_test_id("stMain")
    expect(main.get_by_test_id("stText")).to_have_count(0)  # drawn once its tab is chosen
    choose_tab(page, "Config and model")
    expect(main.get_by_test_id("stText")).to_contain_text(f"Total params: {run.total_params:,}")
    expect(main.get_by_test_id("stDataFrame").filter(has_text="width")).to_be_visible()
    assert "tab=config-and-model" in page.url


def test_every_chart_has_the_short_toolbar(page, app, pair):
    """Save as PNG, zoom, pan and reset on every chart; plotly's other buttons and logo are left out."""
    for name, charts in (("run", 4), ("compare", 4), ("live", 2)):  # the first tab's, on the Run and Compare pages
        screenshots.open_page(page, app, name, pair["query"])
        toolbars = page.evaluate("""() => [...document.querySelectorAll('.js-plotly-plot')].map(plot =>
            [...plot.querySelectorAll('.modebar-btn')].map(b => b.getAttribute('data-title')))""")
        assert len(toolbars) >= charts, (name, toolbars)
        assert all(titles == ["Download plot as a PNG", "Zoom", "Pan", "Reset axes"] for titles in toolbars), toolbars


# ---------------------------------------------------------------- defects 1 and 2: cell clicks, selection


def test_clicking_confusion_cells_opens_the_gallery_on_that_pair(page, app, pair):
    dump, names = pair["dumps"][0], pair["runs"][0].class_names
    n = len(names)
    counts = np.bincount(dump["label"] * n + dump["pred"], minlength=n * n)
    off_diagonal = [k for k in np.argsort(-counts, kind="stable") if k // n != k % n and counts[k]]
    cells = [off_diagonal[0], off_diagonal[len(off_diagonal) // 2], off_diagonal[-1]]
    open_run_page(page, app, pair)
    choose_tab(page, "Predictions")  # and back from the gallery, the URL's tab= opens it again
    for k in cells:
        true, pred = names[k // n], names[k % n]
        plot, points = confusion_points(page)
        screenshots.click_chart_point(page, plot, points.nth(int(k)), f"true {true}, predicted {pred}")
        expect(page.locator("h1")).to_have_text(f"Misclassifications · {pair['names'][0]}")
        expect(metric(page, "Matching images")).to_have_text(str(counts[k]))
        assert chips(page, "True class") == [true] and chips(page, "Predicted class") == [pred]
        assert_selection_kept(page, pair)
        screenshots.after_rerun(page, page.go_back)
        expect(page.locator("h1")).to_have_text(f"Run {pair['names'][0]}")
        assert_selection_kept(page, pair)


def test_the_two_run_selection_survives_every_way_between_pages(page, app, pair):
    screenshots.open_page(page, app, "runs", pair["query"])
    assert_selection_kept(page, pair)
    nav = page.get_by_test_id("stSidebarNav")
    screenshots.after_rerun(page, nav.get_by_role("link", name="Run", exact=True).click)
    expect(page.locator("h1")).to_have_text(f"Run {pair['names'][0]}")
    assert_selection_kept(page, pair)

    choose_tab(page, "Predictions")
    screenshots.after_rerun(page, page.get_by_role("button", name="Show these images").click)
    expect(page.locator("h1")).to_contain_text("Misclassifications")
    assert_selection_kept(page, pair)

    screenshots.after_rerun(page, page.go_back)
    expect(page.locator("h1")).to_have_text(f"Run {pair['names'][0]}")
    assert_selection_kept(page, pair)

    screenshots.after_rerun(page, nav.get_by_role("link", name="Runs", exact=True).click)
    screenshots.after_rerun(page, page.get_by_role("link", name="Compare the selected runs").click)
    expect(page.locator("h1")).to_have_text("Compare runs")
    choose_tab(page, "Predictions")
    expect(page.get_by_text("A right, B wrong").first).to_be_visible()
    assert_selection_kept(page, pair)

    screenshots.after_rerun(page, nav.get_by_role("link", name="Live", exact=True).click)
    assert_selection_kept(page, pair)
    screenshots.after_rerun(page, nav.get_by_role("link", name="Runs", exact=True).click)
    screenshots.after_rerun(page, page.get_by_role("link", name="Open the selected run").click)
    expect(page.locator("h1")).to_have_text(f"Run {pair['names'][0]}")
    assert_selection_kept(page, pair)


# ---------------------------------------------------------------- defect 3: the range test chart


def test_the_range_test_chart_draws_the_lr_used_inside_the_plot(page, app, pair):
    open_run_page(page, app, pair)
    fig = figure(page, "LR range test")
    used = pair["runs"][0].lr_finder["used_lr"]
    marks = [t for t in fig["data"] if str(t.get("name", "")).startswith("LR used")]
    assert marks, [t.get("name") for t in fig["data"]]
    assert all(np.allclose(mark["x"], used) for mark in marks)
    low, high = fig["full"]["xaxis"]["range"]  # a log axis holds its range as exponents
    assert low <= np.log10(used) <= high
    assert fig["full"]["xaxis"]["title"]["text"] and fig["full"]["yaxis"]["title"]["text"]
    assert_drawn_inside(page)


# ---------------------------------------------------------------- defect 4: names, not ids


def test_runs_are_named_by_their_names_everywhere(page, app, pair):
    open_run_page(page, app, pair)
    sidebar = page.get_by_test_id("stSidebar")
    assert sorted(chips(page, "Selected runs", sidebar)) == sorted(pair["names"])
    shown = widget(sidebar, "stSelectbox", "Run shown").locator("input").input_value()
    assert pair["names"][0] in shown and pair["ids"][0] not in shown
    screenshots.open_page(page, app, "compare", pair["query"])
    for trace in figure(page, "Test accuracy")["data"]:
        assert trace["name"] in pair["names"]


# ---------------------------------------------------------------- defect 5: confusion matrices that read


def contrast(page, plot) -> float:
    """The lowest contrast ratio between a cell's number and the cell's colour."""
    return page.evaluate("""el => {
      const lum = c => { const v = c.match(/[\\d.]+/g).slice(0, 3).map(x => { x /= 255;
        return x <= 0.03928 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * v[0] + 0.7152 * v[1] + 0.0722 * v[2]; };
      const cells = [...el.querySelectorAll('.scatterlayer .point')];
      const texts = [...el.querySelectorAll('.scatterlayer .textpoint text')];
      let worst = 99;
      cells.forEach((cell, i) => {
        const a = lum(getComputedStyle(cell).fill), b = lum(getComputedStyle(texts[i]).fill);
        worst = Math.min(worst, (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)); });
      return worst; }""", plot.element_handle())


def test_confusion_matrices_are_readable_and_say_their_units(page, app, pair):
    open_run_page(page, app, pair)
    choose_tab(page, "Predictions")
    plot, _ = confusion_points(page)
    assert contrast(page, plot) >= 3.0
    fig = figure(page, "Confusion matrix")
    assert "images" in fig["data"][0]["marker"]["colorbar"]["title"]["text"]
    screenshots.after_rerun(page, page.get_by_text("Row-normalised").click)
    fig = figure(page, "Confusion matrix")
    bar = fig["data"][0]["marker"]["colorbar"]
    assert "%" in bar["title"]["text"] and bar.get("ticksuffix") == "%"
    values = np.asarray(fig["data"][0]["marker"]["color"], float)
    assert values.max() > 1.0  # percentages, as the cells say, not fractions
    assert contrast(page, confusion_points(page)[0]) >= 3.0

    screenshots.open_page(page, app, "compare", pair["query"])
    choose_tab(page, "Predictions")
    fig = figure(page, "Confusion matrix, B − A")
    bar_title = fig["data"][0]["marker"]["colorbar"]["title"]["text"]
    assert "B better" in bar_title, bar_title
    a, b = pair["dumps"]
    n = len(pair["runs"][0].class_names)
    diff = (np.bincount(b["label"] * n + b["pred"], minlength=n * n)
            - np.bincount(a["label"] * n + a["pred"], minlength=n * n)).reshape(n, n)
    colour = np.asarray(fig["data"][0]["marker"]["color"], float).reshape(n, n)
    diagonal = np.eye(n, dtype=bool)
    # green (positive) = B better: more right on the diagonal, fewer mistakes off it
    assert (np.sign(colour[diagonal]) == np.sign(diff[diagonal])).all()
    assert (np.sign(colour[~diagonal]) == -np.sign(diff[~diagonal])).all()
    assert contrast(page, page.locator(".js-plotly-plot").filter(has_text="Confusion matrix, B − A").first) >= 3.0


# ---------------------------------------------------------------- defect 7: the runs table


def test_the_runs_table_fits_the_window_with_a_curve_and_no_empty_errors(page, app, pair):
    screenshots.open_page(page, app, "runs", pair["query"])
    grid = page.get_by_test_id("stDataFrame")
    expect(grid).to_be_visible()
    scroll = page.evaluate("() => { const s = document.querySelector('.dvn-scroller'); "
                           "return [s.scrollWidth, s.clientWidth]; }")
    assert scroll[0] <= scroll[1] + 1, f"the table is {scroll[0]} px wide in a {scroll[1]} px frame"
    expect(grid.locator("table th").first).to_be_attached()  # the grid's accessible table (drawn on a canvas)
    headers = grid.locator("table th").all_text_contents()
    assert any("curve" in h for h in headers), headers
    assert "error" not in headers  # no run failed
    cells = grid.locator("table td").all_text_contents()
    assert "None" not in cells and pair["names"][0] in cells


# ---------------------------------------------------------------- defect 8: the gallery


def gallery_captions(page) -> list[str]:
    return page.get_by_test_id("stMain").get_by_test_id("stCaptionContainer").filter(has_text="#").all_inner_texts()


def test_gallery_filters_sorts_pages_and_enlarges(page, app, pair):
    dump, names = pair["dumps"][0], pair["runs"][0].class_names
    wrong = dump["label"] != dump["pred"]
    screenshots.open_page(page, app, "misclassified", pair["query"])
    expect(metric(page, "Matching images")).to_have_text(str(int(wrong.sum())))

    # sort by top losses: the captions show the loss, in falling order, and are not cut off
    losses = [float(c.split("loss ")[1].split()[0]) for c in gallery_captions(page)]
    assert losses and losses == sorted(losses, reverse=True)
    assert losses[0] == pytest.approx(float(dump["loss"][wrong].max()), abs=0.01)
    cut = page.evaluate("() => [...document.querySelectorAll('[data-testid=stMain] *')].filter(e => "
                        "e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).textOverflow === 'ellipsis')"
                        ".map(e => e.innerText)")
    assert not cut, cut

    # the Grad-CAM link sits above the images
    first_box = page.get_by_test_id("stMain").get_by_test_id("stCheckbox").first
    screenshots.after_rerun(page, first_box.click)
    link = page.get_by_test_id("stMain").get_by_role("link", name="Grad-CAM", exact=False)
    expect(link).to_be_visible()
    assert link.bounding_box()["y"] < page.get_by_test_id("stImage").first.bounding_box()["y"]

    for sort, key, descending in (("confidence, high first", "confidence", True),
                                  ("confidence, low first", "confidence", False),
                                  ("test index", "index", False), ("top losses", "loss", True)):
        choose(page, "Sort by", sort)
        shown = [int(c.split(":")[0].lstrip("#")) for c in gallery_captions(page)]
        rows = np.flatnonzero(wrong)
        order = rows[np.argsort(-dump[key][rows] if descending else dump[key][rows], kind="stable")]
        assert shown == [int(i) for i in dump["index"][order][:len(shown)]], sort

    # true and predicted class filters, then the confidence slider
    common_true = int(np.bincount(dump["label"][wrong]).argmax())
    add_chip(page, "True class", names[common_true])
    expect(metric(page, "Matching images")).to_have_text(str(int(np.sum(wrong & (dump["label"] == common_true)))))
    common_pred = int(np.bincount(dump["pred"][wrong & (dump["label"] == common_true)]).argmax())
    add_chip(page, "Predicted class", names[common_pred])
    pair_mask = wrong & (dump["label"] == common_true) & (dump["pred"] == common_pred)
    expect(metric(page, "Matching images")).to_have_text(str(int(pair_mask.sum())))
    clear_chips(page, "True class")
    clear_chips(page, "Predicted class")
    thumb = widget(page, "stSlider", "Confidence").locator("input[type=range]").first
    thumb.focus()
    screenshots.after_rerun(page, lambda: thumb.press("PageUp"))  # the low end up by a tenth of the range
    low = float(thumb.input_value())
    assert low > 0
    expect(metric(page, "Matching images")).to_have_text(str(int(np.sum(wrong & (dump["confidence"] >= low)))))

    # paging: 12 per page, the second page holds the next 12 images
    screenshots.after_rerun(page, lambda: thumb.press("Home"))
    choose(page, "Per page", "12")
    first = gallery_captions(page)
    assert len(first) == min(12, int(wrong.sum()))
    if wrong.sum() > 12:
        screenshots.after_rerun(page, page.get_by_test_id("stPaginationNext").click)
        second = gallery_captions(page)
        assert second and not set(second) & set(first)

    # the enlarge dialog: the image, its numbers and its probabilities
    zoom = page.get_by_test_id("stMain").get_by_role("button").filter(has_text="zoom_in").first
    screenshots.after_rerun(page, zoom.click)
    dialog = page.get_by_role("dialog")
    expect(dialog).to_contain_text("true")
    probs = figure(page, "Class probabilities")
    assert len(probs["data"][0]["x"]) == len(names)
    assert sum(probs["data"][0]["x"]) == pytest.approx(100, abs=0.5)


# ---------------------------------------------------------------- defect 9: Grad-CAM


def test_grad_cam_for_every_method_and_layer_and_bad_indices(page, app, pair):
    screenshots.open_page(page, app, "grad_cam", pair["query"])
    field = page.get_by_test_id("stTextInput").locator("input")
    count = len(pair["dumps"][0]["index"])
    for bad in ("-1", str(count)):
        field.fill(f"0, {bad}")
        screenshots.after_rerun(page, lambda: field.press("Enter"))
        expect(page.get_by_test_id("stAlertContentError")).to_contain_text(f"0 to {count - 1}")
        assert page.get_by_test_id("stImage").count() == 0
    field.fill("0, 1")
    screenshots.after_rerun(page, lambda: field.press("Enter"))
    compute = page.get_by_role("button", name="Compute Grad-CAM")
    for method, layer in [(m, "layer3") for m in ("GradCAM", "GradCAM++", "EigenCAM", "LayerCAM", "XGradCAM",
                                                   "HiResCAM")] + [("GradCAM", f"layer{k}") for k in (1, 2, 4)]:
        choose(page, "Method", method)
        choose(page, "Target layer", layer)
        screenshots.after_rerun(page, compute.click)
        expect(page.get_by_test_id("stImage")).to_have_count(4)
        expect(page.get_by_test_id("stMain").get_by_text(f"{method}, {layer}").first).to_be_visible()


# ---------------------------------------------------------------- defect 10: compare


def test_compare_two_runs(page, app, pair):
    screenshots.open_page(page, app, "compare", pair["query"])
    for title in ("Test accuracy", "Test loss", "Train accuracy", "Train loss"):
        fig = figure(page, title)
        assert sorted(t["name"] for t in fig["data"]) == sorted(pair["names"])
        assert fig["full"]["xaxis"]["title"]["text"] and fig["full"]["yaxis"]["title"]["text"]
    choose_tab(page, "Predictions")
    fig = figure(page, "Accuracy per class")
    values = np.concatenate([np.asarray(t["y"], float) for t in fig["data"]])
    low, high = fig["full"]["yaxis"]["range"]
    assert low <= np.nanmin(values) and high >= np.nanmax(values)
    assert low >= np.nanmin(values) - 10 and high <= np.nanmax(values) + 10  # zoomed to the data, not 0-100
    a, b = pair["dumps"]
    a_only = np.sum((a["pred"] == a["label"]) & (b["pred"] != b["label"]))
    b_only = np.sum((b["pred"] == b["label"]) & (a["pred"] != a["label"]))
    expect(metric(page, "A right, B wrong")).to_have_text(str(int(a_only)))
    expect(metric(page, "B right, A wrong")).to_have_text(str(int(b_only)))
    shown = gallery_captions(page)
    assert len(shown) == min(24, int(a_only))
    for caption in shown:
        index = int(caption.split(":")[0].lstrip("#"))
        row = int(np.flatnonzero(a["index"] == index)[0])
        assert a["pred"][row] == a["label"][row] and b["pred"][row] != b["label"][row]

    # The config differences name the max LR each run used. Waited for in that table's own cells (its
    # accessible table: the grid draws on a canvas); the page's tables fill in one by one on a busy machine.
    choose_tab(page, "Key figures and config")
    config = page.get_by_test_id("stMain").get_by_test_id("stDataFrame").filter(has_text="max LR")
    expect(config.locator("table th, table td").filter(has_text="max LR").first).to_be_attached()

    choose_tab(page, "Calibration")
    fig = figure(page, "Reliability diagram")  # calibration: each run's line beside the diagonal
    assert sorted(t["name"] for t in fig["data"][1:]) == sorted(pair["names"])
    ece = page.get_by_test_id("stMain").get_by_test_id("stDataFrame").filter(has_text="ECE, final epoch")
    expect(ece).to_be_visible()
    assert_drawn_inside(page)


# ---------------------------------------------------------------- defects 9-11 on odd runs folders


@pytest.fixture(scope="module")
def odd_runs(browser_runs, tmp_path_factory) -> dict:
    """Copies of the fixture runs: twins with the same names, one whose config claims another width,
    and one on another dataset."""
    root = tmp_path_factory.mktemp("odd-runs")
    originals = sorted(runs.list_runs(browser_runs), key=lambda run: run.name)
    made = {}
    for label, source in (("twin", originals[0]), ("wide", originals[0]), ("other", originals[1])):
        target = root / f"{source.id}-{label}"
        shutil.copytree(source.path, target)
        made[label] = target.name
    config = json.loads((root / made["wide"] / runs.CONFIG_JSON).read_text())
    (root / made["wide"] / runs.CONFIG_JSON).write_text(json.dumps({**config, "width": 16}))
    dataset = json.loads((root / made["other"] / runs.DATASET_JSON).read_text())
    (root / made["other"] / runs.DATASET_JSON).write_text(json.dumps({**dataset, "fingerprint": "0" * 16}))
    shutil.copytree(originals[0].path, root / originals[0].id)
    made["original"] = originals[0].id
    with screenshots.dashboard(root) as url:
        yield {"url": url, "ids": made, "name": originals[0].name}


def test_a_checkpoint_of_another_width_gives_a_short_message(page, odd_runs):
    run_id = odd_runs["ids"]["wide"]
    screenshots.open_page(page, odd_runs["url"], "grad_cam", f"runs={run_id}&run={run_id}")
    field = page.get_by_test_id("stTextInput").locator("input")
    field.fill("0, 1")
    screenshots.after_rerun(page, lambda: field.press("Enter"))
    screenshots.after_rerun(page, page.get_by_role("button", name="Compute Grad-CAM").click)
    error = page.get_by_test_id("stAlertContentError")
    expect(error).to_contain_text("width")
    assert error.bounding_box()["height"] < 150


def test_twins_get_an_id_suffix_and_other_datasets_are_set_aside(page, odd_runs):
    ids = odd_runs["ids"]
    query = "&".join(f"runs={ids[k]}" for k in ("original", "twin", "other"))
    screenshots.open_page(page, odd_runs["url"], "compare", query)
    labels = chips(page, "Selected runs", page.get_by_test_id("stSidebar"))
    twins = [label for label in labels if label.startswith(odd_runs["name"])]
    assert len(twins) == 2 and twins[0] != twins[1], labels
    expect(page.get_by_test_id("stAlertContentWarning").filter(has_text="another dataset")).to_be_visible()
    choose_tab(page, "Predictions")
    expect(metric(page, "A right, B wrong")).to_have_text("0")  # the twins agree on every image


def test_unknown_run_ids_in_the_url_are_named(page, app, pair):
    screenshots.open_page(page, app, "run", f"runs={pair['ids'][0]}&runs=no-such-run&run=no-such-run")
    expect(page.get_by_test_id("stAlertContentWarning").filter(has_text="no-such-run")).to_be_visible()


def test_a_missing_runs_folder_is_an_error_not_an_empty_list(page, tmp_path):
    missing = tmp_path / "typo"
    with screenshots.dashboard(missing) as url:
        screenshots.open_page(page, url, "runs")
        expect(page.get_by_test_id("stAlertContentError")).to_contain_text("does not exist")
        expect(page.get_by_text("No runs")).to_have_count(0)


# ---------------------------------------------------------------- lost actions on a busy page


def test_a_lost_click_is_done_again_and_a_click_that_never_takes_fails_fast(page, app, pair):
    """The suite's own waits: a click lost on a busy page is repeated (once it registers, the run it
    starts is waited for); an action that never starts a run fails within seconds, saying what was
    done and what the page was doing, instead of hanging on a wait for a run that never comes."""
    open_run_page(page, app, pair)
    link = page.get_by_test_id("stSidebarNav").get_by_role("link", name="Runs", exact=True)
    calls = []

    def lost_then_clicked():
        calls.append(1)
        if len(calls) > 1:  # the first click is "lost": nothing is pressed
            link.click()

    screenshots.after_rerun(page, lost_then_clicked, what="open Runs", registered_s=2)
    assert len(calls) == 2
    expect(page.locator("h1")).to_have_text("Runs")

    start = time.monotonic()
    with pytest.raises(screenshots.ActionLost, match=r"hover the title: .*asked for no script run within 1 s, 3 tries"):
        screenshots.after_rerun(page, lambda: page.locator("h1").hover(), what="hover the title", registered_s=1)
    assert time.monotonic() - start < 15
