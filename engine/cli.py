"""The `resnet-runs` command (also `python -m engine`): train, sweep, resume, list, show, tag, note,
archive, restore, export, import, dashboard.

Every config field is a flag of `train`, with the help text written beside the field. Every
failure is one `error: ...` line on stderr and exit status 2, a mistyped command line included
(the unknown flag named, with the nearest ones); a run is named by its id, a unique start of its
id, or its name (`runs.find_run`). Text read from a run reaches the terminal through
`runs.printable`, so a hostile name cannot drive it."""

from __future__ import annotations

import argparse
import difflib
import errno
import importlib.util
import os
import shutil
import socket
import sys
import typing
from pathlib import Path

from engine import commands, runs
from engine.archive import export_run, import_runs
from engine.config import FIELD_HELP, FIELD_TYPES, TrainConfig, base_type, build_config
from engine.run_curation import archive_run, parse_tag_changes, restore_run, set_note, set_tags
from engine.run_index import RunIndex
from engine.run_layout import ARCHIVE_DIR, Status, archive_dir
from engine.run_listing import (
    STATUS_NAMES,
    Selection,
    check_tags,
    duration,
    expression_refusal,
    json_text,
    parse_statuses,
    percent,
    table_lines,
)
from engine.run_query import CONFIG_FIELDS, QueryError, compile_query, config_keys

EXIT_FAILED = 1
EXIT_ERROR = 2
EXIT_INTERRUPTED = 130
RUN_HELP = "the run: its id, a unique start of its id, or its name (see `list`)"


class UsageError(Exception):
    """A command line that cannot be parsed; each line of the message is one problem and its fix."""


