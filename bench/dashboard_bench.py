"""Dashboard speed on a realistic runs folder, in Streamlit's AppTest and in a real browser.

    .venv/bin/python -m bench.dashboard_bench [--runs N] [--images N] [--keep DIR] [--json] [--browser] [--out FILE]
    .venv/bin/python -m bench.dashboard_bench --report tests/artifacts/page_timings.json

Builds N runs (default 20) with 10,000-image prediction dumps through the engine's own writer
(one with a real width-64 checkpoint), then times: the first page, a gallery filter change, and
Grad-CAM for 16 images at the default settings. `--browser` adds `browser_timings`: every page
in Chromium, cold and warm, to "script finished" and to "charts drawn", the Sweep and Training
dynamics pages over a real sweep of two digits trials it trains first (the browser suite records
the same into tests/artifacts/page_timings.json; `--report` prints such a file against the
goals). Prints a table; writes bench/results/dashboard.json (or --out FILE). Goals on a 2-core
CPU: every page warm < 1 s and cold < 3 s in the browser, a filter change < 0.5 s, Grad-CAM (16
images) < 2 s."""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np

from engine import runs

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
TARGETS = {"first_page_s": 2.0, "filter_change_s": 0.5, "grad_cam_16_s": 2.0}
BROWSER_GOALS = {"warm": 1.0, "cold": 3.0, "filter_change": 0.5, "grad_cam_16": 2.0}


def build_runs(root: Path, count: int, images: int, epochs: int = 20) -> list[str]:
    """Synthetic but well-formed runs: same dataset, different seeds, one with a checkpoint."""
    import torch

    from engine.model import create_model

    rng = np.random.default_rng(0)
    test_images = rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, images)
    dataset = {"name": "cifar10", "classes": CLASSES, "num_classes": 10, "train_size": 50000,
               "test_size": images, "image_shape": [32, 32, 3], "mean": [0.4914, 0.4822, 0.4465],
               "std": [0.2470, 0.2435, 0.2616], "fingerprint": "benchbenchbench0"}
    ids = []
    for seed in range(count):
        writer = runs.RunWriter.create(root, f"bench-seed{seed}", epochs)
        writer.write_config({"width": 64, "epochs": epochs, "seed": seed, "batch_size": 64, "lr": 0.01,
                             "dataset": "cifar10"})
        writer.write_dataset(dataset)
        writer.write_environment({"device_name": "bench", "torch": torch.__version__})
        writer.write_test_images(test_images)
        steps_per_epoch = 50
        for epoch in range(1, epochs + 1):
            acc = 0.9 - 0.5 * np.exp(-epoch / 4) + rng.normal(0, 0.005)
            writer.append_steps([{"step": (epoch - 1) * steps_per_epoch + s, "epoch": epoch,
                                  "loss": float(2 * np.exp(-epoch / 5) + rng.normal(0, 0.05)), "lr": 0.01}
                                 for s in range(1, steps_per_epoch + 1)])
            writer.append_epoch({"epoch": epoch, "step": epoch * steps_per_epoch, "lr_start": 0.01, "lr_end": 0.01,
                                 "train_loss": 1.5 - acc, "train_acc": acc + 0.02, "test_loss": 1.6 - acc,
                                 "test_acc": acc, "seconds": 30.0, "train_seconds": 28.0, "images_per_s": 1800.0})
        logits = rng.normal(0, 1, (images, 10)).astype(np.float32)
        logits[np.arange(images), labels] += 2.5
        probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
        pred = probs.argmax(1)
        dump = {"index": np.arange(images), "label": labels, "pred": pred, "confidence": probs.max(1),
                "probs": probs, "loss": -np.log(probs[np.arange(images), labels])}
        writer.write_predictions("final", dump)
        writer.write_predictions("best", dump)
        if seed == count - 1:
            model = create_model(10, 64)
            writer.write_checkpoint("final", model.state_dict(), {"epoch": str(epochs), "width": "64"})
        writer.finish("completed")
        writer.release()
        ids.append(writer.path.name)
    return ids


