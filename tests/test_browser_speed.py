"""Time to a rendered page in Chromium for every page, cold and warm, over 20 runs made through
the engine's writer (bench/dashboard_bench.py). Records the numbers in
tests/artifacts/page_timings.json for `python -m bench.dashboard_bench --report`; the goals
live in the bench, not here, so a slow shared machine does not fail the suite."""

from __future__ import annotations

import json

import pytest

from bench import dashboard_bench, screenshots
from tests.conftest import PROJECT_ROOT

pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.skipif(not screenshots.CHROMIUM.exists(), reason="/usr/bin/chromium is not installed")


def test_every_page_is_timed_cold_and_warm_with_20_runs(tmp_path):
    root = tmp_path / "runs"
    ids = dashboard_bench.build_runs(root, 20, images=2000, epochs=10)
    timings = dashboard_bench.browser_timings(root, [ids[-1], ids[-2]], repeats=2, cold_repeats=1)
    assert set(timings["cold_s"]) == set(timings["warm_s"]) == set(screenshots.PAGES)
    for times in (*timings["cold_s"].values(), *timings["warm_s"].values()):  # drawn comes after the script's end
        assert 0 < times["script"] <= times["drawn"]
    out = PROJECT_ROOT / "tests" / "artifacts" / "page_timings.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({**timings, "runs": len(ids)}, indent=2) + "\n")
    print("\n" + dashboard_bench.report(timings))