class Parser(argparse.ArgumentParser):
    """argparse, with its refusals as one `error:` line naming the help to read (instead of the
    usage text and an exit from inside the parser)."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{message}; `{help_command(self)}` shows how")


def help_command(parser: argparse.ArgumentParser) -> str:
    """`resnet-runs SUBCOMMAND --help`, spelled to be pasted."""
    return commands.command(*parser.prog.split()[1:], "--help")


def unknown_arguments(parser: argparse.ArgumentParser, extras: list[str]) -> str:
    """One line per unknown flag of a subcommand, with the nearest of its flags; a stray word
    when there is no unknown flag to blame it on."""
    flags = [f for action in parser._actions for f in action.option_strings]
    unknown = [word.split("=", 1)[0] for word in extras if word.startswith("-")]
    command = commands.command(*parser.prog.split()[1:])
    if not unknown:
        return (f"`{command}` got an unexpected argument {runs.printable(extras[0])!r}; "
                f"`{help_command(parser)}` shows how")
    lines = []
    for flag in unknown:
        nearest = difflib.get_close_matches(flag, flags, n=3, cutoff=0.6)
        hint = f"; did you mean {' or '.join(nearest)}?" if nearest else ""
        lines.append(f"`{command}` has no flag {runs.printable(flag)}{hint} (`{help_command(parser)}` lists them)")
    return "\n".join(lines)


def add_config_flags(parser: argparse.ArgumentParser) -> None:
    defaults = TrainConfig()
    for name, annotation in FIELD_TYPES.items():
        flag = "--" + name.replace("_", "-")
        kind = base_type(annotation)
        text = FIELD_HELP[name]  # a help that says what its default means keeps that, not "None"
        if "(default:" not in text:
            text += f" (default: {getattr(defaults, name)})"
        text = text.replace("%", "%%")
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
    return 0 if result.status == Status.COMPLETED else EXIT_INTERRUPTED


def cmd_train(args: argparse.Namespace) -> int:
    from engine.train import train

    overrides = {k: v for k, v in vars(args).items() if k in FIELD_TYPES}
    environment = {"runs_dir": os.environ["RUNS_DIR"]} if os.environ.get("RUNS_DIR") else {}
    config = build_config(overrides, args.config, environment)
    return _outcome(lambda: train(config))


def cmd_resume(args: argparse.Namespace) -> int:
    from engine.train import resume

    run_dir = runs.find_run(Path(args.runs_dir), args.run)
    return _outcome(lambda: resume(run_dir))


SWEEP_ONLY = ("grid", "random", "trials", "sweep_seed", "seeds", "config")


def cmd_sweep(args: argparse.Namespace) -> int:
    """A new sweep (checked whole, its plan written, then its trials), or `--resume` of one."""
    from engine import sweep
    from engine.sweep_plan import SweepError, find_sweep, plan_sweep, request_from_command_line, write_plan

    flags = {k: v for k, v in vars(args).items() if k in FIELD_TYPES}
    if args.gpus_per_trial is not None and args.gpus_per_trial < 0:
        raise SweepError(f"--gpus-per-trial {args.gpus_per_trial:g} is negative; give 0 (CPUs only) or more")
    if args.resume:
        given = [f"--{k.replace('_', '-')}" for k in (*flags, *SWEEP_ONLY)
                 if k != "runs_dir" and getattr(args, k, None) not in (None, [])]
        if given:
            raise SweepError(f"--resume continues a sweep as it was planned; drop {', '.join(given)} (start a new "
                             "sweep to change it)")
        runs_dir = Path(flags.get("runs_dir") or commands.default_runs_dir())
        plan = find_sweep(runs_dir, args.resume)
        address = args.ray
        _check_ray_options(address, args.gpus_per_trial, runs_dir)
        with sweep.ray_session(address, args.gpus_per_trial) as ray, sweep.sweep_lock(runs_dir, plan.id):
            states = sweep.trial_states(plan, runs_dir)
            jobs = _placed(sweep.jobs_for(plan, runs_dir, states, quiet=ray is not None), address, runs_dir)
            for state in states:
                if state.status == Status.RUNNING:
                    print(f"trial {state.trial.number}: run {state.run_id} is still running in another process; "
                          "left to it")
            if not jobs:
                print(f"sweep {plan.id}: nothing left to run")
                return _sweep_end(plan, runs_dir, sweep.SweepRun([], False), address)
            print(f"sweep {plan.id}: {len(jobs)} of {len(plan.trials)} trials left "
                  f"({sum(j.resume_dir is not None for j in jobs)} to continue from their last completed epoch)",
                  flush=True)
            return _sweep_end(plan, runs_dir, _run_jobs(plan, runs_dir, jobs, ray, {}), address)

    environment = {"runs_dir": os.environ["RUNS_DIR"]} if os.environ.get("RUNS_DIR") else {}
    request = request_from_command_line(flags, args.grid, args.random, args.trials, args.sweep_seed, args.seeds,
                                        args.config, environment, args.ray, args.gpus_per_trial)
    address = request.ray
    runs_dir = Path(request.base.get("runs_dir") or TrainConfig().runs_dir)
    _check_ray_options(address, request.gpus_per_trial, runs_dir)
    if address:
        sweep.import_ray(address == sweep.LOCAL)  # refused with the install command before any other work
    plan = plan_sweep(request)
    fresh = [sweep.TrialState(t, None, sweep.PENDING, None) for t in plan.trials]
    jobs = _placed(sweep.jobs_for(plan, runs_dir, fresh, quiet=address is not None), address, runs_dir)
    data = sweep.check_on_data(plan, jobs) if address in (None, sweep.LOCAL) else {}
    with sweep.ray_session(address, request.gpus_per_trial) as ray, sweep.sweep_lock(runs_dir, plan.id):
        path = write_plan(runs_dir, plan)
        where = "one after another in this process" if ray is None else \
            f"as Ray tasks ({address}, {ray.gpus_per_trial:g} GPUs each)"
        print(f"sweep {plan.id}: {len(plan.trials)} trials, {where}; plan in {runs.printable(path)}", flush=True)
        return _sweep_end(plan, runs_dir, _run_jobs(plan, runs_dir, jobs, ray, data), address)


def _placed(jobs: list, address: str | None, runs_dir: Path) -> list:
    """Jobs as a cluster's nodes need them: absolute paths (see `sweep.for_cluster`)."""
    from engine import sweep

    return sweep.for_cluster(jobs, runs_dir) if address and address != sweep.LOCAL else jobs


