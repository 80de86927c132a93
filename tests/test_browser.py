"""End to end in a real browser: `streamlit run` on the fixture runs, driven by Playwright.

Skips when /usr/bin/chromium is absent (install it with `apt-get install chromium`)."""

import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(PROJECT_ROOT / "bench"))
screenshots = pytest.importorskip("screenshots")
pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not screenshots.CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")

ARTIFACTS = PROJECT_ROOT / "tests" / "artifacts"  # git-ignored
ARTIFACTS.mkdir(parents=True, exist_ok=True)


def test_pages_render_in_a_browser(runs_dir):
    from playwright.sync_api import expect, sync_playwright

    from engine.runs import list_runs

    ids = sorted(run.id for run in list_runs(runs_dir))
    query = f"runs={ids[0]}&runs={ids[1]}&run={ids[0]}"
    with screenshots.dashboard(runs_dir) as url, sync_playwright() as playwright:
        browser = screenshots.launch(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        errors = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))

        screenshots.open_page(page, url, "runs", query)
        expect(page.get_by_role("heading", name="Runs")).to_be_visible(timeout=30_000)
        expect(page.locator("[data-testid='stDataFrame']")).to_have_count(1, timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "runs.png"), full_page=True)

        screenshots.open_page(page, url, "misclassified", query)
        expect(page.get_by_text("Matching images")).to_be_visible(timeout=30_000)
        expect(page.locator("[data-testid='stImage'] img").first).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "misclassified.png"), full_page=True)

        screenshots.open_page(page, url, "compare", query)
        expect(page.get_by_text("A right, B wrong").first).to_be_visible(timeout=30_000)
        expect(page.locator(".js-plotly-plot").nth(3)).to_be_visible(timeout=30_000)
        page.screenshot(path=str(ARTIFACTS / "compare.png"), full_page=True)

        assert page.locator("[data-testid='stException']").count() == 0
        assert not errors, errors
        browser.close()

