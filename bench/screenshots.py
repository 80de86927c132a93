"""Screenshots of every dashboard page in a real browser (Playwright + system Chromium).

    .venv/bin/python -m bench.screenshots RUNS_DIR [OUT_DIR]     # OUT_DIR defaults to docs/screenshots

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
PAGES = ("runs", "run", "misclassified", "grad_cam", "dynamics", "compare", "live")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def dashboard(runs_dir: Path, timeout: float = 60, project: Path = PROJECT_ROOT) -> Iterator[str]:
    """A `streamlit run` server on a free local port; yields its URL and stops it afterwards.
    `project`: another checkout of the project to serve (its packages come first on the path)."""
    port = free_port()
    command = [sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless", "true",
               "--server.address", "127.0.0.1", "--server.port", str(port), "--browser.gatherUsageStats", "false",
               "--server.fileWatcherType", "none", "--", "--runs-dir", str(runs_dir)]
    path = {} if project == PROJECT_ROOT else {"PYTHONPATH": os.pathsep.join(
        [str(project), *filter(None, [os.environ.get("PYTHONPATH")])])}
    process = subprocess.Popen(command, cwd=project, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", **path})
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


# Counts script runs two ways, because each alone can miss one. The server's ForwardMsg carrying
# `script_finished` (field 6, a varint; 2 means "stopped early for a rerun", another run follows) is
# counted as it arrives, so no run is missed; but it arrives before the page has drawn the run. The
# app's `data-test-script-state` leaving "running" shows the run drawn, but on a busy machine React
# may draw "running" and "notRunning" in one commit, and that run leaves no trace in the DOM. So a
# run is drawn when its finish message has come and then either the DOM shows a run ending, or the
# page stays idle and drawn for a few frames in a row.
# It also counts the tab's own requests for a run (a BackMsg holding `rerun_script`, field 11): a
# click, key or navigation that must start a run has registered once the tab has asked for one,
# which is how an action lost on a busy page is told apart from a slow run (see `timed_rerun`).
# `__doc` names the document, so counts from before a navigation are not compared with after it.
# The page also times itself (`__arm`): from the input that asks for a run (the first pointer or key
# press after arming, as the page received it; a new document: its navigation's start) to the first
# frame in which the run had finished (`script`) and in which it was drawn (`drawn`, the frame that
# began the idle streak `__settled` ends on). That is the wait a person has between pressing and
# seeing, without the test driver's own time to find, scroll to and press the target.
COUNT_RUNS = """
window.__runsFinished = 0; window.__runsEndedInDom = 0; window.__endedInDomAtFinish = 0;
window.__rerunsAsked = 0; window.__doc = Math.random();
const topField = (bytes, wanted) => {  // a top-level protobuf field: its varint, or its length; null if absent
  let at = 0;
  const varint = () => { let value = 0, scale = 1;
    while (at < bytes.length) { const b = bytes[at++]; value += (b & 127) * scale; scale *= 128;
                                if (b < 128) return value; }
    return null; };
  while (at < bytes.length) {
    const tag = varint(); if (tag === null) return null;
    const field = Math.floor(tag / 8), wire = tag % 8;
    if (wire === 0) { const value = varint(); if (field === wanted) return value; }
    else if (wire === 2) { const length = varint(); if (length === null) return null;
                           if (field === wanted) return length; at += length; }
    else if (wire === 1) at += 8; else if (wire === 5) at += 4; else return null;
  }
  return null;
};
const asBytes = data => data instanceof ArrayBuffer ? new Uint8Array(data)
  : ArrayBuffer.isView(data) ? new Uint8Array(data.buffer, data.byteOffset, data.byteLength) : null;
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', event => {
      if (!(event.data instanceof ArrayBuffer)) return;
      const status = topField(new Uint8Array(event.data), 6);
      if (status !== null && status !== 2) {
        window.__runsFinished += 1; window.__endedInDomAtFinish = window.__runsEndedInDom;
      }
    });
  }
  send(data) {
    const bytes = asBytes(data);
    if (bytes && topField(bytes, 11) !== null) window.__rerunsAsked += 1;
    return super.send(data);
  }
};
new MutationObserver(records => {
  for (const r of records) if (r.oldValue === 'running') window.__runsEndedInDom += 1;
}).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                      attributeFilter: ['data-test-script-state']});
const appState = () => document.querySelector("[data-testid='stApp']")?.getAttribute('data-test-script-state');
window.__scriptDone = n => window.__runsFinished > n && appState() === 'notRunning';
// Done (checked once a frame; `streak` holds this check's idle frames): the run after the n-th has
// finished and is drawn, the app is idle, and what lies in the window is drawn (Streamlit draws
// elements lazily as they scroll into view, showing a skeleton until then; plotly charts stay hidden
// until plotted; an image still loading counts as not drawn, a broken one as drawn, since nothing
// more will come of it).
window.__settled = (n, streak) => {
  const inView = e => { const r = e.getBoundingClientRect();
                        return r.width > 0 && r.bottom > 0 && r.top < window.innerHeight; };
  const idle = window.__scriptDone(n)
    && ![...document.querySelectorAll("[data-testid='stSkeleton']")].some(inView)
    && ![...document.querySelectorAll('.js-plotly-plot')].some(
         e => inView(e) && (e.style.visibility === 'hidden' || !e._fullLayout))
    && ![...document.images].some(e => inView(e) && !e.complete);
  if (streak.finished !== window.__runsFinished) { streak.finished = window.__runsFinished; streak.frames = 0; }
  if (idle && !streak.frames) streak.since = performance.now();
  streak.frames = idle ? streak.frames + 1 : 0;
  return idle && (window.__runsEndedInDom > window.__endedInDomAtFinish || streak.frames >= 5);
};
window.__inputAt = null;
for (const type of ['pointerdown', 'mousedown', 'keydown'])
  window.addEventListener(type, e => { if (window.__inputAt === null) window.__inputAt = e.timeStamp; }, true);
