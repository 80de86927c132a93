"""What a sweep costs per trial beyond its runs: the same tiny runs started by hand (one
`resnet-runs train` process each, one after another), as one `resnet-runs sweep` (one process),
and as one sweep on a local Ray cluster (`--ray local`: Ray's start, a worker per trial slot).

Each mode trains the same four trials into a runs folder of its own. A trial's own work is its
epochs' training and evaluation time (epochs.jsonl's `seconds`); everything else is overhead:
starting a process and importing torch, loading the data, the run's setup writes, Ray's start
and its workers. On Ray the trials share the machine (one per CPU, or one per GPU with CUDA), so
its overhead counts slot-seconds: wall time times the slots, less the trials' own work.
`.venv/bin/python -m bench.sweep_bench` prints the table; `make bench` includes it."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.paths import ROOT, SAMPLE
from engine import runs
from engine.run_summary import summary_of

LRS = (0.02, 0.05)
SEEDS = (1, 2)


def _flags(sample: Path, width: int, epochs: int, images: int) -> list[str]:
    return ["--dataset", f"npz:{sample}", "--width", str(width), "--epochs", str(epochs), "--batch-size", "64",
            "--train-subset", str(images), "--test-subset", str(images // 4), "--threads", "1"]


def _timed(argv: list[str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "engine", *argv], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(argv[:2])} ...` failed ({done.returncode}): {done.stderr[-1500:]}")
    return seconds


def _mode(wall: float, runs_dir: Path, trials: int, slots: int = 1) -> dict:
    work = [sum(row.get("seconds") or 0.0 for row in runs.load_run(p).epochs) for p in runs.run_dirs(runs_dir)]
    statuses = [summary_of(p)["status"] for p in runs.run_dirs(runs_dir)]
    if statuses != ["completed"] * trials:
        raise RuntimeError(f"{runs_dir}: expected {trials} completed runs, found {statuses}")
    return {"wall_seconds": wall, "slots": slots, "train_eval_seconds": sum(work),
            "overhead_per_trial_seconds": (wall * slots - sum(work)) / trials, "trials_per_hour": trials / wall * 3600}


def sweep_overhead(sample: Path = SAMPLE, width: int = 8, epochs: int = 2, images: int = 1024,
                   ray: bool = True) -> dict:
    """Four trials (lr 0.02 / 0.05 x seeds 1 / 2) by hand, as a sweep here, and on Ray."""
    import torch

    flags = _flags(sample, width, epochs, images)
    trials = len(LRS) * len(SEEDS)
    result: dict = {"trials": trials, "width": width, "epochs": epochs, "train_images": images,
                    "cuda": torch.cuda.is_available()}
    with tempfile.TemporaryDirectory(prefix="sweep-bench-") as tmp:
        root = Path(tmp)
        wall = 0.0
        for lr in LRS:
            for seed in SEEDS:
                wall += _timed(["train", *flags, "--lr", str(lr), "--seed", str(seed), "--runs-dir",
                                str(root / "hand")])
        result["by_hand"] = _mode(wall, root / "hand", trials)
        sweep = ["sweep", *flags, "--grid", "lr=" + ",".join(map(str, LRS)), "--seeds", str(len(SEEDS))]
        result["sweep"] = _mode(_timed([*sweep, "--runs-dir", str(root / "sweep")]), root / "sweep", trials)
        if ray:  # --ray local offers every CPU, a trial takes one (or one GPU each with CUDA)
            slots = min(trials, torch.cuda.device_count() if result["cuda"] else os.cpu_count() or 1)
            result["ray"] = _mode(_timed([*sweep, "--ray", "local", "--runs-dir", str(root / "ray")]),
                                  root / "ray", trials, slots)
    hand = result["by_hand"]["wall_seconds"]
    for mode in ("sweep", "ray"):
        if mode in result:
            result[mode]["against_hand_per_trial_seconds"] = (result[mode]["wall_seconds"] - hand) / trials
    return result


def rows(r: dict) -> list[tuple[str, str]]:
    """Table rows for `python -m bench` and this module's own table."""
    head = f"{r['trials']} trials, width {r['width']}, {r['epochs']} epochs, {r['train_images']} images"
    found = []
    for mode, label in (("by_hand", "by hand, one train process each"), ("sweep", "one sweep, one process"),
                        ("ray", "one sweep on a local Ray cluster")):
        if mode not in r:
            continue
        m = r[mode]
        against = (f"; {m['against_hand_per_trial_seconds']:+.1f} s per trial against by hand"
                   if "against_hand_per_trial_seconds" in m else "")
        slots = f" on {m['slots']} slots" if m["slots"] > 1 else ""
        found.append((f"sweep overhead ({head}): {label}",
                      f"{m['wall_seconds']:.1f} s wall{slots}, {m['train_eval_seconds']:.1f} s training and "
                      f"evaluating, {m['overhead_per_trial_seconds']:.1f} s overhead per trial{against}; "
                      f"{m['trials_per_hour']:,.0f} trials/hour"))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sweep_bench", description=__doc__)
    parser.add_argument("--sample", default=str(SAMPLE), help="the CIFAR-10 sample npz")
    parser.add_argument("--no-ray", action="store_true", help="leave out the Ray cluster")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv)
    if not Path(args.sample).exists():
        print(f"error: {args.sample} is absent; pass --sample PATH to a CIFAR-10 npz", file=sys.stderr)
        return 2
    result = sweep_overhead(Path(args.sample), ray=not args.no_ray)
    if args.json:
        print(json.dumps(result))
        return 0
    for label, value in rows(result):
        print(f"{label}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