def build_sweep(root: Path) -> tuple[str, list[str]]:
    """A real sweep of two short trials on the bundled digits (a few seconds on 2 cores), whose runs
    record training dynamics: the Sweep page's chart and the Training dynamics page's data map and
    training images, which the synthetic runs above cannot show. Returns the sweep's id and its runs."""
    from engine.cli import main as cli
    from engine.sweep import trial_states
    from engine.sweep_plan import list_sweeps

    flags = ["--dataset", "digits", "--batch-size", "64", "--epochs", "3", "--lr", "0.05",
             "--threads", "2", "--grid", "width=4,8", "--name", "bench-sweep", "--runs-dir", str(root)]
    if cli(["sweep", *flags]) != 0:
        raise RuntimeError("the bench's digits sweep did not complete")
    (plan,), _ = list_sweeps(root)
    return plan.id, [state.run_id for state in trial_states(plan, root)]


def timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def measure(root: Path, focus: str, repeats: int) -> dict:
    os.environ["RUNS_DIR"] = str(root)
    from streamlit.testing.v1 import AppTest

    app = str(PROJECT_ROOT / "dashboard" / "app.py")
    results = {}
    cold = AppTest.from_file(app, default_timeout=120)
    results["first_page_cold_s"] = timed(cold.run)  # imports plotly/pandas, empty caches
    warm = AppTest.from_file(app, default_timeout=120)
    results["first_page_s"] = timed(warm.run)  # a new session on a running server
    assert not warm.exception, warm.exception

    warm.query_params["run"] = focus
    at = AppTest.from_file(app, default_timeout=120)
    at.query_params["run"] = focus
    at.run()
    at.switch_page("app_pages/misclassified.py")
    results["gallery_first_s"] = timed(at.run)
    assert not at.exception, at.exception
    changes = []
    for k in range(repeats):
        at.multiselect(key="mis_true").set_value([k % 10])
        changes.append(timed(at.run))
        at.slider(key="mis_conf").set_range(0.1 * (k % 3), 0.95)
        changes.append(timed(at.run))
    assert not at.exception, at.exception
    results["filter_change_s"] = statistics.median(changes)
    results["filter_change_max_s"] = max(changes)

    indices = ", ".join(str(i) for i in range(16))
    at.switch_page("app_pages/grad_cam.py").run()
    at.text_input[0].set_value(indices).run()
    at.button(key="cam_go").click()
    results["grad_cam_page_first_s"] = timed(at.run)  # loads the model, then 16 maps
    assert len(at.image) == 32, at.exception  # 16 images and their 16 overlays
    at.selectbox(key="cam_method").set_value("GradCAM++")
    at.button(key="cam_go").click()
    results["grad_cam_page_s"] = timed(at.run)

    from engine.cam import METHODS, compute_cams, load_model

    run = runs.load_run(root / focus)
    model = load_model(run, "final")
    images = np.asarray(run.test_images()[:16])
    compute_cams(model, images, run.dataset["mean"], run.dataset["std"])  # warm-up
    results["grad_cam_16_s"] = statistics.median(
        timed(lambda: compute_cams(model, images, run.dataset["mean"], run.dataset["std"])) for _ in range(repeats))
    for method in METHODS:  # every method, the default included, once after a warm-up call
        def cams(m=method):
            return compute_cams(model, images, run.dataset["mean"], run.dataset["std"], method=m)
        cams()
        results[f"grad_cam_16_s_{method}"] = timed(cams)
    return results


