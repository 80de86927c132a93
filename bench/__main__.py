"""`make bench`: measure training and dashboard speed on this machine, print a table, and
write bench/results/<date>-<device>.json. Reads the CIFAR-10 sample from ../shared/data."""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import torch

from bench import dynamics_bench, label_noise, sweep_bench, training
from bench.paths import ROOT, SAMPLE
from engine.datasets import load_npz
from engine.device import device_name, pick_device


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--sample", default=str(SAMPLE), help="the CIFAR-10 sample npz")
    parser.add_argument("--render", metavar="RESULTS.json", help="print the table of an earlier run and stop")
    parser.add_argument("--out", metavar="RESULTS.json",
                        help="write here instead of bench/results/<date>-<device>.json")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per preset for the accuracy comparison")
    parser.add_argument("--epochs", type=int, default=10, help="epochs for the accuracy comparison")
    parser.add_argument("--skip", nargs="*", default=[], choices=["data", "training", "eval", "accuracy",
                                                                 "gpu", "sweep", "dashboard", "dynamics", "many_runs",
                                                                 "label_noise"])
    args = parser.parse_args(argv)
    if args.render:
        saved = json.loads(Path(args.render).read_text())
        if not isinstance(saved, dict) or "device" not in saved:
            print(f"error: {args.render} is not a `make bench` result (those are bench/results/<date>-<device>.json; "
                  "dashboard.json comes from bench/dashboard_bench.py and prints its own table)", file=sys.stderr)
            return 2
        print(render(saved))
        return 0
    if args.out and not Path(args.out).resolve().parent.is_dir():
        print(f"error: the folder of --out {args.out} does not exist; create it first", file=sys.stderr)
        return 2
    if not Path(args.sample).exists():
        print(f"error: {args.sample} is absent; pass --sample PATH to a CIFAR-10 npz", file=sys.stderr)
        return 2
    data = load_npz(Path(args.sample))
    device = pick_device("auto")
    cuda = device.type == "cuda"
    results: dict = {"date": date.today().isoformat(), "device": device_name(device),
                     "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                     "torch": torch.__version__}
    started = time.perf_counter()

    def section(name: str, fn, *fn_args):
        if name in args.skip:
            return
        t = time.perf_counter()
        print(f"[bench] {name} ...", flush=True)
        results[name] = fn(*fn_args)
        results[name]["bench_seconds"] = time.perf_counter() - t

    section("data", training.data_pipeline, data)
    # Full width everywhere; a CPU step of 64 images takes about a second, so 20 steps there: with
    # fewer, the first step after an evaluation (new shapes, new buffers) skews the ratio.
    section("training", training.training_throughput, data, 64, 512 if cuda else 64, 30 if cuda else 20)
    section("eval", training.evaluation_and_range_test, data, 64, 64 if cuda else 16, 200)
    section("accuracy", training.accuracy_s11_vs_fast, data, 64 if cuda else 16, args.epochs,
            list(range(1, args.seeds + 1)))
    # the same four tiny runs by hand, as one sweep, and as one sweep on a local Ray cluster
    section("sweep", sweep_bench.sweep_overhead, Path(args.sample))
    # the same run with and without recording the training dynamics, interleaved
    section("dynamics", dynamics_bench.dynamics_overhead, data)
    # how well each per-image score finds flipped labels: 3 noisy runs of the fast preset, about 12 minutes
    section("label_noise", label_noise.measure, Path(args.sample))
    if cuda:
        from bench import gpu_recipe  # it imports render from here: loaded once this module is

        section("gpu", gpu_recipe.gpu_section, Path(args.sample))
    if "many_runs" not in args.skip:  # its own process: AppTest's script runner takes over __main__
        print("[bench] many_runs ...", flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, "-m", "bench.many_runs", "bench", "--out", f"{tmp}/many.json"],
                                 cwd=ROOT, capture_output=True, text=True)
            try:
                results["many_runs"] = json.loads(Path(f"{tmp}/many.json").read_text())
            except (OSError, json.JSONDecodeError):
                results["many_runs"] = {"error": out.stderr[-500:]}
    if "dashboard" not in args.skip and (ROOT / "bench" / "dashboard_bench.py").exists():
        print("[bench] dashboard ...", flush=True)
        out = subprocess.run([sys.executable, "-m", "bench.dashboard_bench", "--json", "--browser"],
                             cwd=ROOT, capture_output=True, text=True)
        try:
            results["dashboard"] = json.loads(out.stdout.strip().splitlines()[-1])
        except (json.JSONDecodeError, IndexError):
            results["dashboard"] = {"error": out.stderr[-500:]}
    results["total_seconds"] = time.perf_counter() - started

    path = Path(args.out).resolve() if args.out else result_path(results["date"], results["device"])
    path.write_text(json.dumps(results, indent=2) + "\n")
    print(render(results))
    print(f"\nwritten to {path.relative_to(ROOT) if path.is_relative_to(ROOT) else path}")
    return 0


