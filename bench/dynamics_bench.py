"""What recording the training dynamics costs (engine/dynamics.py): the same run with and
without it (`dynamics = false`), interleaved pair by pair with the order alternating, so a busy
machine slows both alike; the overhead is the median of the pairs' ratios, not an absolute speed.

Two ratios per pair: the training pass alone (epochs.jsonl's `train_seconds`: the per-step
recording, on the device, no host sync) and the whole run's wall time (the epoch-end gather and
the one atomic file write per epoch included; the LR is fixed, so no range test). On a loaded
machine those ratios move by tens of percent from run to run, so the recording's own time is
also measured directly, beside each training step (`direct_overhead`): that is the figure to
read against the 2% goal. Also the file size per 1,000 images per epoch.
`.venv/bin/python -m bench.dynamics_bench` prints the table; `make bench` includes it."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.paths import SAMPLE
from engine import dynamics, runs
from engine.config import build_config
from engine.datasets import ImageDataset, load_npz
from engine.train import train


def _run(data: ImageDataset, root: Path, record: bool, width: int, epochs: int, images: int) -> tuple[float, float]:
    """(wall seconds, training-pass seconds) of one run."""
    config = build_config(dict(width=width, epochs=epochs, batch_size=128, train_subset=images,
                               test_subset=images // 4, lr=0.05, dynamics=record, runs_dir=str(root),
                               dataset=f"npz:{SAMPLE}", name="with" if record else "without"))
    started = time.perf_counter()
    result = train(config, data=data, quiet=True)
    wall = time.perf_counter() - started
    return wall, sum(row["train_seconds"] for row in runs.load_run(result.run_dir).epochs)


def direct_overhead(data: ImageDataset, width: int = 16, batch: int = 128, images: int = 2048) -> dict:
    """The recording's own time against the training step's, measured step by step side by side
    (so a machine whose load changes by the minute slows both alike): per step the recorder's
    `add` after a real forward / backward / SGD step, then the epoch end (gather to the host,
    the compact arrays, the atomic file write)."""
    import torch

    from engine.data import TrainBatches, to_device_tensor
    from engine.evaluate import predict
    from engine.model import create_model

    config = build_config(dict(width=width, batch_size=batch))
    cpu = torch.device("cpu")
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    batches = TrainBatches(to_device_tensor(data.x_train[:images], cpu), torch.from_numpy(data.y_train[:images]),
                           config, mean, std)
    model = create_model(len(data.classes), width)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    recorder, step_s, record_s = dynamics.TrainRecorder(), 0.0, 0.0
    model.train()
    for index, x, y in batches.indexed():
        started = time.perf_counter()
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        step_s += time.perf_counter() - started
        started = time.perf_counter()
        recorder.add(index, logits, y)
        record_s += time.perf_counter() - started
    dump = predict(model, to_device_tensor(data.x_test[:images // 4], cpu),
                   torch.from_numpy(data.y_test[:images // 4]), mean, std, 512)
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        dynamics.write_epoch(Path(tmp), 1, dynamics.epoch_arrays(recorder.epoch_part(), images, dump))
        end_s = time.perf_counter() - started
    return {"train_step_seconds": step_s, "record_seconds": record_s, "epoch_end_seconds": end_s,
            "overhead": (record_s + end_s) / step_s}


def dynamics_overhead(data: ImageDataset, width: int = 16, epochs: int = 2, images: int = 2048,
                      pairs: int = 3) -> dict:
    """The direct overhead (`direct_overhead`), the median overhead over `pairs` interleaved
    with/without runs (noisy on a loaded machine: reported as a check), and the file sizes."""
    direct = direct_overhead(data, width, 128, images)
    wall_ratios, train_ratios, sizes = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for pair in range(pairs):
            order = (True, False) if pair % 2 == 0 else (False, True)
            timed = {record: _run(data, Path(tmp) / f"{pair}-{record}", record, width, epochs, images)
                     for record in order}
            wall_ratios.append(timed[True][0] / timed[False][0] - 1)
            train_ratios.append(timed[True][1] / timed[False][1] - 1)
        run_dir = runs.run_dirs(Path(tmp) / "0-True")[0]
        sizes = [path.stat().st_size for _, path in dynamics.epoch_files(run_dir)]
        seconds_per_epoch = statistics.median(
            row["seconds"] for row in runs.load_run(runs.run_dirs(Path(tmp) / "0-False")[0]).epochs)
    test_images = images // 4
    return {"width": width, "epochs": epochs, "train_images": images, "test_images": test_images, "pairs": pairs,
            "direct": direct,
            "train_pass_overhead": statistics.median(train_ratios), "train_pass_overheads": train_ratios,
            "run_overhead": statistics.median(wall_ratios), "run_overheads": wall_ratios,
            "seconds_per_epoch_without": seconds_per_epoch,
            "epoch_file_bytes": statistics.median(sizes),
            "bytes_per_1000_images_per_epoch": statistics.median(sizes) / (images + test_images) * 1000}


def rows(r: dict) -> list[tuple[str, str]]:
    """Table rows for `python -m bench` and this module's own table."""
    head = f"width {r['width']}, {r['train_images']:,} + {r['test_images']:,} images, {r['pairs']} pairs"
    d = r["direct"]
    return [(f"dynamics recording, its own time over the training steps' (width {r['width']}, batch 128, "
             f"{r['train_images']:,} images)",
             f"{d['overhead']:.2%} ({d['record_seconds']:.3f} s per epoch in steps + {d['epoch_end_seconds']:.3f} s "
             f"at the epoch's end, against {d['train_step_seconds']:.1f} s of steps)"),
            (f"dynamics recording overhead ({head}): training pass / whole run, median",
             f"{r['train_pass_overhead']:+.1%} / {r['run_overhead']:+.1%} "
             f"(epoch without: {r['seconds_per_epoch_without']:.1f} s)"),
            ("dynamics file size per 1,000 images per epoch",
             f"{r['bytes_per_1000_images_per_epoch'] / 1000:.2f} kB "
             f"({r['epoch_file_bytes']:,.0f} bytes per epoch file)")]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.dynamics_bench", description=__doc__)
    parser.add_argument("--sample", default=str(SAMPLE), help="the CIFAR-10 sample npz")
    parser.add_argument("--pairs", type=int, default=3, help="interleaved with/without pairs")
    parser.add_argument("--images", type=int, default=2048, help="training images per run")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    args = parser.parse_args(argv)
    if not Path(args.sample).exists():
        print(f"error: {args.sample} is absent; pass --sample PATH to a CIFAR-10 npz", file=sys.stderr)
        return 2
    result = dynamics_overhead(load_npz(Path(args.sample)), pairs=args.pairs, images=args.images)
    print(json.dumps(result) if args.json else "\n".join(f"| {k} | {v} |" for k, v in rows(result)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
