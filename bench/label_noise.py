"""How well a run's per-image scores find wrong labels (issue 21): flip 5% of the CIFAR-10
sample's training labels to another class (seeded), train exactly

    resnet-runs train --preset fast --width 16 --epochs 15 --dataset npz:NOISY

on it, and report for every per-image score the run stores the AUROC (flipped vs kept, 0.5 is
chance) and the precision at k (k = the number flipped: the share of flipped labels among the
k images ranked most suspicious). `.venv/bin/python -m bench.label_noise --seeds 0 1 2` prints
the table and writes bench/results/<date>-CPU-label-noise.json; about 3 minutes per seed on
2 CPU cores. Needs ../shared/data/cifar10-sample.npz."""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from bench.paths import ROOT, SAMPLE, save_result
from engine import dynamics, runs
from engine.dynamics_scores import ImageScores, image_scores, likely_mislabelled

COMMAND = ["train", "--preset", "fast", "--width", "16", "--epochs", "15"]
NOISE = 0.05


def flip_labels(labels: np.ndarray, share: float, num_classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(noisy labels, flipped mask): `share` of the labels, chosen at random, moved to another class
    drawn uniformly from the other classes."""
    rng = np.random.default_rng(seed)
    flipped = np.zeros(len(labels), bool)
    flipped[rng.choice(len(labels), round(share * len(labels)), replace=False)] = True
    noisy = labels.copy()
    noisy[flipped] = (labels[flipped] + rng.integers(1, num_classes, flipped.sum())) % num_classes
    return noisy, flipped


def auroc(score: np.ndarray, positive: np.ndarray) -> float:
    """Probability that a random positive scores above a random negative (ties count half):
    the Mann-Whitney statistic from average ranks."""
    order = np.argsort(score, kind="stable")
    ranks = np.empty(len(score))
    ranks[order] = np.arange(1, len(score) + 1)
    sorted_scores = score[order]  # average the ranks of tied scores
    starts = np.flatnonzero(np.r_[True, sorted_scores[1:] != sorted_scores[:-1]])
    ends = np.r_[starts[1:], len(score)]
    for start, end in zip(starts, ends):
        if end - start > 1:
            ranks[order[start:end]] = (start + 1 + end) / 2
    n_pos, n_neg = positive.sum(), (~positive).sum()
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def precision_at_k(score: np.ndarray, positive: np.ndarray) -> float:
    k = int(positive.sum())
    return float(positive[np.argsort(-score, kind="stable")[:k]].mean())


def suspicion(scores: ImageScores) -> dict[str, np.ndarray]:
    """Every per-image score the run stores, turned so that higher means more likely mislabelled."""
    rank = np.empty(len(scores), np.float64)
    rank[likely_mislabelled(scores)] = np.arange(len(scores), 0, -1)  # the dashboard's order
    found = {"dashboard's ranking": rank, "AUM (low)": -scores.aum,
             "hard to learn (low confidence)": -scores.confidence, "correctness (low)": -scores.correctness,
             "forgetting count": scores.forgetting.astype(np.float64)}
    if scores.final_prob is not None:
        found["final model p(given label) (low)"] = -scores.final_prob
    return found


def _ranks(score: np.ndarray) -> np.ndarray:
    """Each value's rank in [0, 1): scores of different scales, made summable."""
    ranks = np.empty(len(score))
    ranks[np.argsort(score, kind="stable")] = np.arange(len(score)) / len(score)
    return ranks


def combinations(scores: ImageScores, arrays: dynamics.Dynamics) -> dict[str, np.ndarray]:
    """Scores the run does not store, built from what it stores, studied as candidates for the
    dashboard's ranking (higher = more suspicious): the ways of combining the signals the issue
    names. None has beaten the final model's probability on its own by more than a few thousandths."""
    if scores.final_prob is None or arrays.final_train_confidence is None:
        return {}
    final = scores.final_prob.astype(np.float64)
    late = arrays.train_prob[-max(1, len(arrays.train_prob) // 3):].astype(np.float64)  # the last third of epochs
    with np.errstate(invalid="ignore"):
        late_prob = np.nanmean(late, 0)
        late_margin = np.nanmean(arrays.train_margin[-len(late):].astype(np.float64), 0)
    log_final = np.log(np.clip(final, 1e-6, 1))
    log_ratio = log_final - np.log(np.clip(arrays.final_train_confidence.astype(np.float64), 1e-6, 1))
    return {"studied: ranks of final p + AUM": _ranks(-final) + _ranks(-scores.aum),
            "studied: mean of final p and last third's p": -(final + np.nan_to_num(late_prob, nan=1.0)) / 2,
            "studied: AUM over the last third of epochs": -np.nan_to_num(late_margin, nan=np.inf),
            "studied: log final p + 0.3 log(p / p predicted)": -(log_final + 0.3 * log_ratio)}


def one_seed(seed: int, workdir: Path, sample: Path = SAMPLE, rescore: bool = False) -> dict:
    """Flip, train and score one seed in `workdir`; with `rescore`, only score the run an earlier
    `--keep` left there (after a change to the scores, without training again)."""
    with np.load(sample, allow_pickle=False) as npz:
        arrays = {key: npz[key] for key in npz.files}
    noisy, flipped = flip_labels(arrays["y_train"], NOISE, len(arrays["classes"]), seed)
    path, runs_dir = workdir / f"noisy-{seed}.npz", workdir / f"runs-{seed}"
    if not rescore:
        np.savez(path, **{**arrays, "y_train": noisy})
        command = [str(ROOT / ".venv" / "bin" / "resnet-runs"), *COMMAND, "--dataset", f"npz:{path}",
                   "--runs-dir", str(runs_dir), "--name", f"label-noise-{seed}"]
        done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        if done.returncode:
            raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-800:]}")
    found = runs.list_runs(runs_dir)
    if len(found) != 1:
        raise RuntimeError(f"{runs_dir} holds {len(found)} runs, not the one run of flip seed {seed}")
    run = found[0]
    recorded = dynamics.read_dynamics(run.path)
    scores = image_scores(recorded)
    table = {}
    for name, score in {**suspicion(scores), **combinations(scores, recorded)}.items():
        table[name] = {"auroc": auroc(score, flipped), "precision_at_k": precision_at_k(score, flipped)}
    return {"seed": seed, "flipped": int(flipped.sum()), "train_images": len(flipped),
            "test_acc": run.epochs[-1]["test_acc"], "max_lr": run.used_lr,
            "run_seconds": round(run.duration_seconds() or float("nan"), 1), "scores": table}


def measure(sample: Path = SAMPLE, seeds: tuple[int, ...] = (0, 1, 2), say=print, keep: Path | None = None,
            rescore: Path | None = None) -> dict:
    """One noisy run per flip seed; every score's AUROC and precision at k per seed, and their
    mean and worst over the seeds. With `keep`, the noisy datasets and the runs stay in that
    folder (to study the scores further, or open the runs in the dashboard); with `rescore`, the
    runs kept in that folder are scored again, not trained."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = rescore or keep or Path(tmp)
        for seed in seeds:
            result = one_seed(seed, workdir, sample, rescore=rescore is not None)
            results.append(result)
            say(f"seed {seed}: {result['flipped']} of {result['train_images']} labels flipped, test accuracy "
                f"{result['test_acc']:.1%}, max LR {result['max_lr']:.3g}, run {result['run_seconds']:.0f} s")
            for name, row in result["scores"].items():
                say(f"  {name:<50} AUROC {row['auroc']:.3f}  precision@k {row['precision_at_k']:.3f}")
    return {"command": "resnet-runs " + " ".join(COMMAND) + " --dataset npz:NOISY", "noise": NOISE,
            "machine": f"{platform.machine()}, {os.cpu_count()} cores", "seeds": results,
            "summary": summarise(results)}


def summarise(results: list[dict]) -> dict:
    """Per score, over the seeds: mean and worst AUROC, mean precision at k."""
    names = [name for name in results[0]["scores"] if all(name in r["scores"] for r in results)]
    return {name: {"auroc_mean": float(np.mean([r["scores"][name]["auroc"] for r in results])),
                   "auroc_min": float(np.min([r["scores"][name]["auroc"] for r in results])),
                   "precision_at_k_mean": float(np.mean([r["scores"][name]["precision_at_k"] for r in results]))}
            for name in names}


def rows(result: dict) -> list[tuple[str, str]]:
    """`make bench`'s table rows: each score's AUROC (mean, worst seed) and precision at k."""
    seeds = ", ".join(str(r["seed"]) for r in result["seeds"])
    return [(f"wrong labels found by {name}, 5% flipped, flip seeds {seeds}",
             f"AUROC {row['auroc_mean']:.3f} (worst seed {row['auroc_min']:.3f}); "
             f"precision@k {row['precision_at_k_mean']:.3f}")
            for name, row in result["summary"].items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--no-save", action="store_true", help="print only; write no result file")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the noisy datasets and the runs in DIR (new or empty) instead of deleting them")
    parser.add_argument("--rescore", type=Path, metavar="DIR",
                        help="score the runs an earlier --keep DIR left, without training them again")
    args = parser.parse_args(argv)
    if not SAMPLE.is_file():
        print(f"error: {SAMPLE} is missing; this bench needs the CIFAR-10 sample", file=sys.stderr)
        return 2
    if args.keep is not None:
        if args.keep.exists() and (not args.keep.is_dir() or any(args.keep.iterdir())):
            print(f"error: --keep {args.keep} is not an empty folder; name a new or empty one", file=sys.stderr)
            return 2
        args.keep.mkdir(parents=True, exist_ok=True)
    if args.rescore is not None and args.keep is not None:
        print("error: --rescore and --keep exclude each other: --rescore reads the runs --keep left", file=sys.stderr)
        return 2
    result = measure(SAMPLE, tuple(args.seeds), keep=args.keep, rescore=args.rescore)
    for name, value in rows(result):
        print(f"{name}: {value}")
    if not args.no_save:
        print(f"wrote {save_result(result, 'label-noise').relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
