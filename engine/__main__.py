"""Command line: `python -m engine {train,resume,list,show,export,import}`.

Every config field is a flag of `train`; errors print one clear message and exit with 2."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from engine import runs
from engine.archive import ArchiveError, export_run, import_run
from engine.checkpoint import CheckpointError
from engine.config import FIELD_TYPES, PRESETS, ConfigError, TrainConfig, _base_type, build_config
from engine.data import DatasetError

FIELD_HELP = {
    "name": "a readable label for the run (also part of its folder name)",
    "preset": f"named bundle of overrides: {', '.join(PRESETS)}",
    "dataset": "cifar10 (downloaded to --data-dir), digits (bundled, offline) or npz:PATH",
    "data_dir": "where CIFAR-10 lives or is downloaded to",
    "runs_dir": "where run folders are written",
    "width": "channels of ResNet18's first stage; 64 is the standard model, smaller is faster",
    "lr": "OneCycle max LR; given, it skips the LR range test",
    "pct_start": "fraction of steps spent rising to max LR (default: 5/epochs)",
    "train_subset": "train on the first N images only (0: all)",
    "test_subset": "evaluate on the first N test images only (0: all)",
    "max_steps": "cap the steps per epoch (0: no cap), for quick runs",
    "device": "auto picks cuda, then mps, then cpu",
    "amp": "bf16 autocast on CUDA",
    "cutout": "side of the square cut out of each training image (0: off)",
    "ema_decay": "keep an exponential moving average of the weights and evaluate it (0: off)",
    "tta_flip": "average predictions over each test image and its mirror",
    "threads": "CPU threads for torch (0: torch's default)",
    "sync_bn": "under torchrun, SyncBatchNorm: statistics over the global batch",
    "batch_size": "global batch size; under torchrun each process takes batch_size / processes",
    "min_steps_per_epoch": "halve the batch size on small datasets until an epoch has this many steps "
                           "(0: off; the fast preset sets 32)",
    "deterministic": "deterministic algorithms (slower; reproducible on one machine)",
}


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    for name, annotation in FIELD_TYPES.items():
        flag = "--" + name.replace("_", "-")
        kind = _base_type(annotation)
        default = getattr(defaults, name)
        text = f"{FIELD_HELP.get(name, '')} (default: {default})".strip()
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(flag, dest=name, type=kind, default=argparse.SUPPRESS,
                                metavar=kind.__name__.upper(), help=text)


def cmd_train(args: argparse.Namespace) -> int:
    from engine.train import train

    overrides = {k: v for k, v in vars(args).items() if k in FIELD_TYPES}
    config = build_config(overrides, args.config)
    result = train(config)
    return 0 if result.status == "completed" else 130


def cmd_resume(args: argparse.Namespace) -> int:
    from engine.train import resume

    result = resume(runs.resolve_run_dir(Path(args.runs_dir), args.run))
    return 0 if result.status == "completed" else 130


def cmd_export(args: argparse.Namespace) -> int:
    run_dir = runs.resolve_run_dir(Path(args.runs_dir), args.run)
    out = export_run(run_dir, Path(args.output) if args.output else None, args.with_checkpoints)
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    path = import_run(Path(args.archive), Path(args.runs_dir))
    print(f"imported as {path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    found = runs.list_runs(Path(args.runs_dir))
    if not found:
        print(f"no runs in {args.runs_dir}/ yet; start one with `make demo` or `make train`")
        return 0
    header = f"{'id':<34} {'name':<16} {'status':<12} {'dataset':<24} {'epochs':>7} {'best acc':>9} {'final acc':>9}"
    print(header)
    print("-" * len(header))
    for run in found:
        s = run.summary()
        epochs = f"{s['epochs_done']}/{s['epochs_planned'] or '?'}"
        best = f"{s['best_test_acc']:.2%}" if s["best_test_acc"] is not None else "-"
        final = f"{s['final_test_acc']:.2%}" if s["final_test_acc"] is not None else "-"
        print(f"{s['id']:<34} {s['name'][:16]:<16} {s['status']:<12} {str(s['dataset'])[:24]:<24} "
              f"{epochs:>7} {best:>9} {final:>9}")
        for warning in run.warnings:
            print(f"{'':<34} warning: {warning}")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = runs.load_run(runs.resolve_run_dir(Path(args.runs_dir), args.run))
    s = run.summary()
    for key, value in s.items():
        print(f"{key:>15}: {value}")
    for warning in run.warnings:
        print(f"        warning: {warning}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m engine",
        description="Train ResNet18 on CIFAR-10 and keep every run in runs/.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a run (the s11 reference recipe by default)",
                           description="Train ResNet18. Precedence: preset < --config file < flags.")
    train.add_argument("--config", metavar="FILE.toml", help="a TOML file of config fields")
    add_config_flags(train)
    train.set_defaults(func=cmd_train)

    listing = sub.add_parser("list", help="a table of the runs in the runs folder")
    listing.add_argument("--runs-dir", default="runs")
    listing.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="the key figures of one run")
    show.add_argument("run", help="a run id from `list`")
    show.add_argument("--runs-dir", default="runs")
    show.set_defaults(func=cmd_show)
    resume = sub.add_parser("resume", help="continue an interrupted run from its last completed epoch")
    resume.add_argument("run", help="a run id from `list`")
    resume.add_argument("--runs-dir", default="runs")
    resume.set_defaults(func=cmd_resume)

    export = sub.add_parser("export", help="pack one run into a .tar.gz to share")
    export.add_argument("run", help="a run id from `list`")
    export.add_argument("-o", "--output", help="archive path (default: RUN_ID.tar.gz)")
    export.add_argument("--with-checkpoints", action="store_true", help="include the weights (tens of MB)")
    export.add_argument("--runs-dir", default="runs")
    export.set_defaults(func=cmd_export)

    importer = sub.add_parser("import", help="unpack a shared run archive into the runs folder, safely")
    importer.add_argument("archive")
    importer.add_argument("--runs-dir", default="runs")
    importer.set_defaults(func=cmd_import)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (ConfigError, DatasetError, runs.RunFormatError, ArchiveError, CheckpointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
