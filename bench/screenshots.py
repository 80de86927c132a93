"""Screenshots of every dashboard page in a real browser (Playwright + system Chromium).

    .venv/bin/python bench/screenshots.py RUNS_DIR [OUT_DIR]     # OUT_DIR defaults to docs/screenshots

Also used by tests/test_browser.py. Selects the newest run and the newest other run on its dataset,
so the Compare page has content."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
PAGES = ("runs", "run", "misclassified", "grad_cam", "compare", "live")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def dashboard(runs_dir: Path, timeout: float = 60) -> Iterator[str]:
    """A `streamlit run` server on a free local port; yields its URL and stops it afterwards."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--", "--runs-dir", str(runs_dir)]
    process = subprocess.Popen(command, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                    if reply.read().strip() == b"ok":
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                raise RuntimeError(f"streamlit did not come up on {url}:\n{output}")
            time.sleep(0.3)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()


def launch(playwright):
    return playwright.chromium.launch(executable_path=str(CHROMIUM), args=[
        "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-dev-shm-usage",
        "--disable-extensions", "--no-first-run"])


def wait_until_idle(page, timeout_ms: int = 60_000) -> None:
    """A page is drawn when the app's script has stopped running (and has started at least once)."""
    page.wait_for_selector("[data-testid='stApp'][data-test-script-state='notRunning']", timeout=timeout_ms)
    page.wait_for_timeout(800)  # charts and images settle after the script ends


def open_page(page, url: str, name: str, query: str) -> None:
    path = "" if name == "runs" else name
    page.goto(f"{url}/{path}?{query}")
    wait_until_idle(page)


def take(runs_dir: Path, out_dir: Path, run_ids: list[str], pages=PAGES) -> dict[str, Path]:
    """Open each page with `run_ids` selected (the first in focus) and save a full-page PNG."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    query = "&".join(f"runs={r}" for r in run_ids) + (f"&run={run_ids[0]}" if run_ids else "")
    shots = {}
    with dashboard(runs_dir) as url, sync_playwright() as playwright:
        browser = launch(playwright)
        page = browser.new_page(viewport={"width": 1400, "height": 2200})  # the app scrolls inside itself
        for name in pages:
            open_page(page, url, name, query)
            if name == "grad_cam":
                page.get_by_test_id("stTextInputField").fill("0, 1, 2, 3, 4, 5")
                page.keyboard.press("Enter")
                wait_until_idle(page)
                page.get_by_role("button", name="Compute Grad-CAM").click()
                page.wait_for_timeout(300)
                wait_until_idle(page)
            shots[name] = out_dir / f"{name}.png"
            page.screenshot(path=str(shots[name]), full_page=True)
        browser.close()
    return shots


if __name__ == "__main__":
    sys.path.insert(0, str(PROJECT_ROOT))
    from engine.runs import list_runs

    root = Path(sys.argv[1]).resolve()
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else PROJECT_ROOT / "docs" / "screenshots"
    found = list_runs(root)  # the newest run, and the newest other one on the same dataset (for Compare)
    fingerprint = (found[0].dataset or {}).get("fingerprint")
    twins = [run.id for run in found[1:] if (run.dataset or {}).get("fingerprint") == fingerprint]
    ids = [found[0].id, *twins[:1]]
    for page_name, path in take(root, out, ids).items():
        print(f"{page_name:14s} {path}")
