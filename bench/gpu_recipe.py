"""The recipe on a GPU in one go (issue 22): `s11`, `fast` and `fast --compile`, 20 epochs each of
full-width ResNet18 on the CIFAR-10 sample tiled to 50,000 training and 10,000 test images, each
trained by `resnet-runs train` itself (engine.cli.main, in this process) into a real run folder;
then one epoch of `fast` under torch.profiler, grouped by the ranges the engine marks
(engine/profiling.py); every run folder read back with the engine's reader.

    .venv/bin/python -m bench.gpu_recipe             # CUDA only; about 6 minutes expected on an H200
    .venv/bin/python -m bench.gpu_recipe --dry-run   # the same path, tiny, on the CPU: about 30 s

Per variant: seconds per epoch (training and evaluation apart; the median of epochs 2 on, as
the first pays for warm-up and compilation), images/s, the wall time of the whole command (data
loading, range test, every write), and MFU: training FLOPs (from the run's own torchinfo
summary) per second over the GPU's dense bf16 peak. The epochs' figures are the run's
epochs.jsonl, read back: the numbers a user sees in the dashboard.

Writes bench/results/<date>-<gpu>.json (the dry run: <out>/result.json) after every step, so a
run cut short keeps what it measured; `.venv/bin/python -m bench --render FILE` prints it
again. Run folders go to <out>/runs, the profile's table to <out>/profile.txt. On the lent GPU
machine this runs through bench/gpu_device_run.sh, which says how.

The dry run trains `fast --compile` with TorchDynamo switched off (torch.compile then runs the
model as it is): Inductor needs about 50 s to compile on this project's 2-core CPU, and
tests/test_run.py already compiles for real there."""

from __future__ import annotations

import argparse
import contextlib
import platform
import shlex
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
import torch

from bench.paths import SAMPLE
from engine import cli, runs
from engine.datasets import load_npz
from engine.device import device_name, pick_device
from engine.profiling import PREFIX
from engine.safe_io import atomic_write_json

# Dense bf16 tensor-core peaks from the vendors' datasheets (no sparsity), matched against the
# device's name in this order; the H200 SXM has the H100 SXM's arithmetic.
BF16_PEAK_FLOPS = {"H100 PCIe": 756e12, "H100 NVL": 835e12, "H200 NVL": 835e12, "H100": 989e12,
                   "H200": 989e12, "A100": 312e12}
# Most valuable first, so a run cut short still has the goal's figure.
VARIANTS = {"fast": ["--preset", "fast"], "s11": ["--preset", "s11"],
            "fast + compile": ["--preset", "fast", "--compile"]}
SYNC_OPS = ("cudaDeviceSynchronize", "cudaStreamSynchronize", "cudaEventSynchronize", "aten::_local_scalar_dense",
            "aten::item")


@dataclass(frozen=True)
class Sizes:
    """What the recipe trains: the GPU run, or the dry run's tiny version of the same."""
    train_images: int
    test_images: int
    width: int
    epochs: int
    device: str  # the --device of every run
    lr_finder_iters: int | None  # None: each preset's own (s11 200, fast 100)
    profile_steps: int  # steps of the profiled epoch; 0: the whole epoch
    compile: bool  # False: --compile runs with TorchDynamo off (see the module's docstring)


GPU = Sizes(train_images=50_000, test_images=10_000, width=64, epochs=20, device="cuda", lr_finder_iters=None,
            profile_steps=0, compile=True)
DRY_RUN = Sizes(train_images=512, test_images=256, width=8, epochs=2, device="cpu", lr_finder_iters=20,
                profile_steps=4, compile=False)


# ---------------------------------------------------------------- data and runs


