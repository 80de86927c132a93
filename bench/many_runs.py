"""Many realistic runs, quickly, and how fast the run index is over them.

    .venv/bin/python -m bench.many_runs generate DIR --runs 10000   # write a runs folder
    .venv/bin/python -m bench.many_runs bench [--sizes 20 1000 10000] [--keep DIR] [--out FILE.json]

`generate` writes N runs in the real format (run format 2): the small JSON files, epoch and step
rows and a summary each, and tiny arrays (32 test images, 10 classes) hard-linked from one template
run that the engine's own RunWriter wrote. The mix: most completed; some interrupted, failed,
killed (run.json says running, no process holds the lock); 1% running (`hold_locks` keeps their
locks held by a live process while the bench runs); 1% torn (a cut epoch row, a garbage config, a
truncated dump, no run.json, a damaged or a stale summary). Names repeat as a sweep's do.

`bench` times `RunIndex` at each size: the first load without and with the index's cache, the same
in a fresh process, `resnet-runs list --json` itself (a fresh process, its whole output read), a
refresh with nothing changed, a refresh after one finished run was tagged and after one running run
finished an epoch, a filter expression over every row, and the run labels. Then the dashboard's Runs
page under Streamlit's AppTest (`page_timings`): its first render in a process whose caches were
cleared (imports already done), a warm rerun, a change of the filter expression, and the Compare page
over ten runs. Goals at 10,000 runs on a 2-core CPU: first load < 1 s, refresh with nothing changed
< 0.1 s, `list --json` < 1 s; the Runs page's first render < 2 s, warm rerun < 0.3 s, filter change
< 0.3 s, Compare of 10 runs < 2 s.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from engine import run_layout as layout
from engine.config import TrainConfig
from engine.run_curation import set_tags
from engine.run_index import RunIndex, run_labels
from engine.run_query import compile_query
from engine.run_summary import build_summary
from engine.runs import RunWriter
from engine.safe_io import atomic_write_json, to_strict_json

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
IMAGES = 32
STEPS_PER_EPOCH = 8
GOALS = {"first_load_s": 1.0, "refresh_unchanged_s": 0.1, "list_json_s": 1.0, "page_first_render_s": 2.0,
         "page_warm_rerun_s": 0.3, "page_filter_change_s": 0.3, "compare_10_s": 2.0}
FILTER = "lr > 0.05 and best_test_acc > 0.6"
FILTERS = (FILTER, "lr < 0.05")  # the page's filter changes between these
SWEEPS = ("lr-sweep", "bs-sweep", "seed-sweep", "baseline")
# fractions of runs in each state (the rest complete); torn runs rotate through TORN
MIX = {"interrupted": 0.04, "failed": 0.03, "killed": 0.03, "running": 0.01, "torn": 0.01}
TORN = ("cut epoch row", "garbage config", "truncated dump", "no run.json", "damaged summary", "stale summary")
ARRAYS = (layout.TEST_IMAGES_NPY, layout.TRAIN_SAMPLES_NPZ,
          *(layout.prediction_file(tag) for tag in layout.PREDICTION_TAGS))


# ---------------------------------------------------------------- writing runs


def write_template(root: Path) -> Path:
    """One small run through the engine's own writer: the arrays every generated run links to."""
    rng = np.random.default_rng(0)
    writer = RunWriter.create(root, "template", epochs_planned=1)
    images = rng.integers(0, 256, (IMAGES, 32, 32, 3), dtype=np.uint8)
    writer.write_test_images(images)
    writer.write_train_samples(images[:8], images[8:16], rng.integers(0, 10, 8))
    for tag in layout.PREDICTION_TAGS:
        probs = rng.dirichlet(np.ones(10), IMAGES).astype(np.float32)
        labels = rng.integers(0, 10, IMAGES)
        writer.write_predictions(tag, {"index": np.arange(IMAGES), "label": labels, "pred": probs.argmax(1),
                                       "confidence": probs.max(1), "probs": probs,
                                       "loss": -np.log(probs[np.arange(IMAGES), labels])})
    writer.finish(layout.Status.COMPLETED)
    return writer.path