def result_path(day: str, device: str) -> Path:
    """bench/results/<date>-<device>.json, the device's name made safe for a file name."""
    slug = "".join(c if c.isalnum() else "-" for c in device).strip("-")[:40]
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(parents=True, exist_ok=True)
    return out_dir / f"{day}-{slug}.json"


def render(r: dict) -> str:
    rows = [("machine", f"{r['device']}; {r['machine']}; torch {r['torch']}")]
    if "data" in r:
        d = r["data"]
        rows.append(("data pipeline, images/s", f"per-sample DataLoader {d['reference_images_per_s']:,.0f} | "
                     f"batched {d['batched_images_per_s']:,.0f} | x{d['speedup']:.1f}"))
    if "training" in r:
        t = r["training"]
        rows.append((f"training images/s (width {t['width']}, batch {t['batch_size']})",
                     f"model alone {t['model_alone_images_per_s']:,.1f} | end to end "
                     f"{t['end_to_end_images_per_s']:,.1f} | ratio {t['ratio']:.3f}"))
    if "eval" in r:
        e = r["eval"]
        rows.append((f"evaluation images/s (width {e['eval_width']})", f"{e['evaluation_images_per_s']:,.0f}"))
        rows.append((f"LR range test (width {e['finder_width']}, {e['finder_iters']} iters, batch "
                     f"{e['finder_batch']})", f"{e['range_test_seconds']:.1f} s"))
    if "accuracy" in r:
        a = r["accuracy"]
        for preset in ("s11", "fast"):
            p = a[preset]
            batch = f", batch {p['batch_size']}" if "batch_size" in p else ""
            rows.append((f"{preset} test acc on the sample (width {a['width']}, {a['epochs']} epochs{batch}, "
                         f"{len(a['seeds'])} seeds)",
                         f"{p['mean']:.2%} ± {p['spread']:.2%} ({p['train_seconds']:.0f} s of training per run)"))
            if "ece_final" in p:
                rows.append((f"{preset} ECE (15 bins), final / best predictions",
                             f"{statistics.mean(p['ece_final']):.1%} / {statistics.mean(p['ece_best']):.1%} "
                             f"(seeds: {', '.join(f'{e:.1%}' for e in p['ece_final'])} final)"))
    if "sweep" in r:
        rows += sweep_bench.rows(r["sweep"])
    if "dynamics" in r:
        rows += dynamics_bench.rows(r["dynamics"])
    if "label_noise" in r:
        rows += label_noise.rows(r["label_noise"])
    for size in r.get("many_runs", {}).get("results", []):
        rows.append((f"{size['runs']:,} runs: index load / list --json / Runs page first, rerun, filter / "
                     "Compare of 10",
                     " / ".join(f"{size[k]:.2f}" if k in size else "-"
                                for k in ("first_load_s", "list_json_s", "page_first_render_s", "page_warm_rerun_s",
                                          "page_filter_change_s", "compare_10_s")) + " s"))
    if "gpu" in r:
        g = r["gpu"]
        for label, p in g.items():
            if not isinstance(p, dict):
                continue
            if "seconds_per_epoch" not in p:  # a run that refused or failed before its first epoch
                rows.append((f"{label} on {g['device_name']}", f"{p.get('status', 'no run')}: {p.get('error')}"))
                continue
            mfu = f", MFU {p['mfu']:.1%}" if p.get("mfu") else ""
            compiled = f", compile {p['compile_seconds']:.0f} s" if p.get("compile_seconds") else ""
            split = (f" ({p['train_seconds_per_epoch']:.2f} train + {p['eval_seconds_per_epoch']:.2f} eval)"
                     if "eval_seconds_per_epoch" in p else "")
            whole = " (range test and writes included)" if "outside_epochs_seconds" in p else ""
            rows.append((f"{label} on {g['device_name']} ({g['images_per_epoch']:,} images/epoch, "
                         f"batch {p['batch_size']})",
                         f"{p['seconds_per_epoch']:.2f} s/epoch{split}, {p['total_seconds']:.1f} s for {p['epochs']} "
                         f"epochs{whole}, {p['train_images_per_s']:,.0f} images/s{mfu}{compiled}"))
    if "profile" in r:
        p = r["profile"]
        ranges = ", ".join(f"{name} {v['host_ms'] / 1e3:.2f}" + (f" ({v['kernel_ms'] / 1e3:.2f} on the device)"
                                                                 if v["kernel_ms"] else "")
                           for name, v in list(p["ranges"].items())[:6])
        rows.append((f"profile, one epoch of fast ({p['wall_seconds']:.1f} s with the profiler): s by range",
                     ranges or "no ranges recorded"))
        top = p["top_kernels"] or p["top_host_ops"]
        rows.append((f"profile: top {'kernels' if p['top_kernels'] else 'host ops'}",
                     ", ".join(f"{k['name'][:40]} {k['share']:.0%}" for k in top[:3])))
    if "run_checks" in r:
        checks = r["run_checks"].values()
        rows.append(("run folders read back by the engine's reader",
                     f"{sum(c['clean'] for c in checks)} of {len(checks)} complete and without warnings"))
    if "dashboard" in r and "error" not in r["dashboard"]:
        if "grad_cam_16_s" in r["dashboard"]:
            rows.append(("Grad-CAM, ms per image (16 images, width 64, layer3)",
                         f"{r['dashboard']['grad_cam_16_s'] / 16 * 1000:.0f}"))
        for key, value in r["dashboard"].items():
            if isinstance(value, int):
                rows.append((f"dashboard: {key}", f"{value:,}"))
            elif isinstance(value, float):
                rows.append((f"dashboard: {key}", f"{value:.3f}"))
        browser = r["dashboard"].get("browser")
        if browser:  # seconds to a page in Chromium, 20 runs: script finished / charts drawn
            for name, cold in browser["cold_s"].items():
                warm = browser["warm_s"][name]
                rows.append((f"browser: {name} page, cold / warm s (script, drawn)",
                             f"{cold['script']:.2f}, {cold['drawn']:.2f} / {warm['script']:.2f}, {warm['drawn']:.2f}"))
            rows.append(("browser: gallery filter change, s", f"{browser['filter_change_s']:.2f}"))
            rows.append(("browser: Grad-CAM 16 maps, s (first, with model load)",
                         f"{browser['grad_cam_16_s']:.2f} ({browser['grad_cam_16_first_s']:.2f})"))
    rows.append(("bench wall time", f"{r['total_seconds']:.0f} s"))
    width = max(len(k) for k, _ in rows)
    lines = [f"| {'measure':<{width}} | result |", f"|{'-' * (width + 2)}|--------|"]
    lines += [f"| {k:<{width}} | {v} |" for k, v in rows]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