def tile(array: np.ndarray, count: int) -> np.ndarray:
    """The first `count` rows of `array` repeated end to end."""
    return np.concatenate([array] * -(-count // len(array)))[:count]


def write_tiled_sample(sample: Path, sizes: Sizes, folder: Path) -> Path:
    """The sample tiled to the recipe's sizes, as an npz the engine loads like any other (timing
    data: the test images are the sample's 1,017 repeated, so accuracy says little)."""
    data = load_npz(sample)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"cifar10-sample-tiled-{sizes.train_images}-{sizes.test_images}.npz"
    np.savez(path, x_train=tile(data.x_train, sizes.train_images), y_train=tile(data.y_train, sizes.train_images),
             x_test=tile(data.x_test, sizes.test_images), y_test=tile(data.y_test, sizes.test_images),
             classes=np.array(data.classes))
    return path


@contextlib.contextmanager
def dynamo(enabled: bool):
    if enabled:
        yield
    else:
        with torch._dynamo.config.patch(disable=True):
            yield


@dataclass
class Launched:
    run_dir: Path | None
    exit_code: int | None  # None: the command raised (a CUDA or compiler error), `error` says what
    seconds: float  # the command's wall time, everything included
    error: str | None = None


def launch(flags: list[str], name: str, sizes: Sizes, dataset: Path, runs_dir: Path, epochs: int) -> Launched:
    """`resnet-runs train` with the recipe's sizes, in this process; the run folder it made."""
    argv = ["train", *flags, "--name", name, "--dataset", f"npz:{dataset}", "--runs-dir", str(runs_dir),
            "--width", str(sizes.width), "--epochs", str(epochs), "--device", sizes.device]
    if sizes.lr_finder_iters:
        argv += ["--lr-finder-iters", str(sizes.lr_finder_iters)]
    before = set(runs.run_dirs(runs_dir))
    print(f"[recipe] resnet-runs {shlex.join(argv)}", flush=True)
    started = time.perf_counter()
    code, error = None, None
    try:
        with dynamo(sizes.compile or "--compile" not in flags):
            code = cli.main(argv)
    except Exception as exc:  # the run records itself as failed; the recipe goes on with the next step
        traceback.print_exc()
        error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - started
    made = [path for path in runs.run_dirs(runs_dir) if path not in before]
    return Launched(made[0] if made else None, code, seconds, error)


def train_flop_per_image(model_summary: dict) -> float:
    """FLOPs of one training image: the forward pass's multiply-adds (torchinfo's count, recorded
    in the run) at two FLOPs each, times three for forward and backward. 3.33e9 at width 64."""
    return 6 * model_summary["total_mult_adds"] / model_summary["input_shape"][0]


def bf16_peak_flops(device: str) -> float | None:
    return next((flops for key, flops in BF16_PEAK_FLOPS.items() if key in device), None)


def epoch_figures(run: runs.Run, launched: Launched, test_images: int, peak: float | None) -> dict:
    """One variant's figures, from its run folder as the reader sees it."""
    out = {"run_id": run.id, "status": run.status, "error": launched.error or run.error,
           "exit_code": launched.exit_code, "total_seconds": launched.seconds}
    rows = [row for row in run.epochs if row.get("seconds") and row.get("train_seconds")]
    if not rows:
        return out
    steady = rows[1:] or rows  # the first epoch pays for warm-up, autotuning and compilation

    def median(value: Callable[[dict], float]) -> float:
        return statistics.median(value(row) for row in steady)

    flop = train_flop_per_image(run.model_summary) if run.model_summary else None
    images_per_s = median(lambda r: r["images_per_s"])
    eval_seconds = median(lambda r: r["seconds"] - r["train_seconds"])
    epochs_seconds = sum(row["seconds"] for row in rows)
    out.update({
        "epochs": len(rows), "batch_size": run.config["batch_size"], "max_lr": run.used_lr,
        "range_test": run.lr_finder is not None,
        "seconds_per_epoch": median(lambda r: r["seconds"]),
        "train_seconds_per_epoch": median(lambda r: r["train_seconds"]), "eval_seconds_per_epoch": eval_seconds,
        "first_epoch_seconds": rows[0]["seconds"], "compile_seconds": rows[0].get("compile_seconds"),
        "train_images_per_s": images_per_s, "eval_images_per_s": test_images / eval_seconds,
        # setup, data loading, the range test and every write: the wall time outside the epochs' clocks
        "outside_epochs_seconds": launched.seconds - epochs_seconds,
        "final_test_acc": rows[-1].get("test_acc"), "train_flop_per_image": flop,
        "mfu": images_per_s * flop / peak if peak and flop else None,
        # every training image of the run over the command's whole wall time
        "mfu_whole_run": (sum(r["images_per_s"] * r["train_seconds"] for r in rows) * flop / launched.seconds / peak
                          if peak and flop else None),
    })
    return out


def check_run(run_dir: Path) -> dict:
    """Open a run the way the dashboard does, touching every file the reader knows, and collect
    each warning: the reader's problems and any Python warning raised on the way."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = runs.load_run(run_dir)
        run.steps()
        run.lr_finder_steps()
        run.model_summary_text()
        run.test_images()
        run.train_samples()
        for tag in run.prediction_tags():
            run.predictions(tag)
    found = run.warnings + [f"{w.category.__name__}: {w.message}" for w in caught]
    complete = run.status == "completed" and len(run.epochs) == run.epochs_planned
    return {"run_id": run.id, "status": run.status, "epochs": len(run.epochs), "epochs_planned": run.epochs_planned,
            "predictions": run.prediction_tags(), "checkpoints": run.checkpoint_tags(), "warnings": found,
            "clean": complete and not found}


# ---------------------------------------------------------------- the profile


def _device_ms(event) -> float:
    return getattr(event, "device_time_total", 0.0) / 1e3


def _self_device_ms(event) -> float:
    return getattr(event, "self_device_time_total", 0.0) / 1e3


def summarize_profile(events, wall_seconds: float, top: int = 10) -> dict:
    """Where one profiled run's time went. `ranges`: each range the engine marks, with its host
    time (wall time on the CPU, children included), the device time of the kernels launched in
    it and, on a GPU, the time its span covered there. `top_kernels` / `top_host_ops` by self
    time; `host_syncs`: the calls that make the CPU wait for the device."""
    from torch.autograd import DeviceType

    ranges: dict[str, dict] = {}
    kernels, host_ops, syncs = [], [], {}
    for e in events:
        on_host = e.device_type == DeviceType.CPU
        if e.key.startswith(PREFIX):
            entry = ranges.setdefault(e.key[len(PREFIX):], {"calls": 0, "host_ms": 0.0, "kernel_ms": 0.0,
                                                             "device_span_ms": None})
            if on_host:
                entry.update(calls=e.count, host_ms=e.cpu_time_total / 1e3, kernel_ms=_device_ms(e))
            else:
                entry["device_span_ms"] = _device_ms(e)
        elif not on_host and not getattr(e, "is_user_annotation", False):
            kernels.append({"name": e.key, "calls": e.count, "ms": _self_device_ms(e)})
        elif on_host:
            host_ops.append({"name": e.key, "calls": e.count, "ms": e.self_cpu_time_total / 1e3})
            if e.key in SYNC_OPS or e.key.startswith("cudaMemcpy"):
                syncs[e.key] = {"calls": e.count, "host_ms": e.cpu_time_total / 1e3}
    wall_ms = wall_seconds * 1e3
    kernel_ms = sum(k["ms"] for k in kernels)
    for entry in ranges.values():
        entry["host_share"] = entry["host_ms"] / wall_ms
    by_host = dict(sorted(ranges.items(), key=lambda item: -item[1]["host_ms"]))
    labelled_kernel_ms = sum(r["kernel_ms"] for r in ranges.values())
    for rows in (kernels, host_ops):
        rows.sort(key=lambda row: -row["ms"])
        for row in rows:
            row["share"] = row["ms"] / (kernel_ms if rows is kernels else wall_ms)
    return {"wall_seconds": wall_seconds, "ranges": by_host,
            "host_ms_outside_ranges": wall_ms - sum(r["host_ms"] for r in ranges.values()),
            "kernel_ms": kernel_ms, "kernel_ms_outside_ranges": kernel_ms - labelled_kernel_ms,
            "top_kernels": kernels[:top], "top_host_ops": host_ops[:top], "host_syncs": syncs}


def profile_fast_epoch(sizes: Sizes, dataset: Path, runs_dir: Path, lr: float, out: Path, trace: bool) -> dict:
    """One epoch of `fast` as a run of its own (`--epochs 1`, the LR given, so no range test),
    after the timed runs, so cuDNN's autotuning is done. The whole command is profiled: its
    setup writes and the last epoch's writes (best and final dumps and checkpoints) included."""
    activities = [torch.profiler.ProfilerActivity.CPU]
    on_gpu = sizes.device.startswith("cuda")
    if on_gpu:
        activities.append(torch.profiler.ProfilerActivity.CUDA)
    flags = ["--preset", "fast", "--lr", repr(lr)]
    if sizes.profile_steps:
        flags += ["--max-steps", str(sizes.profile_steps)]
    with torch.profiler.profile(activities=activities) as prof:
        launched = launch(flags, "recipe profile fast", sizes, dataset, runs_dir, epochs=1)
    started = time.perf_counter()
    averages = prof.key_averages()
    summary = summarize_profile(averages, launched.seconds)
    sort = "self_device_time_total" if on_gpu else "self_cpu_time_total"
    (out / "profile.txt").write_text(averages.table(sort_by=sort, row_limit=50, max_name_column_width=70) + "\n")
    if trace:
        prof.export_chrome_trace(str(out / "profile-trace.json"))
    summary["processing_seconds"] = time.perf_counter() - started
    summary.update(exit_code=launched.exit_code, error=launched.error)
    summary["steps"] = sizes.profile_steps or "all"
    if launched.run_dir is not None:
        run = runs.load_run(launched.run_dir)
        summary["run_id"] = run.id
        summary["epoch"] = {k: run.epochs[0].get(k) for k in ("seconds", "train_seconds", "images_per_s")
                            } if run.epochs else None
    return summary


# ---------------------------------------------------------------- one go


def run_recipe(sizes: Sizes, sample: Path, out: Path, variants: list[str], profile: bool = True,
               trace: bool = False, save: Callable[[dict], None] = lambda results: None) -> dict:
    """Everything, in order of value; `save` gets the results after every step. A run that fails
    is recorded and the next step runs; an interrupted one (Ctrl-C, SIGTERM) ends the recipe."""
    device = pick_device(sizes.device)
    name = device_name(device)
    started = time.perf_counter()
    results: dict = {"date": date.today().isoformat(), "device": name,
                     "machine": f"{platform.machine()}, {torch.get_num_threads()} torch threads",
                     "torch": torch.__version__, "recipe": {**asdict(sizes), "sample": str(sample), "out": str(out)}}
    dataset = write_tiled_sample(sample, sizes, out / "data")
    runs_dir = out / "runs"
    gpu = results["gpu"] = {"device_name": name, "bf16_peak_flops": bf16_peak_flops(name) if device.type == "cuda"
                            else None, "images_per_epoch": sizes.train_images, "test_images": sizes.test_images,
                            "width": sizes.width}
    checks = results["run_checks"] = {}
    codes = []
    for label in variants:
        launched = launch(VARIANTS[label], f"recipe {label}", sizes, dataset, runs_dir, sizes.epochs)
        codes.append(launched.exit_code)
        if launched.run_dir is None:
            gpu[label] = {"exit_code": launched.exit_code,
                          "error": launched.error or "no run folder was made (the command refused; see the log)"}
        else:
            gpu[label] = epoch_figures(runs.load_run(launched.run_dir), launched, sizes.test_images,
                                       gpu["bf16_peak_flops"])
            checks[label] = check_run(launched.run_dir)
        save(results)
        if launched.exit_code == cli.EXIT_INTERRUPTED:
            break
    if profile and cli.EXIT_INTERRUPTED not in codes:
        lr = (gpu.get("fast") or {}).get("max_lr") or 0.05
        results["profile"] = profile_fast_epoch(sizes, dataset, runs_dir, lr, out, trace)
        codes.append(results["profile"]["exit_code"])
        if results["profile"].get("run_id"):
            checks["profile"] = check_run(runs_dir / results["profile"]["run_id"])
    results["complete"] = (len(codes) == len(variants) + profile and set(codes) == {0}
                           and all(c["clean"] for c in checks.values()))
    results["total_seconds"] = time.perf_counter() - started
    save(results)
    return results


def gpu_section(sample: Path, epochs: int = GPU.epochs) -> dict:
    """`make bench`'s GPU section: the three variants at the recipe's sizes, in a folder that is
    removed afterwards (`python -m bench.gpu_recipe` keeps its runs and adds the profile)."""
    with tempfile.TemporaryDirectory() as tmp:
        sizes = Sizes(**{**asdict(GPU), "epochs": epochs})
        return run_recipe(sizes, sample, Path(tmp), list(VARIANTS), profile=False)["gpu"]


def main(argv: list[str] | None = None) -> int:
    from bench.__main__ import render, result_path

    parser = argparse.ArgumentParser(prog="python -m bench.gpu_recipe", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true",
                        help="tiny sizes on the CPU (width 8, 512 / 256 images, 2 epochs, 4 profiled steps)")
    parser.add_argument("--sample", default=str(SAMPLE), help="the CIFAR-10 sample npz (default: %(default)s)")
    parser.add_argument("--out", metavar="DIR", help="where the runs, the tiled data and profile.txt go "
                                                     "(default: a new folder under the system's temp folder)")
    parser.add_argument("--result", metavar="FILE.json", help="the results file (default: "
                        "bench/results/<date>-<device>.json; with --dry-run, <out>/result.json)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--epochs", type=int, help="epochs per variant instead of the recipe's 20 (or 2)")
    parser.add_argument("--no-profile", action="store_true", help="skip the profiled epoch")
    parser.add_argument("--trace", action="store_true", help="also write <out>/profile-trace.json (Chrome trace)")
    args = parser.parse_args(argv)
    sizes = DRY_RUN if args.dry_run else GPU
    if args.epochs:
        sizes = Sizes(**{**asdict(sizes), "epochs": args.epochs})
    if not Path(args.sample).is_file():
        print(f"error: {args.sample} is absent; pass --sample PATH to the CIFAR-10 sample npz", file=sys.stderr)
        return 2
    if not args.dry_run and not torch.cuda.is_available():
        print("error: no CUDA GPU is visible; the recipe's full sizes are for a GPU (on a CPU, use --dry-run)",
              file=sys.stderr)
        return 2
    if args.result and not Path(args.result).resolve().parent.is_dir():
        print(f"error: the folder of --result {args.result} does not exist; create it first", file=sys.stderr)
        return 2
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="gpu-recipe-"))
    out.mkdir(parents=True, exist_ok=True)
    device = device_name(pick_device(sizes.device))
    result = Path(args.result) if args.result else (out / "result.json" if args.dry_run else
                                                    result_path(date.today().isoformat(), device))
    results = run_recipe(sizes, Path(args.sample), out, args.variants, profile=not args.no_profile,
                         trace=args.trace, save=lambda r: atomic_write_json(result, r))
    print(render(results))
    print(f"\nresults: {result}\nruns:    {out / 'runs'}\nprofile: {out / 'profile.txt'}")
    for label, check in results["run_checks"].items():
        for warning in check["warnings"]:
            print(f"warning: run {label} ({check['run_id']}): {warning}", file=sys.stderr)
    return 0 if results["complete"] else 1


if __name__ == "__main__":
    sys.exit(main())
