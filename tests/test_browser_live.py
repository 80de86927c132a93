"""The Live page in a real browser while a real tiny run trains in another process, from its LR
range test through epoch 1 (see tests/test_browser.py for the rest of the suite)."""

from __future__ import annotations

import re
import signal
import subprocess
import sys

import pytest

from bench import screenshots
from engine import runs
from tests.conftest import PROJECT_ROOT, SAMPLE
from tests.runs_for_tests import wait_for
from tests.test_browser import figure
from tests.test_reliability import steps_written

pytest.importorskip("playwright.sync_api")
from playwright.sync_api import expect, sync_playwright  # noqa: E402

pytestmark = [pytest.mark.skipif(not screenshots.CHROMIUM.exists(), reason="/usr/bin/chromium is not installed"),
              pytest.mark.skipif(not SAMPLE.exists(), reason=f"{SAMPLE} is absent")]


def test_live_page_follows_a_run_from_its_range_test_through_epoch_one(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    command = [sys.executable, "-m", "engine", "train", "--dataset", f"npz:{SAMPLE}", "--name", "live",
               "--runs-dir", str(root), "--width", "8", "--epochs", "2", "--batch-size", "16",
               "--train-subset", "2048", "--test-subset", "128", "--lr-finder-iters", "120",
               "--step-log-every", "4", "--threads", "1"]
    with screenshots.dashboard(root) as url, sync_playwright() as playwright:
        browser = screenshots.launch(playwright)
        page = screenshots.new_page(browser, 1400, 2000)
        screenshots.open_page(page, url, "live")
        expect(page.get_by_text("No run is training now")).to_be_visible()
        trainer = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            # the range test: the page says so before any training step is logged, counts its steps
            # and draws the loss against the learning rate so far, inside a log axis. The trainer is
            # frozen once range-test rows are on disk, so the page is checked mid-test however slow it is.
            wait_for(lambda: steps_written(root, runs.LR_FINDER_STEPS_JSONL) > 0, proc=trainer,
                     what="range-test rows on disk")
            trainer.send_signal(signal.SIGSTOP)
            expect(page.get_by_text("LR range test under way")).to_be_visible(timeout=180_000)
            progress = page.get_by_test_id("stProgress")
            expect(progress).to_contain_text(re.compile(r"LR range test: step [1-9]\d* of 120"), timeout=180_000)
            assert int(progress.get_by_role("progressbar").get_attribute("aria-valuenow")) > 0
            sweep = figure(page, "LR range test so far", points=True)
            x_axis, y_axis = sweep["full"]["xaxis"], sweep["full"]["yaxis"]
            assert x_axis["type"] == "log" and "learning rate" in x_axis["title"]["text"]
            assert "loss" in y_axis["title"]["text"]
            points = [(x, y) for t in sweep["data"] for x, y in zip(t["x"], t["y"]) if y is not None]
            assert points and all(t.get("name") for t in sweep["data"])
            assert all(10 ** x_axis["range"][0] <= x <= 10 ** x_axis["range"][1] for x, _ in points)
            assert all(min(y_axis["range"]) <= y <= max(y_axis["range"]) for _, y in points)
            assert min(x for x, _ in points) == pytest.approx(1e-6)  # the sweep starts at lr_finder_start
            trainer.send_signal(signal.SIGCONT)
            # epoch 1 under way: the bar has moved and says how many steps of the planned total are done
            expect(progress).to_contain_text(re.compile(r"step [1-9]\d* of \d+ · epoch 0 of 2"), timeout=180_000)
            total = int(re.search(r"of (\d+) ·", progress.inner_text())[1])
            assert int(progress.get_by_role("progressbar").get_attribute("aria-valuenow")) > 0
            loss = figure(page, "Loss so far", points=True)
            assert loss["full"]["xaxis"]["range"] == [0, total]
            assert "step" in loss["full"]["xaxis"]["title"]["text"]
            assert loss["data"] and all(trace.get("name") for trace in loss["data"])
            # after epoch 1: the axis keeps its range, the epoch's points are drawn inside it
            expect(progress).to_contain_text("epoch 1 of 2", timeout=300_000)
            loss = figure(page, "Loss so far", points=True, trace="end of epoch")
            assert loss["full"]["xaxis"]["range"] == [0, total]
            ends = [t for t in loss["data"] if "end of epoch" in t["name"]]
            assert ends and all(0 < x <= total for t in ends for x in t["x"])
            assert not page.get_by_test_id("stException").count()
            screenshots.full_screenshot(page, PROJECT_ROOT / "tests" / "artifacts" / "live_training.png")
        finally:
            trainer.send_signal(signal.SIGCONT)
            trainer.send_signal(signal.SIGTERM)
            trainer.wait(timeout=60)
            browser.close()