def _check_ray_options(address: str | None, gpus: float | None, runs_dir: Path) -> None:
    from engine.sweep import LOCAL
    from engine.sweep_plan import SweepError

    if gpus is not None and not address:
        raise SweepError("--gpus-per-trial needs --ray (without Ray the trials run one after another here)")
    if address is not None and not address.strip():
        raise SweepError("--ray needs `local` (a Ray instance on this machine) or a cluster's address HOST:PORT")
    if address and address != LOCAL and not runs_dir.is_absolute():
        raise SweepError(f"--ray {address} with --runs-dir {runs_dir}: on a cluster every node writes into the runs "
                         "folder, so give an absolute path on a filesystem every node shares, e.g. "
                         f"--runs-dir {Path(runs_dir).absolute()}")


def _run_jobs(plan, runs_dir: Path, jobs: list, ray, data: dict):
    from engine import sweep

    def report(outcome: sweep.Outcome) -> None:
        print(runs.printable(sweep.outcome_line(plan, outcome)), flush=True)

    def announce(job: sweep.Job) -> None:
        trial = plan.trials[job.trial - 1]
        what = f"continuing run {Path(job.resume_dir).name}" if job.resume_dir else "starting"
        print(f"\ntrial {trial.number}/{len(plan.trials)} ({runs.printable(sweep.trial_label(trial))}): {what}",
              flush=True)

    if ray is None:
        return sweep.run_here(jobs, data, report, announce)
    return sweep.run_on_ray(ray, jobs, report, runs_dir, plan)


def _sweep_end(plan, runs_dir: Path, done, address: str | None) -> int:
    """The settings table, what is left and how to continue; 0 when every trial completed, 130
    when stopped by the user, else 1."""
    from engine import sweep

    states = sweep.trial_states(plan, runs_dir)
    print()
    for line in sweep.settings_table(plan, states):
        print(runs.printable(line))
    completed = sum(s.status == Status.COMPLETED for s in states)
    failed = [s for s in states if s.status == Status.FAILED]
    left = len(states) - completed - len(failed)
    print(f"\nsweep {plan.id}: {completed} of {len(states)} trials completed"
          + (f", {len(failed)} failed" if failed else "") + (f", {left} left" if left else ""))
    for state in failed:
        print(f"  trial {state.trial.number} failed: {runs.printable(state.value('error') or '?')}; "
              f"continue it by hand with `{commands.command('resume', state.run_id, runs_dir=runs_dir)}`")
    if left:
        print(f"continue it with: {sweep.resume_command(plan, runs_dir, address)}")
    if done.stopped:
        return EXIT_INTERRUPTED
    return 0 if completed == len(states) else EXIT_FAILED