def _state(i: int, mix: dict[str, float]) -> str:
    """The state of run i: spread evenly through the folder, so every size gets its share."""
    position = (i * 0.6180339887) % 1.0  # golden-ratio spacing
    edge = 0.0
    for state, share in mix.items():
        edge += share
        if position < edge:
            return state
    return "completed"


def _plan(i: int, rng: np.random.Generator, mix: dict[str, float]) -> dict:
    sweep = SWEEPS[i % len(SWEEPS)] if i % 3 else None
    name = sweep or f"experiment-{i}"
    epochs = int(rng.choice([10, 20, 30]))
    config = {**TrainConfig().to_dict(), "name": name, "epochs": epochs, "seed": int(i % 7),
              "lr": float(rng.choice([0.01, 0.02, 0.05, 0.1, 0.2])), "batch_size": int(rng.choice([64, 128, 512])),
              "preset": str(rng.choice(["s11", "fast"])), "runs_dir": "runs"}
    return {"name": name, "config": config, "state": _state(i, mix), "epochs": epochs}


def _run_id(i: int, name: str, start: datetime) -> str:
    stamp = (start + timedelta(seconds=37 * i)).strftime("%Y%m%d-%H%M%S")
    token = f"{(i * 2654435761) % 16**6:06x}"  # an odd multiplier: distinct for every i < 16**6
    return f"{stamp}-{token}-{layout.slugify(name)}"


def _write(path: Path, obj: object) -> None:
    path.write_text(to_strict_json(obj, indent=2) + "\n")