window.__arm = n => {
  const watch = {n, script: null, drawn: null, streak: {frames: 0, since: null}};
  window.__watch = watch;
  const tick = () => {
    if (window.__watch !== watch) return;
    if (watch.script === null && window.__scriptDone(n)) watch.script = performance.now();
    if (watch.script !== null && window.__settled(n, watch.streak)) { watch.drawn = watch.streak.since; return; }
    requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
};
window.__arm(0);
"""
DONE = """n => { if (window.__pollStreak?.n !== n) window.__pollStreak = {n, frames: 0, since: null};
  if (!window.__settled(n, window.__pollStreak)) return false;
  window.__pollStreak = null; return true; }"""
STATE = """() => ({asked: window.__rerunsAsked, finished: window.__runsFinished, endedInDom: window.__runsEndedInDom,
  state: document.querySelector("[data-testid='stApp']")?.getAttribute('data-test-script-state'),
  skeletons: document.querySelectorAll("[data-testid='stSkeleton']").length})"""


def new_page(browser, width: int = 1400, height: int = 1000):
    """A browser tab that counts the app's script runs (see `after_rerun`)."""
    page = browser.new_page(viewport={"width": width, "height": height})
    page.add_init_script(COUNT_RUNS)
    return page


def runs_done(page) -> int:
    """Script runs the server has finished for this tab so far."""
    return int(page.evaluate("() => window.__runsFinished || 0"))


def page_state(page) -> dict:
    """What the tab is doing, for a failure message: runs asked for, finished, seen ending; state."""
    try:
        return page.evaluate(STATE)
    except Exception as error:  # a page mid-navigation cannot be asked; say so rather than hide the failure
        return {"unreadable": str(error)}


class ActionLost(AssertionError):
    """A click, key or navigation that should have started a script run did not, after every try."""


# Seconds within which an action that starts a run has made the tab ask for one. A busy 2-core
# machine answers a click in well under a second; a run can take far longer, and is waited for apart.
REGISTERED_S = 10
# An action registered when the tab asked for a run, or a run finished (a navigation's first run);
# counts are compared with 0 once the action has loaded another document.
REGISTERED = """([asked, finished, doc]) => { const same = window.__doc === doc;
  return (window.__rerunsAsked || 0) > (same ? asked : 0) || (window.__runsFinished || 0) > (same ? finished : 0); }"""


def wait_until_idle(page, timeout_ms: int = 120_000, after: int = 0, what: str = "the page") -> None:
    """A page is drawn when the app's script has stopped running after the `after`-th run ended."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(DONE, arg=after, timeout=timeout_ms)
    except PlaywrightTimeout as error:  # say what the page was doing, for the failure report
        raise AssertionError(f"{what}: no drawn script run after run {after} within {timeout_ms / 1000:.0f} s; "
                             f"page: {page_state(page)}") from error


def timed_rerun(page, action, timeout_ms: int = 120_000, what: str = "", tries: int = 3,
                registered_s: float = REGISTERED_S) -> dict[str, float]:
    """Do `action` (a click, a key, a page load) and wait for the script run it causes. Seconds from
    the press (a new document: its navigation's start) to `script`: the run has finished and the app
    says "notRunning" (Streamlit's own notion of a rendered page); to `drawn`: also everything in the
    window drawn, plotly charts included. Both are the page's own clock (see `__arm`); `wall` is the
    whole call as the test driver saw it, finding and pressing the target included.

    An action can be lost on a busy page (a redraw moves the target between Playwright finding it
    and pressing it): if the tab has asked for no run within `registered_s`, the action is done again,
    up to `tries` times, and then `ActionLost` says what was done and what the page was doing. A
    person would click again too; an action that did register is never repeated (and the time
    counts from the first press)."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    what = what or getattr(action, "__name__", None) or repr(action)
    asked, before, doc = page.evaluate("() => [window.__rerunsAsked || 0, window.__runsFinished || 0, window.__doc]")
    page.evaluate("n => { window.__inputAt = null; window.__arm?.(n); }", before)
    start = time.perf_counter()
    for attempt in range(1, tries + 1):
        try:
            action()
        except PlaywrightTimeout as error:  # its target never became clickable: as good as lost
            if attempt == tries:
                raise ActionLost(f"{what}: {tries} tries, the last: {error}; page: {page_state(page)}") from error
            continue
        try:
            page.wait_for_function(REGISTERED, arg=[asked, before, doc], timeout=registered_s * 1000)
            break
        except PlaywrightTimeout:
            if attempt == tries:
                raise ActionLost(f"{what}: the page asked for no script run within {registered_s:g} s, "
                                 f"{tries} tries; page: {page_state(page)}") from None
    new_document = page.evaluate("() => window.__doc") != doc
    if new_document:
        before = 0  # the action loaded a new document, whose counts start again
    try:
        page.wait_for_function("() => window.__watch?.script != null", timeout=timeout_ms)
    except PlaywrightTimeout as error:
        raise AssertionError(f"{what}: a script run was asked for, but none finished within "
                             f"{timeout_ms / 1000:.0f} s; page: {page_state(page)}") from error
    try:
        page.wait_for_function("() => window.__watch?.drawn != null", timeout=timeout_ms)
    except PlaywrightTimeout as error:
        raise AssertionError(f"{what}: no drawn script run after run {before} within {timeout_ms / 1000:.0f} s; "
                             f"page: {page_state(page)}") from error
    wall = time.perf_counter() - start
    pressed, script, drawn = page.evaluate("() => [window.__inputAt, window.__watch.script, window.__watch.drawn]")
    origin = 0.0 if new_document else pressed
    if origin is None:  # no press reached the page (an action made by script): the driver's clock
        return {"script": wall, "drawn": wall, "wall": wall}
    return {"script": (script - origin) / 1000, "drawn": (drawn - origin) / 1000, "wall": wall}


def after_rerun(page, action, timeout_ms: int = 120_000, what: str = "", tries: int = 3,
                registered_s: float = REGISTERED_S) -> float:
    """Do `action` and wait until the script run it caused has ended and is drawn; seconds taken."""
    return timed_rerun(page, action, timeout_ms, what, tries, registered_s)["drawn"]


def click_chart_point(page, plot, point, hover_text: str, tries: int = 3) -> float:
    """Hover a chart's point until its label shows `hover_text`, then click it and wait for the run
    the click starts. plotly's drag layer takes the pointer, so both go by position; a redraw can
    move the point between hover and click, so each try finds it again. Seconds to the drawn run."""
    from playwright.sync_api import expect

    what = f"click on the chart point {hover_text!r}"
    for attempt in range(1, tries + 1):
        point.scroll_into_view_if_needed()
        box = point.bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(x, y)
        try:  # a lost hover or a lost click is tried again from the start; a slow run is not
            expect(plot.locator(".hoverlayer")).to_contain_text(hover_text, timeout=REGISTERED_S * 1000)
        except AssertionError as error:
            lost = error
        else:
            try:
                return after_rerun(page, lambda x=x, y=y: page.mouse.click(x, y), what=what, tries=1)
            except ActionLost as error:
                lost = error
        if attempt == tries:
            raise ActionLost(f"{what}: lost {tries} times, last: {lost}") from lost
        page.mouse.move(0, 0)  # leave the plot, so the next hover is a fresh one
    raise AssertionError(what)  # not reached: the last try returns or raises


def until(action, effect, what: str, tries: int = 3) -> None:
    """Do a browser action that starts no script run (opening an expander) until `effect(timeout_ms)`
    (an `expect`) holds; the action is done again only while the effect is missing."""
    for attempt in range(1, tries + 1):
        action()
        try:
            effect(REGISTERED_S * 1000)
            return
        except AssertionError as error:
            if attempt == tries:
                raise AssertionError(f"{what}: no effect after {tries} tries of {REGISTERED_S} s: {error}") from error


def sidebar_link(page, name: str):
    """The sidebar's link to an app page by its URL name (the Runs page is the app's root)."""
    return page.get_by_test_id("stSidebarNav").locator(f"a[href$='/{'' if name == 'runs' else name}']")


def page_url(url: str, name: str, query: str = "") -> str:
    return f"{url}/{'' if name == 'runs' else name}?{query}"


def open_page(page, url: str, name: str, query: str = "") -> float:
    """Load a page by URL and wait until it is drawn; the seconds that took."""
    start = time.perf_counter()
    page.goto(page_url(url, name, query))
    wait_until_idle(page)
    return time.perf_counter() - start


def full_screenshot(page, path: Path, settle_ms: int = 0) -> None:
    """The whole page: the app scrolls inside its own container, so grow the window to fit it first.
    `settle_ms`: time for what the taller window newly shows to draw (tables draw on a canvas when
    they come into view, which no page state reports)."""
    height = page.evaluate("() => Math.max(...[...document.querySelectorAll("
                           "\"[data-testid='stMain'], [data-testid='stSidebarContent']\")].map(e => e.scrollHeight))")
    size = page.viewport_size
    page.set_viewport_size({"width": size["width"], "height": max(size["height"], int(height) + 80)})
    try:
        page.wait_for_timeout(settle_ms)
        page.screenshot(path=str(path), full_page=True)
    finally:
        page.set_viewport_size(size)


def take(runs_dir: Path, out_dir: Path, run_ids: list[str], pages=PAGES) -> dict[str, Path]:
    """Open each page with `run_ids` selected (the first in focus) and save a full-page PNG."""
    from playwright.sync_api import sync_playwright

    out_dir.mkdir(parents=True, exist_ok=True)
    query = "&".join(f"runs={r}" for r in run_ids) + (f"&run={run_ids[0]}" if run_ids else "")
    shots = {}
    with dashboard(runs_dir) as url, sync_playwright() as playwright:
        browser = launch(playwright)
        page = new_page(browser, 1400, 1000)
        for name in pages:
            open_page(page, url, name, query)
            if name == "grad_cam":
                field = page.get_by_test_id("stMain").get_by_test_id("stTextInput").locator("input")
                field.fill("0, 1, 2, 3, 4, 5")
                after_rerun(page, lambda box=field: box.press("Enter"))
                after_rerun(page, page.get_by_role("button", name="Compute Grad-CAM").click)
            shots[name] = out_dir / f"{name}.png"
            full_screenshot(page, shots[name], settle_ms=2000)
        browser.close()
    return shots


if __name__ == "__main__":
    from engine.runs import list_runs

    root = Path(sys.argv[1]).resolve()
    out = Path(sys.argv[2]) if len(sys.argv) > 2 else PROJECT_ROOT / "docs" / "screenshots"
    found = list_runs(root)  # the newest run, and the newest other one on the same dataset (for Compare)
    fingerprint = (found[0].dataset or {}).get("fingerprint")
    twins = [run.id for run in found[1:] if (run.dataset or {}).get("fingerprint") == fingerprint]
    ids = [found[0].id, *twins[:1]]
    for page_name, path in take(root, out, ids).items():
        print(f"{page_name:14s} {path}")
