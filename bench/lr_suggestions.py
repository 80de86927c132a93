"""Which range-test suggestion should set max LR by default (`lr_suggestion`, issue 21). For each
preset, width and seed: one range test (`resnet-runs train ... --max-steps 4`, whose lr_finder.json
holds every suggestion), then one short training per distinct suggested LR (`--lr` that value,
nothing else changed). Reports each suggestion's LR and the best test accuracy it reached, and its
regret: how far below the best of the suggestions in that setting it ended. The most robust
suggestion is the one with the smallest worst regret.

`.venv/bin/python -m bench.lr_suggestions` prints the table and writes
bench/results/<date>-CPU-lr-suggestions.json; about 35 minutes on 2 CPU cores with the defaults.
Needs ../shared/data/cifar10-sample.npz."""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.paths import ROOT, SAMPLE, save_result
from engine import runs
from engine.lr_finder import SUGGESTIONS

RESNET_RUNS = ROOT / ".venv" / "bin" / "resnet-runs"


def train(runs_dir: Path, name: str, flags: list[str]) -> runs.Run:
    """One `resnet-runs train` on the sample into its own folder of `runs_dir`; the run it wrote."""
    folder = runs_dir / name
    command = [str(RESNET_RUNS), "train", "--dataset", f"npz:{SAMPLE}", "--runs-dir", str(folder),
               "--name", name, *flags]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-800:]}")
    (run,) = runs.list_runs(folder)
    return run


def one_setting(runs_dir: Path, preset: str, width: int, seed: int, epochs: int, say=print,
                extra: tuple[str, ...] = ()) -> dict:
    """Every suggestion's LR for this preset, width and seed, and the best test accuracy of a run
    trained at each distinct one. `extra` flags go to every command (a test makes them tiny)."""
    setting = ["--preset", preset, "--width", str(width), "--seed", str(seed), *extra]
    tag = f"{preset}-w{width}-s{seed}"
    finder = train(runs_dir, f"{tag}-range-test", [*setting, "--epochs", "1", "--max-steps", "4"]).lr_finder
    lrs = {name: finder["suggestions"][name]["lr"] for name in SUGGESTIONS}
    accuracy: dict[float, float] = {}
    for lr in sorted(set(lrs.values())):
        started = time.perf_counter()
        run = train(runs_dir, f"{tag}-lr-{lr:.4g}", [*setting, "--epochs", str(epochs), "--lr", repr(lr)])
        accuracy[lr] = run.best_epoch()[0]
        assert run.used_lr == lr, (run.used_lr, lr)  # the run trained at exactly the suggestion
        say(f"{tag}: max LR {lr:.4g} ({', '.join(n for n, v in lrs.items() if v == lr)}): best test accuracy "
            f"{accuracy[lr]:.1%} ({time.perf_counter() - started:.0f} s)")
    return {"preset": preset, "width": width, "seed": seed, "warnings": finder.get("warnings", []),
            "suggestions": {name: {"lr": lr, "best_test_acc": accuracy[lr]} for name, lr in lrs.items()}}


def summarise(settings: list[dict]) -> dict:
    """Per suggestion over the settings: the spread of its LR, its mean and worst best-test-accuracy,
    and its regret (the best suggestion's accuracy in that setting minus its own): mean and worst."""
    summary = {}
    for name in SUGGESTIONS:
        lrs = [s["suggestions"][name]["lr"] for s in settings]
        acc = np.array([s["suggestions"][name]["best_test_acc"] for s in settings])
        best = np.array([max(v["best_test_acc"] for v in s["suggestions"].values()) for s in settings])
        summary[name] = {"lr_min": min(lrs), "lr_max": max(lrs), "acc_mean": float(acc.mean()),
                         "acc_min": float(acc.min()), "regret_mean": float((best - acc).mean()),
                         "regret_max": float((best - acc).max())}
    return summary


def most_robust(summary: dict) -> str:
    """The suggestion with the smallest worst regret (then the smallest mean regret)."""
    return min(summary, key=lambda name: (summary[name]["regret_max"], summary[name]["regret_mean"]))


def measure(presets: list[str], widths: list[int], seeds: list[int], epochs: int, say=print) -> dict:
    settings = []
    with tempfile.TemporaryDirectory() as tmp:
        for preset, width, seed in itertools.product(presets, widths, seeds):
            settings.append(one_setting(Path(tmp), preset, width, seed, epochs, say))
    summary = summarise(settings)
    return {"command": f"resnet-runs train --preset P --width W --seed S --epochs {epochs} --lr L "
                       "--dataset npz:cifar10-sample.npz", "machine": f"{platform.machine()}, {os.cpu_count()} cores",
            "settings": settings, "summary": summary, "most_robust": most_robust(summary)}


def rows(result: dict) -> list[tuple[str, str]]:
    """The table: per suggestion, its LR range and accuracy and regret over the settings."""
    count = len(result["settings"])
    return [(f"lr_suggestion {name}{' (most robust)' if name == result['most_robust'] else ''}, {count} settings",
             f"max LR {s['lr_min']:.3g}-{s['lr_max']:.3g}; best test acc mean {s['acc_mean']:.1%}, worst "
             f"{s['acc_min']:.1%}; regret mean {s['regret_mean'] * 100:.1f} points, worst {s['regret_max'] * 100:.1f}")
            for name, s in result["summary"].items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--presets", nargs="+", default=["s11", "fast"])
    parser.add_argument("--widths", type=int, nargs="+", default=[8, 16])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--no-save", action="store_true", help="print only; write no result file")
    args = parser.parse_args(argv)
    if not SAMPLE.is_file():
        print(f"error: {SAMPLE} is missing; this bench needs the CIFAR-10 sample", file=sys.stderr)
        return 2
    result = measure(args.presets, args.widths, args.seeds, args.epochs)
    for name, value in rows(result):
        print(f"{name}: {value}")
    if not args.no_save:
        print(f"wrote {save_result(result, 'lr-suggestions').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