def write_run(root: Path, template: Path, i: int, start: datetime, mix: dict[str, float] = MIX) -> tuple[Path, str]:
    """Run i: its files in the real format (no fsync: a generator, not a trainer). Returns
    (folder, state); a torn run's state names what is torn (`torn: garbage config`)."""
    rng = np.random.default_rng(i)
    plan = _plan(i, rng, mix)
    state, epochs = plan["state"], plan["epochs"]
    path = root / _run_id(i, plan["name"], start)
    (path / layout.PREDICTIONS_DIR).mkdir(parents=True)
    (path / layout.CHECKPOINTS_DIR).mkdir()
    done = epochs if state in ("completed", "torn") else int(rng.integers(1, epochs))
    created = start + timedelta(seconds=37 * i)
    status = {"completed": layout.Status.COMPLETED, "torn": layout.Status.COMPLETED, "failed": layout.Status.FAILED,
              "interrupted": layout.Status.INTERRUPTED}.get(state, layout.Status.RUNNING)
    error = {"failed": "TrainingFailed: the training loss became nan in epoch 3; lower the learning rate",
             "interrupted": "stopped by the user (Ctrl-C or SIGTERM)"}.get(state)
    finished = None if status == layout.Status.RUNNING else (created + timedelta(seconds=30 * done)).isoformat()
    _write(path / layout.RUN_JSON, {
        "format_version": layout.FORMAT_VERSION, "id": path.name, "name": plan["name"], "status": status,
        "created": created.isoformat(), "finished": finished, "error": error, "epochs_planned": epochs,
        "host": "bench", "pid": 1000 + i})
    _write(path / layout.CONFIG_JSON, plan["config"])
    _write(path / layout.ENVIRONMENT_JSON, {"python": platform.python_version(), "torch": "2.x", "device": "cuda",
                                            "device_name": "bench GPU", "cpu_threads": 16, "world_size": 1,
                                            "command": ["resnet-runs", "train"]})
    _write(path / layout.DATASET_JSON, {
        "name": "cifar10", "classes": CLASSES, "num_classes": 10, "train_size": 50000, "test_size": IMAGES,
        "image_shape": [32, 32, 3], "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616],
        "fingerprint": "benchbenchbench0"})
    ceiling = 0.55 + 0.4 * rng.random()
    rows = []
    for epoch in range(1, done + 1):
        acc = float(ceiling - 0.5 * np.exp(-epoch / 4) + rng.normal(0, 0.005))
        acc = min(max(acc, 0.0), 1.0)
        rows.append({"epoch": epoch, "step": epoch * STEPS_PER_EPOCH, "lr_start": 0.01, "lr_end": 0.01,
                     "train_loss": 1.6 - acc, "train_acc": acc, "test_loss": 1.7 - acc, "test_acc": acc,
                     "seconds": 30.0, "train_seconds": 28.0, "images_per_s": 1800.0})
    # every number here is finite: plain json.dumps writes strict JSON, faster than to_strict_json
    (path / layout.EPOCHS_JSONL).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (path / layout.STEPS_JSONL).write_text("".join(
        f'{{"step": {s}, "epoch": {1 + (s - 1) // STEPS_PER_EPOCH}, "loss": {2.0 / s!r}, "lr": 0.01}}\n'
        for s in range(1, STEPS_PER_EPOCH * done + 1)))
    for name in ARRAYS:
        os.link(template / name, path / name)
    (path / layout.LOCK_FILE).touch()
    if i % 10 == 0:
        _write(path / layout.TAGS_JSON, ["baseline"] if i % 20 == 0 else ["sweep", f"batch-{i // 1000}"])
    if i % 25 == 0:
        (path / layout.NOTE_TXT).write_text(f"run {i}: looks {'good' if ceiling > 0.8 else 'unstable'}\n")
    torn = TORN[(i // 7) % len(TORN)] if state == "torn" else None
    state = f"torn: {torn}" if torn else state
    if torn == "garbage config":
        (path / layout.CONFIG_JSON).write_bytes(b"\x00garbage{")
    elif torn == "truncated dump":
        target = path / layout.prediction_file(layout.FINAL)
        data = target.read_bytes()
        target.unlink()  # a link: cut our own copy, not the template's
        target.write_bytes(data[: len(data) // 2])
    elif torn == "no run.json":
        (path / layout.RUN_JSON).unlink()
    if torn != "no run.json":
        summary = build_summary(path)
        if status == layout.Status.RUNNING:  # as its writer last wrote it, while it held the lock
            summary.update(status=layout.Status.RUNNING, error=None)
        _write(path / layout.SUMMARY_JSON, summary)
    if torn == "cut epoch row":  # a killed writer's half line, after the summary: a stale summary too
        with open(path / layout.EPOCHS_JSONL, "a") as handle:
            handle.write('{"epoch": 99, "test_')
    elif torn == "damaged summary":
        (path / layout.SUMMARY_JSON).write_text('{"id": ')
    elif torn == "stale summary":
        with open(path / layout.EPOCHS_JSONL, "a") as handle:
            handle.write(to_strict_json({**rows[-1], "epoch": done + 1}) + "\n")
    return path, state


def _write_range(args: tuple) -> list[tuple[str, str]]:
    root, template, first, last, start, mix = args
    return [(p.name, s) for p, s in (write_run(root, template, i, start, mix) for i in range(first, last))]


def generate(root: Path, n: int, workers: int = 2, mix: dict[str, float] = MIX) -> dict[str, list[str]]:
    """Write n runs into `root` (created; must not hold runs yet); returns {state: [run ids]}.
    `mix` gives the share of each state that is not `completed` (default MIX)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    template_root = Path(tempfile.mkdtemp(prefix=".template-", dir=root))  # hidden: not a run of the folder
    template = write_template(template_root)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    chunks = [(root, template, k * n // workers, (k + 1) * n // workers, start, mix) for k in range(workers)]
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        written = [pair for part in pool.map(_write_range, chunks) for pair in part]
    shutil.rmtree(template_root)  # the runs keep their hard links
    states: dict[str, list[str]] = {}
    for run_id, state in written:
        states.setdefault(state, []).append(run_id)
    return states


@contextmanager
def hold_locks(run_dirs: Sequence[Path]) -> Iterator[subprocess.Popen]:
    """A live process holding the locks of `run_dirs`, as their trainers would, until the block ends."""
    code = ("import fcntl, sys\n"
            "held = [open(p, 'a+') for p in sys.argv[1:]]\n"
            "[fcntl.flock(h, fcntl.LOCK_EX) for h in held]\n"
            "print('held', flush=True)\n"
            "sys.stdin.read()\n")
    holder = subprocess.Popen([sys.executable, "-c", code, *(str(Path(p) / layout.LOCK_FILE) for p in run_dirs)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held", "the lock holder did not start"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(30)


# ---------------------------------------------------------------- timing the index


def _timed(action) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _fresh_process_load(root: Path) -> float:
    """Seconds for a new Python process to import the index and load every row (`list --json`'s floor)."""
    code = ("import sys, time; t = time.perf_counter()\n"
            "from engine.run_index import RunIndex\n"
            "rows = RunIndex(sys.argv[1]).refresh()\n"
            "print(time.perf_counter() - t, len(rows))\n")
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, str(root)], cwd=PROJECT_ROOT, capture_output=True, check=True)
    return time.perf_counter() - start


def _list_json(root: Path, runs: int) -> float:
    """Seconds for `resnet-runs list --json` over `root` in a fresh process, its output read whole."""
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "engine", "list", "--json", "--runs-dir", str(root)],
                          cwd=PROJECT_ROOT, capture_output=True, check=True)
    seconds = time.perf_counter() - start
    assert len(json.loads(done.stdout)) == runs, "list --json left out runs"
    return seconds


def _append_epoch(run_dir: Path) -> None:
    """What a live writer does at an epoch's end: one more row, then the summary rewritten."""
    rows = (run_dir / layout.EPOCHS_JSONL).read_text().splitlines()
    last = json.loads(rows[-1])
    with open(run_dir / layout.EPOCHS_JSONL, "a") as handle:
        handle.write(to_strict_json({**last, "epoch": last["epoch"] + 1}) + "\n")
    atomic_write_json(run_dir / layout.SUMMARY_JSON, build_summary(run_dir))


def bench_size(root: Path, n: int, repeats: int = 5) -> dict:
    """Generate n runs under `root` and time the index over them."""
    folder = root / f"runs-{n}"
    started = time.perf_counter()
    states = generate(folder, n)
    result: dict = {"runs": n, "generate_s": time.perf_counter() - started,
                    "states": {state: len(ids) for state, ids in sorted(states.items())}}
    running = [folder / run_id for run_id in states.get("running", [])]
    finished = states["completed"]
    with hold_locks(running):
        # the very first load reads every summary.json (and rebuilds the torn and stale ones)
        result["first_load_no_cache_s"] = _timed(lambda: RunIndex(folder).refresh())
        no_cache = []
        for _ in range(repeats):
            (folder / layout.INDEX_CACHE).unlink(missing_ok=True)
            no_cache.append(_timed(lambda: RunIndex(folder, use_cache=False).refresh()))
        result["first_load_summaries_s"] = statistics.median(no_cache)
        RunIndex(folder).refresh()  # writes the cache
        result["cache_mb"] = (folder / layout.INDEX_CACHE).stat().st_size / 1e6
        result["first_load_s"] = statistics.median(_timed(lambda: RunIndex(folder).refresh()) for _ in range(repeats))
        result["first_load_fresh_process_s"] = statistics.median(_fresh_process_load(folder) for _ in range(3))
        listed = len(RunIndex(folder).refresh())
        result["list_json_s"] = statistics.median(_list_json(folder, listed) for _ in range(3))
        index = RunIndex(folder)
        rows = index.refresh()
        time.sleep(2.1)  # past RACY_NS: the folders just written count as settled
        index.refresh()
        result["refresh_unchanged_s"] = statistics.median(_timed(index.refresh) for _ in range(repeats * 2))
        tagged, epochs = [], []
        for k in range(repeats):
            run_dir = folder / finished[(k * 7919) % len(finished)]
            set_tags(run_dir, add=[f"bench-{k}"])
            tagged.append(_timed(index.refresh))
            assert f"bench-{k}" in index.get(run_dir.name)["tags"], "the index missed a tag"
            if running:
                _append_epoch(running[k % len(running)])
                epochs.append(_timed(index.refresh))
        result["refresh_after_tag_s"] = statistics.median(tagged)
        if epochs:
            result["refresh_after_epoch_s"] = statistics.median(epochs)
        rows = index.refresh()
        result["running_rows"] = sum(r["status"] == layout.Status.RUNNING for r in rows)
        result["filter_compile_s"] = statistics.median(_timed(lambda: compile_query(FILTER)) for _ in range(repeats))
        query = compile_query(FILTER)
        result["filter_s"] = statistics.median(_timed(lambda: query.filter(rows)) for _ in range(repeats))
        result["filter_matches"] = len(query.filter(rows))
        result["labels_s"] = statistics.median(_timed(lambda: run_labels(rows)) for _ in range(repeats))
        result.update(page_timings(folder, [i for i in sorted(finished, reverse=True)[:10]], repeats))
        result.update(browser_timings(folder, sorted(finished, reverse=True)[:10]))
    return result


def page_timings(folder: Path, compare: Sequence[str], repeats: int = 5) -> dict:
    """The Runs page under AppTest over `folder`, and Compare over the runs `compare` (ten of the
    newest, which the sidebar offers before any search). Imports are paid by a warm-up run over an
    empty folder first; then every Streamlit cache is cleared, so the first render loads the index
    (from its cache file) as a freshly started dashboard does."""
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    app = str(PROJECT_ROOT / "dashboard" / "app.py")
    before, main_module = os.environ.get("RUNS_DIR"), sys.modules["__main__"]
    try:
        with tempfile.TemporaryDirectory() as empty:
            os.environ["RUNS_DIR"] = empty
            AppTest.from_file(app, default_timeout=600).run()
        st.cache_resource.clear()
        st.cache_data.clear()
        os.environ["RUNS_DIR"] = str(folder)
        at = AppTest.from_file(app, default_timeout=600)
        result = {"page_first_render_s": _timed(at.run)}
        assert not at.exception, at.exception
        result["page_rows_shown"] = len(at.dataframe[0].value)
        result["page_warm_rerun_s"] = statistics.median(_timed(at.run) for _ in range(repeats))
        changes = []
        for k in range(repeats):
            box = at.text_input(key="runs_where").set_value(FILTERS[k % 2])
            changes.append(_timed(box.run))
        result["page_filter_change_s"] = statistics.median(changes)
        assert not at.error and not at.exception, (at.error, at.exception)
        at.text_input(key="runs_where").set_value("").run()
        at.sidebar.multiselect(key="runs").set_value(list(compare)).run()
        result["compare_10_s"] = _timed(lambda: at.switch_page("app_pages/compare.py").run())
        assert not at.exception and at.title[0].value == "Compare runs", at.exception
        result["compare_10_warm_s"] = statistics.median(_timed(at.run) for _ in range(repeats))
    finally:
        sys.modules["__main__"] = main_module  # the script runner leaves the app there; generate's pool needs ours
        if before is None:
            os.environ.pop("RUNS_DIR", None)
        else:
            os.environ["RUNS_DIR"] = before
    return result


def browser_timings(folder: Path, compare: Sequence[str], repeats: int = 3) -> dict:
    """The same in Chromium, from the press to the page drawn (bench/screenshots.py's `timed_rerun`:
    the page's own clock, until the script run finished and everything in the window is drawn): the
    Runs page's first visit in a new tab on a dashboard just started over `folder`, a rerun (the sort
    order flipped), a filter expression changed, Compare of the runs `compare` opened from the Runs
    page's link in the same tab (the way a person gets there), and the same Compare opened cold: its
    link pasted into a new browser with an empty cache (medians of `repeats`). Empty when Chromium
    is absent."""
    from functools import partial

    from bench import screenshots

    if not screenshots.CHROMIUM.exists():
        return {}
    from playwright.sync_api import sync_playwright

    query = "&".join(f"runs={run_id}" for run_id in compare)
    with screenshots.dashboard(folder) as url, sync_playwright() as playwright:
        browser = screenshots.launch(playwright)
        page = screenshots.new_page(browser)
        first = screenshots.timed_rerun(page, partial(page.goto, screenshots.page_url(url, "runs")), what="Runs page")
        switch = page.get_by_test_id("stCheckbox").filter(has_text="Descending")
        reruns = [screenshots.after_rerun(page, switch.click, what="the sort order flipped") for _ in range(repeats)]
        field = page.get_by_test_id("stTextInput").filter(has_text="Filter expression").locator("input")
        changes = []
        for k in range(repeats):
            field.fill(FILTERS[k % 2])
            changes.append(screenshots.after_rerun(page, partial(field.press, "Enter"), what="a filter expression"))
        compares, colds = [], []
        for _ in range(repeats):  # each in a new tab, whose first chart loads plotly's bundle
            tab = screenshots.new_page(browser)
            screenshots.open_page(tab, url, "runs", query)  # the ten runs selected, as ticking them would
            link = tab.get_by_test_id("stPageLink").filter(has_text="Compare the selected runs")
            compares.append(screenshots.after_rerun(tab, link.click, what="Compare of ten runs from the Runs page"))
            tab.close()
            tab = screenshots.new_page(browser)  # a new browser context: an empty cache
            colds.append(screenshots.after_rerun(tab, partial(tab.goto, screenshots.page_url(url, "compare", query)),
                                                 what="Compare of ten runs by its link, cold"))
            tab.close()
        browser.close()
    return {"browser_first_render_s": first["drawn"], "browser_rerun_s": statistics.median(reruns),
            "browser_filter_change_s": statistics.median(changes), "browser_compare_10_s": statistics.median(compares),
            "browser_compare_10_cold_s": statistics.median(colds)}


def render(results: list[dict]) -> str:
    keys = [("first_load_no_cache_s", "first load, no cache (reads every summary.json; rebuilds torn, stale)"),
            ("first_load_summaries_s", "first load, cache off (every summary.json read and checked)"),
            ("first_load_s", "first load from the cache (a settled row trusted while its folder's mtime holds)"),
            ("first_load_fresh_process_s", "the same in a fresh process, imports included"),
            ("list_json_s", "`resnet-runs list --json`, a fresh process, its output read whole"),
            ("refresh_unchanged_s", "refresh, nothing changed"),
            ("refresh_after_tag_s", "refresh after one finished run was tagged"),
            ("refresh_after_epoch_s", "refresh after one running run finished an epoch"),
            ("filter_s", f"filter `{FILTER}` over all rows"),
            ("labels_s", "run labels over all rows"),
            ("page_first_render_s", "Runs page (AppTest): first render, caches cleared"),
            ("page_warm_rerun_s", "Runs page: warm rerun"),
            ("page_filter_change_s", f"Runs page: filter expression changed (`{FILTERS[0]}` / `{FILTERS[1]}`)"),
            ("compare_10_s", "Compare page, 10 runs: first render"),
            ("compare_10_warm_s", "Compare page, 10 runs: warm rerun"),
            ("browser_first_render_s", "Chromium: Runs page, first visit on a fresh dashboard, to drawn"),
            ("browser_rerun_s", "Chromium: Runs page rerun (sort order flipped)"),
            ("browser_filter_change_s", "Chromium: filter expression changed"),
            ("browser_compare_10_s", "Chromium: Compare of 10 runs opened from the Runs page's link"),
            ("browser_compare_10_cold_s", "Chromium: the same link pasted into a new browser (cold)")]
    def cells(key: str, fmt: str) -> str:
        return " | ".join(format(r[key], fmt) if key in r else "-" for r in results)

    head = f"| measure (seconds) | {' | '.join(format(r['runs'], ',') + ' runs' for r in results)} |"
    lines = [head, "| --- |" + " --- |" * len(results)]
    for key, text in keys:
        lines.append(f"| {text} | {cells(key, '.4f')} |")
    lines.append(f"| cache file, MB | {cells('cache_mb', '.1f')} |")
    lines.append(f"| generating the runs | {cells('generate_s', '.1f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.many_runs", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="write N realistic runs into DIR")
    gen.add_argument("dir")
    gen.add_argument("--runs", type=int, default=1000)
    bench = sub.add_parser("bench", help="time the run index at each size")
    bench.add_argument("--sizes", type=int, nargs="+", default=[20, 1000, 10000])
    bench.add_argument("--keep", help="write the runs folders here (default: a temporary folder, removed)")
    bench.add_argument("--out", help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.command == "generate":
        started = time.perf_counter()
        states = generate(Path(args.dir), args.runs)
        print(f"wrote {args.runs} runs into {args.dir} in {time.perf_counter() - started:.1f} s: "
              + ", ".join(f"{len(v)} {k}" for k, v in sorted(states.items())))
        return 0
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="many-runs-"))
    try:
        results = []
        for n in args.sizes:
            results.append(bench_size(root, n))
            print(f"{n} runs done", file=sys.stderr, flush=True)
        print(render(results))
        if args.out:
            Path(args.out).write_text(json.dumps({"machine": platform.platform(), "cpus": os.cpu_count(),
                                                  "results": results}, indent=2) + "\n")
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
