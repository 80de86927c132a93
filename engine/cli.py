"""The `resnet-runs` command (also `python -m engine`): train, resume, list, show, export, import,
dashboard.

Every config field is a flag of `train`, with the help text written beside the field. Every
failure is one `error: ...` line on stderr and exit status 2; text read from a run reaches the
terminal through `runs.printable`, so a hostile name cannot drive it."""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

from engine import commands, runs
from engine.archive import export_run, import_runs
from engine.config import FIELD_HELP, FIELD_TYPES, TrainConfig, base_type, build_config

EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    for name, annotation in FIELD_TYPES.items():
        flag = "--" + name.replace("_", "-")
        kind = base_type(annotation)
        text = f"{FIELD_HELP[name]} (default: {getattr(defaults, name)})".replace("%", "%%")
        if kind is bool:
            parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                                default=argparse.SUPPRESS, help=text)
        else:
            parser.add_argument(flag, dest=name, type=kind, default=argparse.SUPPRESS,
                                metavar=kind.__name__.upper(), help=text)


def _outcome(start_training) -> int:
    """0 completed, 130 interrupted, 1 failed (the run records why; the reason is printed once)."""
    from engine.train import TrainingFailed

    try:
        result = start_training()
    except TrainingFailed as exc:
        print(f"error: {runs.printable(exc)}; the run is recorded as failed", file=sys.stderr)
        return EXIT_FAILED
    return 0 if result.status == "completed" else EXIT_INTERRUPTED


def cmd_train(args: argparse.Namespace) -> int:
    from engine.train import train

    overrides = {k: v for k, v in vars(args).items() if k in FIELD_TYPES}
    environment = {"runs_dir": os.environ["RUNS_DIR"]} if os.environ.get("RUNS_DIR") else {}
    config = build_config(overrides, args.config, environment)
    return _outcome(lambda: train(config))


def cmd_resume(args: argparse.Namespace) -> int:
    from engine.train import resume

    run_dir = runs.resolve_run_dir(Path(args.runs_dir), args.run)
    return _outcome(lambda: resume(run_dir))


