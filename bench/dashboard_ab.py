"""Two revisions of the dashboard against each other in Chromium, in the same minutes on the same
machine: the way to tell whether a change made a page faster where single tries move by a second.

    .venv/bin/python -m bench.dashboard_ab REV_A REV_B [--pages sweep,dynamics] [--tries 4] [--out FILE]

Checks both revisions out into temporary git worktrees and trains the bench's two-trial digits
sweep once (`dashboard_bench.build_sweep`: its runs record training dynamics). Then, `--tries`
times, serves each revision in turn from a fresh server (which goes first alternates) and times,
as `dashboard_bench` does: a cold visit of each page (a new tab with an empty cache, after the
Runs page) and warm visits through the sidebar (Runs and the pages in turn, three rounds after one
that loads them). Prints and writes the medians of `drawn` (every chart and image in the window drawn)."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import tempfile
from functools import partial
from pathlib import Path

from bench import screenshots
from bench.dashboard_bench import build_sweep

PROJECT_ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def worktree(revision: str, folder: Path):
    """`revision` checked out at `folder` (git worktree, detached), removed afterwards."""
    subprocess.run(["git", "worktree", "add", "--quiet", "--detach", str(folder), revision], cwd=PROJECT_ROOT,
                   check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(folder)], cwd=PROJECT_ROOT, check=False)


def one_try(browser, project: Path, root: Path, pages: list[str], query: str) -> dict[str, dict[str, object]]:
    """Cold and warm `drawn` seconds of each page from one fresh server of `project`."""
    found: dict[str, dict[str, object]] = {name: {"warm": []} for name in pages}
    with screenshots.dashboard(root, project=project) as url:
        for name in ["runs", *pages]:
            page = screenshots.new_page(browser)
            seconds = screenshots.timed_rerun(page, partial(page.goto, screenshots.page_url(url, name, query)))
            if name in found:
                found[name]["cold"] = seconds["drawn"]
            page.close()
        page = screenshots.new_page(browser)
        screenshots.open_page(page, url, "runs", query)
        for round_ in range(4):
            for name in ["runs", *pages]:  # from another page: a click on the page shown would move nowhere
                link = screenshots.sidebar_link(page, name)
                seconds = screenshots.timed_rerun(page, link.click)
                if round_ and name in found:
                    found[name]["warm"].append(seconds["drawn"])
        page.close()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("revisions", nargs=2, metavar="REV", help="two git revisions (e.g. HEAD~1 HEAD)")
    parser.add_argument("--pages", default="sweep,dynamics", help="pages to time, by their URL names")
    parser.add_argument("--tries", type=int, default=4)
    parser.add_argument("--out", type=Path, help="also write the results here as JSON")
    args = parser.parse_args()
    pages = [p for p in args.pages.split(",") if p]
    for rev in args.revisions:  # before the sweep is trained
        if subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}"], cwd=PROJECT_ROOT,
                          capture_output=True).returncode:
            parser.error(f"{rev!r} names no commit of this repository: give a commit, a branch or a tag "
                         "(see `git log --oneline`)")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="dashboard-ab-") as temp:
        temp = Path(temp)
        sweep_id, trial_runs = build_sweep(temp / "runs")
        query = "&".join(f"runs={r}" for r in trial_runs) + f"&run={trial_runs[0]}&sweep={sweep_id}"
        tries = {rev: [] for rev in args.revisions}
        with contextlib.ExitStack() as stack, sync_playwright() as playwright:
            projects = {rev: stack.enter_context(worktree(rev, temp / f"rev{i}"))
                        for i, rev in enumerate(args.revisions)}
            browser = screenshots.launch(playwright)
            for attempt in range(args.tries):
                for rev in args.revisions if attempt % 2 == 0 else args.revisions[::-1]:
                    tries[rev].append(one_try(browser, projects[rev], temp / "runs", pages, query))
            browser.close()
    results = {rev: {name: {"cold_drawn_s": statistics.median(t[name]["cold"] for t in runs),
                            "warm_drawn_s": statistics.median(w for t in runs for w in t[name]["warm"]),
                            "cold_tries_s": [round(t[name]["cold"], 2) for t in runs]}
                     for name in pages} for rev, runs in tries.items()}
    print(f"{'revision':24s} {'page':10s} {'cold drawn':>10s} {'warm drawn':>10s}  cold tries")
    for rev, by_page in results.items():
        for name, r in by_page.items():
            print(f"{rev:24s} {name:10s} {r['cold_drawn_s']:10.2f} {r['warm_drawn_s']:10.2f}  {r['cold_tries_s']}")
    if args.out:
        args.out.write_text(json.dumps({"revisions": args.revisions, "tries": args.tries, "medians": results},
                                       indent=2) + "\n")


if __name__ == "__main__":
    main()