def cmd_export(args: argparse.Namespace) -> int:
    run_dir = runs.find_run(Path(args.runs_dir), args.run)
    out = export_run(run_dir, Path(args.output) if args.output else None, args.with_checkpoints,
                     overwrite=args.force)
    print(f"wrote {runs.printable(out)} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    done = import_runs(Path(args.archive), Path(args.runs_dir))
    for path in done.runs:
        taken = done.renamed.get(path.name)
        note = f" (the id {runs.printable(taken)} is taken, so this copy has a new id)" if taken else ""
        print(f"imported as {runs.printable(path)}{note}")
    for name in done.skipped:
        print(f"skipped {runs.printable(name)} (not a run folder)")
    return 0


def _problem_lines(run: runs.Run, indent: str) -> list[str]:
    """One line per problem, naming the file: `damaged: epochs.jsonl: line 3 ...`."""
    return [f"{indent}{'damaged' if p.damage else 'note'}: {runs.printable(p)}" for p in run.problems]


def _unknown_name(error: QueryError) -> bool:
    return error.message.startswith("unknown name")


def cmd_list(args: argparse.Namespace) -> int:
    """The index's rows (one summary per run, not every file of every run), filtered; a table or JSON."""
    selection = Selection(parse_statuses(args.status), check_tags(args.tag))  # refused before any reading
    pending = None
    if args.where is not None:
        try:
            selection = Selection(selection.statuses, selection.tags, compile_query(args.where))
        except QueryError as exc:
            if not _unknown_name(exc):
                raise expression_refusal(exc) from None
            pending = exc  # unless runs of another version have that config key: known once they are read
    root = runs.runs_folder(Path(args.runs_dir))
    folder = archive_dir(root) if args.archived else root
    rows = RunIndex(folder).refresh() if folder.is_dir() else []
    if pending is not None:
        extra = config_keys(rows) - set(CONFIG_FIELDS)
        try:
            if not extra:
                raise pending
            selection = Selection(selection.statuses, selection.tags, compile_query(args.where, extra))
        except QueryError as exc:
            raise expression_refusal(exc) from None
    shown = selection.apply(rows)
    if args.json:
        print(json_text(shown))
    elif not rows and args.archived:
        print(f"no archived runs in {runs.printable(folder)}/")
    elif not rows:
        print(f"no runs in {runs.printable(args.runs_dir)}/ yet; start one with "
              f"`{commands.command('train', '--preset', 'demo', runs_dir=args.runs_dir)}`")
    elif not shown:
        print(f"none of the {len(rows)} runs in {runs.printable(folder)}/ matches {selection.describe()}")
    else:
        sys.stdout.write("\n".join(table_lines(shown, shutil.get_terminal_size().columns)) + "\n")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    """+TAG (or a bare TAG) adds, -TAG removes; no change prints the tags. Safe while the run trains."""
    add, remove = parse_tag_changes(args.changes)  # a bad word is refused before anything is read
    run_dir = runs.find_run(Path(args.runs_dir), args.run)
    tags = set_tags(run_dir, add, remove) if args.changes else runs.read_tags(run_dir)[0]
    run_id = runs.printable(run_dir.name)
    print(f"tags of {run_id}: {runs.printable(', '.join(tags))}" if tags else f"{run_id} has no tags")
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    """Print the run's note, or replace it ("" clears it). Safe while the run trains."""
    run_dir = runs.find_run(Path(args.runs_dir), args.run)
    run_id = runs.printable(run_dir.name)
    if args.text is None:
        note, _ = runs.read_note(run_dir)
        if note:
            print("\n".join(runs.printable(line) for line in note.splitlines()))
        else:
            print(f"{run_id} has no note", file=sys.stderr)
        return 0
    set_note(run_dir, args.text)
    print(f"note of {run_id} saved ({len(args.text)} characters)" if args.text else f"note of {run_id} cleared")
    return 0


def cmd_archive(args: argparse.Namespace) -> int:
    """Move a run into the runs folder's archive, out of the tables; nothing is deleted."""
    root = runs.runs_folder(Path(args.runs_dir))
    run_id = runs.find_run(root, args.run).name
    archived = archive_run(root, run_id)
    print(f"archived {runs.printable(run_id)} into {runs.printable(archived.parent)}/; "
          f"`{commands.command('restore', run_id, runs_dir=args.runs_dir)}` brings it back")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Move an archived run back into the runs folder."""
    root = runs.runs_folder(Path(args.runs_dir))
    shelf = archive_dir(root)
    if not shelf.is_dir():
        raise runs.RunFormatError(f"no archived runs in {runs.printable(root)} (it has no {ARCHIVE_DIR} folder); "
                                  "nothing to restore")
    run_id = runs.find_run(shelf, args.run).name
    restored = restore_run(root, run_id)
    print(f"restored {runs.printable(run_id)} into {runs.printable(restored.parent)}/")
    return 0


def _max_lr(run: runs.Run) -> str:
    """The max LR trained with, and where it came from."""
    if run.used_lr is None:
        return "-"
    source = "LR range test" if (run.lr_finder or {}).get("used_lr") else "set with --lr"
    return f"{run.used_lr:.3g} ({source})"


def cmd_show(args: argparse.Namespace) -> int:
    run = runs.load_run(runs.find_run(Path(args.runs_dir), args.run))
    s = run.summary()
    best = percent(s["best_test_acc"]) + (f" (epoch {s['best_epoch']})" if s["best_epoch"] is not None else "")
    figures = {"id": s["id"], "name": s["name"], "status": s["status"], "error": s["error"],
               "dataset": s["dataset"], "epochs": f"{s['epochs_done']}/{s['epochs_planned'] or '?'}",
               "best test acc": best, "final test acc": percent(s["final_test_acc"]), "max LR": _max_lr(run),
               "train time": duration(s["train_seconds"]), "duration": duration(s["duration_seconds"]),
               "device": s["device"], "created": s["created"], "fingerprint": s["fingerprint"]}
    for label, value in figures.items():
        if label != "error" or value:
            print(f"{label:>16}: {runs.printable('-' if value is None else value)}")
    for line in _problem_lines(run, " " * 9):
        print(line)
    if run.config is not None:
        print(f"{'config':>16}:")
        for key, value in run.config.items():
            print(f"{'':>18}{runs.printable(key)}: {runs.printable('-' if value is None else value)}")
    return 0


def dashboard_app() -> Path:
    """dashboard/app.py where this installation put it (the checkout, or site-packages)."""
    spec = importlib.util.find_spec("dashboard")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the dashboard package is not installed; run `make install` in the project")
    return Path(next(iter(spec.submodule_search_locations))) / "app.py"


def check_port(address: str, port: int) -> None:
    """Refuse a port the dashboard cannot listen on before it announces itself: Streamlit would
    print its address first and fail after. Bound as Tornado binds (SO_REUSEADDR), so only a
    listener refuses it, not a connection closing."""
    if not 1 <= port <= 65535:
        raise ValueError(f"--port {port} is not a port number; choose one in 1-65535, e.g. --port 8501")
    try:
        family, kind, proto, _, where = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError):
        raise ValueError(f"--address {runs.printable(address)!r} is not an address of this machine; "
                         "use 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)") from None

    def refusal(candidate: int) -> OSError | None:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((where[0], candidate, *where[2:]))
            except OSError as exc:
                return exc
        return None

    problem = refusal(port)
    if problem is None:
        return
    if problem.errno == errno.EADDRINUSE:
        free = next((p for p in range(port + 1, min(port + 50, 65536)) if refusal(p) is None), None)
        other = f"; choose another with --port, e.g. --port {free}" if free else "; choose another with --port"
        raise ValueError(f"--port {port} is taken on {runs.printable(address)} (another dashboard?){other}")
    raise ValueError(f"cannot listen on {runs.printable(address)} --port {port} ({problem.strerror or problem}); "
                     "check --address and --port")


def cmd_dashboard(args: argparse.Namespace) -> int:
    runs_dir = Path(args.runs_dir).absolute()
    if runs_dir.exists() and not runs_dir.is_dir():
        raise ValueError(f"{runs.printable(runs_dir)} is a file, not a runs folder")
    check_port(args.address, args.port)
    # The settings of .streamlit/config.toml, as flags so they hold from any directory.
    argv = [sys.executable, "-m", "streamlit", "run", str(dashboard_app()),
            "--server.address", args.address, "--server.port", str(args.port),
            "--server.headless", "true", "--server.enableXsrfProtection", "true",
            "--server.enableCORS", "true", "--browser.gatherUsageStats", "false",
            "--client.toolbarMode", "minimal", "--runner.postScriptGC", "false", "--", "--runs-dir", str(runs_dir)]
    print(f"dashboard over {runs.printable(runs_dir)} at http://{args.address}:{args.port} (Ctrl-C stops it)",
          flush=True)
    os.execv(sys.executable, argv)
    return 0  # not reached: streamlit replaced this process


def _runs_dir_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--runs-dir", default=commands.default_runs_dir(),
                        help="the runs folder (default: $RUNS_DIR, else runs/)")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog=commands.PROG,
        description="Train ResNet18 on CIFAR-10, keep every run in a runs folder, look at them in the browser.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = sub.add_parser("train", help="train a run (the s11 reference recipe by default)",
                           description="Train ResNet18. Precedence: preset < $RUNS_DIR < --config file < flags.")
    train.add_argument("--config", metavar="FILE.toml", help="a TOML file of config fields")
    add_config_flags(train)
    train.set_defaults(func=cmd_train)

    sweeping = sub.add_parser(
        "sweep", help="train many runs: a grid, a random search, several seeds; here or on Ray",
        description="Train one run per trial of a grid (--grid, repeatable: the product of the lists) and/or a "
                    "seeded random search (--random with --trials), each setting with --seeds seeds. Every train "
                    "flag sets the config under all trials; --name names the sweep. The whole sweep is checked "
                    "before its first trial. A [sweep] section of the --config file takes the same keys (grid, "
                    "random, trials, sweep_seed, seeds, name, ray, gpus_per_trial).")
    sweeping.add_argument("--config", metavar="FILE.toml", help="a TOML file of config fields, and a [sweep] section")
    sweeping.add_argument("--grid", action="append", default=[], metavar="FIELD=V1,V2,...",
                          help="values of one config field; repeat for more fields (every combination is a trial)")
    sweeping.add_argument("--random", action="append", default=[], metavar="FIELD=LOW:HIGH[:log]",
                          help="a range of a number field, drawn --trials times (log: log-uniform)")
    sweeping.add_argument("--trials", type=int, help="random draws (with --random)")
    sweeping.add_argument("--sweep-seed", type=int, help="seed of the random draws (default: 0)")
    sweeping.add_argument("--seeds", type=int, help="seeds per setting: --seed, --seed+1, ... (default: 1)")
    sweeping.add_argument("--ray", metavar="ADDRESS|local",
                          help="run trials as Ray tasks: `local` starts Ray on this machine (127.0.0.1 only); "
                               "HOST:PORT joins a cluster (then --runs-dir must be an absolute path every node "
                               "shares). Needs Ray: pip install \"resnet-runs[ray]\"")
    sweeping.add_argument("--gpus-per-trial", type=float,
                          help="GPUs per trial on Ray (default: 1 where the cluster has GPUs, else 0: CPUs only)")
    sweeping.add_argument("--resume", metavar="SWEEP_ID",
                          help="run what is left of a sweep (its id, a unique start of it, or its name): trials "
                               "not started, and interrupted ones from their last completed epoch")
    add_config_flags(sweeping)
    sweeping.set_defaults(func=cmd_sweep)

    resume = sub.add_parser("resume", help="continue an interrupted run from its last completed epoch")
    resume.add_argument("run", help=RUN_HELP)
    _runs_dir_flag(resume)
    resume.set_defaults(func=cmd_resume)

    listing = sub.add_parser(
        "list", help="a table of the runs in the runs folder (or --json), filtered",
        description="The runs, newest first, read from their summaries. The table shows whole ids and names, "
                    "tags, damaged files, and, as far as the terminal's width allows, the settings that tell "
                    "the listed runs apart. Filters combine: a run is listed when every one holds.")
    listing.add_argument("--json", action="store_true",
                         help="one JSON array instead of the table, one object per run (id, name, status, dataset, "
                              "tags, note, sweep, epochs_done, epochs_planned, best_test_acc, final_test_acc, "
                              "created, config, ...), for scripts")
    listing.add_argument("--status", action="append", default=[], metavar="STATUS",
                         help=f"only runs of this status ({', '.join(STATUS_NAMES)}); repeat it, or separate "
                              "statuses with commas, for runs of any of them")
    listing.add_argument("--tag", action="append", default=[], metavar="TAG",
                         help="only runs tagged TAG; repeat it for runs that carry every one")
    listing.add_argument("--where", metavar="EXPR",
                         help="only runs for which EXPR holds, e.g. 'lr > 0.05 and best_test_acc > 0.6' or "
                              "'\"baseline\" in tags'; names are summary fields and config fields "
                              "(docs/run-format.md, \"Search\")")
    listing.add_argument("--archived", action="store_true",
                         help=f"list the archived runs (in the runs folder's {ARCHIVE_DIR} folder) instead")
    _runs_dir_flag(listing)
    listing.set_defaults(func=cmd_list)

    show = sub.add_parser("show", help="the key figures and the config of one run")
    show.add_argument("run", help=RUN_HELP)
    _runs_dir_flag(show)
    show.set_defaults(func=cmd_show)

    tagging = sub.add_parser("tag", help="add and remove a run's tags (safe while it trains)",
                             description="+TAG (or a bare TAG) adds a tag, -TAG removes one; without changes, "
                                         "prints the run's tags. A tag is a letter, digit or _, then letters, "
                                         "digits or . : / @ - _ (at most 64).")
    tagging.add_argument("run", help=RUN_HELP)
    tagging.add_argument("changes", nargs="*", metavar="+TAG|-TAG", help="the tags to add (+) and remove (-)")
    _runs_dir_flag(tagging)
    tagging.set_defaults(func=cmd_tag)

    noting = sub.add_parser("note", help="print a run's note, or replace it (safe while it trains)")
    noting.add_argument("run", help=RUN_HELP)
    noting.add_argument("text", nargs="?", help='the new note (quote it; "" clears it); without it, the note is '
                                                "printed")
    _runs_dir_flag(noting)
    noting.set_defaults(func=cmd_note)

    archiving = sub.add_parser("archive", help=f"move a run out of the tables into the runs folder's {ARCHIVE_DIR} "
                                               "folder (nothing is deleted; `restore` brings it back)")
    archiving.add_argument("run", help=RUN_HELP)
    _runs_dir_flag(archiving)
    archiving.set_defaults(func=cmd_archive)

    restoring = sub.add_parser("restore", help="move an archived run back into the runs folder")
    restoring.add_argument("run", help="the archived run: its id, a unique start of its id, or its name "
                                       "(see `list --archived`)")
    _runs_dir_flag(restoring)
    restoring.set_defaults(func=cmd_restore)

    export = sub.add_parser("export", help="pack one run into a .tar.gz to share")
    export.add_argument("run", help=RUN_HELP)
    export.add_argument("-o", "--output", help="archive path (default: RUN_ID.tar.gz)")
    export.add_argument("--force", action="store_true", help="replace the archive file if it exists")
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
    dashboard.add_argument("--port", type=int, default=8501, help="port to listen on (default: 8501)")
    dashboard.set_defaults(func=cmd_dashboard)
    return parser


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The parsed command line; UsageError for a mistyped one, naming the unknown command or flag."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    subcommands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    if argv and not argv[0].startswith("-") and argv[0] not in subcommands:
        nearest = difflib.get_close_matches(argv[0], subcommands, n=2, cutoff=0.5)
        hint = f"; did you mean {' or '.join(nearest)}?" if nearest else ""
        raise UsageError(f"unknown command {runs.printable(argv[0])!r}{hint} "
                         f"(`{commands.command('--help')}` lists them)")
    if argv and argv[0] == "tag":
        argv = tag_words_apart(subcommands["tag"], argv)
    args, extras = parser.parse_known_args(argv)
    if extras:
        raise UsageError(unknown_arguments(subcommands[args.command], extras))
    return args


def tag_words_apart(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """`tag RUN +a -b`: `-b` removes a tag, argparse would take it for a flag. The tag command's
    flags (and every `--word`, so a mistyped flag is still named) stay flags; the other words
    follow a `--`, which makes them positional."""
    takes_value = {flag for action in parser._actions for flag in action.option_strings if action.nargs != 0}
    flags, words, rest = [], [], iter(argv[1:])
    for word in rest:
        if word == "--":
            words.extend(rest)
        elif word.startswith("--") or word == "-h":
            flags.append(word)
            if word in takes_value and (value := next(rest, None)) is not None:
                flags.append(value)
        else:
            words.append(word)
    return [argv[0], *flags, "--", *words]


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse(argv)
    except UsageError as exc:
        for line in str(exc).splitlines():
            print(f"error: {runs.printable(line)}", file=sys.stderr)
        return EXIT_ERROR
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
        for line in getattr(exc, "details", []):  # what the error line refers to (the runs a reference fits)
            print(line, file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("error: stopped (Ctrl-C)", file=sys.stderr)
        return EXIT_INTERRUPTED