def cmd_export(args: argparse.Namespace) -> int:
    run_dir = runs.resolve_run_dir(Path(args.runs_dir), args.run)
    out = export_run(run_dir, Path(args.output) if args.output else None, args.with_checkpoints)
    print(f"wrote {runs.printable(out)} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    done = import_runs(Path(args.archive), Path(args.runs_dir))
    for path in done.runs:
        print(f"imported as {runs.printable(path)}")
    for name in done.skipped:
        print(f"skipped {runs.printable(name)} (not a run folder)")
    return 0


def _cell(value: object, width: int) -> str:
    text = runs.printable(value)
    return text if len(text) <= width else text[:width - 1] + "~"


def _problem_lines(run: runs.Run, indent: str) -> list[str]:
    """One line per problem, naming the file: `damaged: epochs.jsonl: line 3 ...`."""
    return [f"{indent}{'damaged' if p.damage else 'note'}: {runs.printable(p)}" for p in run.problems]


def cmd_list(args: argparse.Namespace) -> int:
    found = runs.list_runs(Path(args.runs_dir))
    if not found:
        print(f"no runs in {runs.printable(args.runs_dir)}/ yet; start one with "
              f"`{commands.command('train', '--preset', 'demo', runs_dir=args.runs_dir)}`")
        return 0
    header = (f"{'id':<34} {'name':<16} {'status':<20} {'dataset':<24} {'epochs':>7} {'best acc':>9} "
              f"{'final acc':>9}")
    print(header)
    print("-" * len(header))
    for run in found:
        s = run.summary()
        status = f"{s['status']} (damaged)" if run.damaged else s["status"]
        epochs = f"{s['epochs_done']}/{s['epochs_planned'] or '?'}"
        best = f"{s['best_test_acc']:.2%}" if s["best_test_acc"] is not None else "-"
        final = f"{s['final_test_acc']:.2%}" if s["final_test_acc"] is not None else "-"
        print(f"{_cell(s['id'], 34):<34} {_cell(s['name'], 16):<16} {_cell(status, 20):<20} "
              f"{_cell(s['dataset'] or '-', 24):<24} {epochs:>7} {best:>9} {final:>9}")
        for line in _problem_lines(run, "    "):
            print(line)
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    run = runs.load_run(runs.resolve_run_dir(Path(args.runs_dir), args.run))
    for key, value in run.summary().items():
        if key not in ("damaged", "warnings"):
            print(f"{key:>16}: {runs.printable(value)}")
    for line in _problem_lines(run, " " * 9):
        print(line)
    return 0


def dashboard_app() -> Path:
    """dashboard/app.py where this installation put it (the checkout, or site-packages)."""
    spec = importlib.util.find_spec("dashboard")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the dashboard package is not installed; run `make install` in the project")
    return Path(next(iter(spec.submodule_search_locations))) / "app.py"


def cmd_dashboard(args: argparse.Namespace) -> int:
    runs_dir = Path(args.runs_dir).absolute()
    if runs_dir.exists() and not runs_dir.is_dir():
        raise ValueError(f"{runs.printable(runs_dir)} is a file, not a runs folder")
    # The safe defaults of .streamlit/config.toml, as flags so they hold from any directory.
    argv = [sys.executable, "-m", "streamlit", "run", str(dashboard_app()),
            "--server.address", args.address, "--server.port", str(args.port),
            "--server.headless", "true", "--server.enableXsrfProtection", "true",
            "--server.enableCORS", "true", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal", "--", "--runs-dir", str(runs_dir)]
    print(f"dashboard over {runs.printable(runs_dir)} at http://{args.address}:{args.port} (Ctrl-C stops it)",
          flush=True)
    os.execv(sys.executable, argv)
    return 0  # not reached: streamlit replaced this process


def _runs_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default=commands.default_runs_dir(),
                        help="the runs folder (default: $RUNS_DIR, else runs/)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=commands.PROG,
        description="Train ResNet18 on CIFAR-10, keep every run in a runs folder, look at them in the browser.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a run (the s11 reference recipe by default)",
                           description="Train ResNet18. Precedence: preset < $RUNS_DIR < --config file < flags.")
    train.add_argument("--config", metavar="FILE.toml", help="a TOML file of config fields")
    add_config_flags(train)
    train.set_defaults(func=cmd_train)

    resume = sub.add_parser("resume", help="continue an interrupted run from its last completed epoch")
    resume.add_argument("run", help="a run id from `list`")
    _runs_dir_flag(resume)
    resume.set_defaults(func=cmd_resume)

    listing = sub.add_parser("list", help="a table of the runs in the runs folder")
    _runs_dir_flag(listing)
    listing.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="the key figures of one run")
    show.add_argument("run", help="a run id from `list`")
    _runs_dir_flag(show)
    show.set_defaults(func=cmd_show)

    export = sub.add_parser("export", help="pack one run into a .tar.gz to share")
    export.add_argument("run", help="a run id from `list`")
    export.add_argument("-o", "--output", help="archive path (default: RUN_ID.tar.gz)")
    export.add_argument("--with-checkpoints", action="store_true", help="include the weights (tens of MB)")
    _runs_dir_flag(export)
    export.set_defaults(func=cmd_export)

    importer = sub.add_parser("import", help="unpack a shared archive of one or more runs into the runs folder",
                              description="Unpack runs from a .tar.gz made by `export` or by "
                                          "`tar -C runs -czf all.tar.gz .`; all of them or nothing.")
    importer.add_argument("archive")
    _runs_dir_flag(importer)
    importer.set_defaults(func=cmd_import)

    dashboard = sub.add_parser("dashboard", help="open the runs in the browser (Streamlit)")
    _runs_dir_flag(dashboard)
    dashboard.add_argument("--address", default="127.0.0.1",
                           help="interface to listen on; 0.0.0.0 lets anyone who reaches the port read your runs")
    dashboard.add_argument("--port", type=int, default=8501)
    dashboard.set_defaults(func=cmd_dashboard)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # `resnet-runs list | head`: the reader left; leave quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except (ValueError, runs.RunFormatError, OSError) as exc:  # config, dataset, archive, checkpoint, run
        for line in str(exc).splitlines() or [type(exc).__name__]:
            print(f"error: {runs.printable(line)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: stopped (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