def browser_timings(root: Path, focus: list[str], repeats: int = 3, cold_repeats: int = 3,
                    sweep: tuple[str, list[str]] | None = None) -> dict:
    """Seconds to a rendered page in Chromium, for every page, each as `script` (the run finished,
    Streamlit's "notRunning") and `drawn` (also every chart in the window plotted). `cold`: the
    first visit of the page since the server started, in a new tab of a browser with an empty
    cache (median of `cold_repeats` servers, each visiting every page in turn; single tries move
    by half a second on a 2-core machine). `warm`: moving to the page through the sidebar in an
    open dashboard, after one visit of every page (median of `repeats`). With `sweep` (its id and
    runs, `build_sweep`), also the Sweep page and the Training dynamics page over a run that
    recorded dynamics ("dynamics_recorded"). Plus a gallery filter change and Grad-CAM for 16 images."""
    from playwright.sync_api import sync_playwright

    from bench import screenshots

    query = "&".join(f"runs={r}" for r in focus) + f"&run={focus[0]}"
    # (page name in the timings, page in the app, its URL's query); each group shares one tab when warm
    groups = [[(name, name, query) for name in screenshots.PAGES]]
    if sweep:
        sweep_query = "&".join(f"runs={r}" for r in sweep[1]) + f"&run={sweep[1][0]}"
        groups.append([("dynamics_recorded", "dynamics", sweep_query),
                       ("sweep", "sweep", f"{sweep_query}&sweep={sweep[0]}")])
    visits = [visit for group in groups for visit in group]
    colds, warm = {name: [] for name, _, _ in visits}, {name: [] for name, _, _ in visits}
    with sync_playwright() as playwright:
        browser = screenshots.launch(playwright)
        for _ in range(cold_repeats):
            with screenshots.dashboard(root) as url:
                for name, app_page, its_query in visits:
                    page = screenshots.new_page(browser)
                    colds[name].append(screenshots.timed_rerun(
                        page, partial(page.goto, screenshots.page_url(url, app_page, its_query))))
                    page.close()
        browser.close()
    with screenshots.dashboard(root) as url, sync_playwright() as playwright:
        browser = screenshots.launch(playwright)
        for group in groups:
            page = screenshots.new_page(browser)
            screenshots.open_page(page, url, "runs", group[0][2])
            for round_ in range(repeats + 1):  # the first round loads each page's scripts into the tab
                for name, app_page, _ in group:
                    link = screenshots.sidebar_link(page, app_page)
                    seconds = screenshots.timed_rerun(page, link.click)
                    if round_:
                        warm[name].append(seconds)
            if group is not groups[-1]:
                page.close()  # one tab at a time: a tab left on Live reruns every 2 s beside the next group
        screenshots.open_page(page, url, "misclassified", query)
        box = page.get_by_test_id("stMultiSelect").filter(has_text="True class")
        changes = []
        for name in CLASSES[:repeats + 1]:
            box.locator("input").fill(name)
            changes.append(screenshots.after_rerun(page, page.get_by_role("option", name=name, exact=True).click))
            page.keyboard.press("Escape")
        screenshots.open_page(page, url, "grad_cam", query)
        field = page.get_by_test_id("stMain").get_by_test_id("stTextInput").locator("input")
        field.fill(", ".join(str(i) for i in range(16)))
        screenshots.after_rerun(page, lambda: field.press("Enter"))
        button = page.get_by_role("button", name="Compute Grad-CAM")
        first = screenshots.after_rerun(page, button.click)  # loads the model, then 16 maps
        page.get_by_test_id("stSelectbox").filter(has_text="Method").click()
        screenshots.after_rerun(page, page.get_by_role("option", name="GradCAM++", exact=True).click)
        cams = screenshots.after_rerun(page, button.click)
        browser.close()
    def medians(tries: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
        return {name: {k: statistics.median(t[k] for t in times) for k in ("script", "drawn")}
                for name, times in tries.items()}

    return {"cold_s": medians(colds), "cold_tries_drawn_s": {name: [t["drawn"] for t in times]
                                                              for name, times in colds.items()},
            "warm_s": medians(warm), "filter_change_s": statistics.median(changes),
            "grad_cam_16_first_s": first, "grad_cam_16_s": cams, "goals_s": BROWSER_GOALS}


def report(timings: dict) -> str:
    """The browser timings as a table, each page against its goals, both as `script` and `drawn`."""
    goals = timings.get("goals_s", BROWSER_GOALS)
    lines = [f"{'page':16s} {'cold: script':>12s} {'drawn':>6s} {'warm: script':>13s} {'drawn':>6s}",
             f"{'goal':16s} {goals['cold']:12.2f} {goals['cold']:6.2f} {goals['warm']:13.2f} {goals['warm']:6.2f}"]
    for name, cold in timings["cold_s"].items():
        warm = timings["warm_s"][name]
        slow = [f"{kind} {part}" for kind, times in (("cold", cold), ("warm", warm))
                for part in ("script", "drawn") if times[part] >= goals[kind]]
        lines.append(f"{name:16s} {cold['script']:12.2f} {cold['drawn']:6.2f} {warm['script']:13.2f} "
                     f"{warm['drawn']:6.2f}  {'SLOW: ' + ', '.join(slow) if slow else 'ok'}")
    for key, goal in (("filter_change_s", goals["filter_change"]), ("grad_cam_16_s", goals["grad_cam_16"])):
        lines.append(f"{key:16s} {timings[key]:12.2f} {'(goal ' + format(goal, '.1f') + ')':>28s}  "
                     f"{'ok' if timings[key] < goal else 'SLOW'}")
    lines.append(f"{'grad_cam_16_first_s':16s} {timings['grad_cam_16_first_s']:9.2f}  (loads the model first)")
    tries = timings.get("cold_tries_drawn_s", {})
    if any(len(each) > 1 for each in tries.values()):
        lines.append("cold tries, drawn (the table shows their median): " + "; ".join(
            f"{name} {', '.join(format(t, '.2f') for t in each)}" for name, each in tries.items()))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--keep", type=Path, help="build the runs here and keep them (an empty or new folder)")
    parser.add_argument("--json", action="store_true", help="print only the results, as one JSON line")
    parser.add_argument("--browser", action="store_true", help="also time every page in Chromium")
    parser.add_argument("--report", type=Path, help="print browser timings saved by the browser suite")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "bench" / "results" / "dashboard.json",
                        help="where to write the results (default: bench/results/dashboard.json)")
    args = parser.parse_args()
    if args.keep and args.keep.exists() and any(args.keep.iterdir()):  # its runs would add to the ones measured
        parser.error(f"--keep {args.keep}: the folder is not empty; name a new or empty one")
    if args.report:
        print(report(json.loads(args.report.read_text())))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp) / "runs"
        started = time.perf_counter()
        ids = build_runs(root, args.runs, args.images)
        build_s = time.perf_counter() - started
        results = measure(root, ids[-1], args.repeats)
        browser = browser_timings(root, [ids[-1], ids[-2]], sweep=build_sweep(root)) if args.browser else None
    summary = {**{k: round(v, 4) for k, v in results.items()}, "runs": args.runs, "images_per_dump": args.images,
              "build_s": round(build_s, 2), "cpu_count": os.cpu_count(), "platform": platform.platform(),
              "targets_s": TARGETS, **({"browser": browser} if browser else {})}
    if args.json:  # for `python -m bench`, which reads the last line
        print(json.dumps(summary))
        return
    print(f"{args.runs} runs x {args.images} images (built in {build_s:.1f} s)\n")
    print(f"{'measure':24s} {'seconds':>9s} {'target':>8s}")
    for key, value in results.items():
        target = TARGETS.get(key)
        verdict = "" if target is None else ("  ok" if value < target else "  SLOW")
        print(f"{key:24s} {value:9.3f} {target if target else '':>8}{verdict}")
    if browser:
        print("\nin the browser (seconds to a rendered page)\n" + report(browser))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nwritten to {args.out}")


if __name__ == "__main__":
    main()
