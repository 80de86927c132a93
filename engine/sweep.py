"""Running a sweep (its plan: engine/sweep_plan.py): every trial is an ordinary run in the runs
folder, started by `train` with the trial's record for its run.json, or continued by `resume`.

Without Ray the trials run one after another in this process, sharing one loaded dataset. With
Ray each trial is one Ray *task* (`run_trial`, `num_gpus` = --gpus-per-trial, no retries), not a
Tune trial: a task calls the same `train` and writes the same run folder a hand-started run does,
while Tune would add its own trial folders, result files and checkpoint protocol beside ours, and
report through its own session instead of the run format. Ray places the tasks on free GPUs or
CPUs; there is no scheduler of ours. All nodes write into one runs folder, which must be a path
every node reaches (a shared filesystem).

Which run is which trial is read from the runs themselves (run.json's `sweep`), so the truth
survives anything that kills this process: a killed trial's run is reported interrupted by the
run format's lock check, and `sweep --resume` continues it from its last completed epoch. Ctrl-C
(or SIGTERM) asks every trial in flight to stop at its next step and record itself interrupted
(on Ray through `ray.cancel`, which interrupts the task as Ctrl-C would), and starts no new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine import commands, runs
from engine.run_layout import Status, resume_state_path, run_id_suffix, slugify, sweep_lock_path
from engine.run_summary import summary_of
from engine.sweep_plan import SweepError, SweepPlan, Trial

PENDING = "pending"  # a trial that has no run yet
RAY_INSTALL = 'pip install "resnet-runs[ray]"'
LOCAL = "local"
STOP_GRACE_S = 120.0  # after Ctrl-C, how long Ray trials get to record themselves before they are killed
_RANK = {Status.COMPLETED: 0, Status.RUNNING: 1, Status.FAILED: 2, Status.INTERRUPTED: 3}


# ---------------------------------------------------------------- where each trial stands


@dataclass
class TrialState:
    """A trial and its run (None while it has none): the run's status and summary."""

    trial: Trial
    run_dir: Path | None
    status: str
    summary: dict | None

    @property
    def run_id(self) -> str | None:
        return self.run_dir.name if self.run_dir else None

    def value(self, key: str) -> Any:
        return (self.summary or {}).get(key)


def trial_runs(plan: SweepPlan, runs_dir: Path, rows: Sequence[dict] | None = None) -> dict[int, list[Path]]:
    """{trial number: its run folders}. `rows` (the index's summaries, engine/run_index.py) narrow
    the look to the runs whose summary names this sweep; without them one listing of the folder
    picks the runs named like a trial, and their run.json says which trial each is."""
    root = Path(runs_dir)
    if rows is not None:
        candidates = [root / r["id"] for r in rows if r.get("sweep") == plan.id]
    else:
        slugs = {slugify(plan.trial_name(t)) for t in plan.trials}
        candidates = [root / d.name for d in _listing(root) if run_id_suffix(d.name) in slugs]
    found: dict[int, list[Path]] = {}
    for path in candidates:
        meta, _ = runs.read_meta(path)
        record = (meta or {}).get("sweep")
        if record and record["id"] == plan.id:
            found.setdefault(record["trial"], []).append(path)
    return found


def _listing(root: Path) -> list[os.DirEntry]:
    if not root.is_dir():
        return []
    with os.scandir(root) as entries:
        return [e for e in entries if not e.name.startswith(".") and e.is_dir()]


def trial_states(plan: SweepPlan, runs_dir: Path, rows: Sequence[dict] | None = None) -> list[TrialState]:
    """Every trial of the plan, in order, with its run. A trial with more than one run (started
    afresh after a first attempt died before its first epoch) shows the one furthest along."""
    found = trial_runs(plan, runs_dir, rows)
    states = []
    for trial in plan.trials:
        looked = [(path, summary_of(path)) for path in sorted(found.get(trial.number, []), reverse=True)]
        if not looked:
            states.append(TrialState(trial, None, PENDING, None))
            continue
        path, summary = min(looked, key=lambda ps: (_RANK.get(ps[1]["status"], 4), -(ps[1]["epochs_done"] or 0)))
        states.append(TrialState(trial, path, summary["status"], summary))
    return states


def trial_label(trial: Trial) -> str:
    """`lr=0.05, batch_size=64, seed=2`: what sets the trial apart."""
    return ", ".join([*(f"{k}={v}" for k, v in trial.params.items()), f"seed={trial.seed}"])


# ---------------------------------------------------------------- one trial


@dataclass
class Job:
    """One trial to run: a fresh run from `config` (a whole config as a dict) with `record` for
    its run.json, or the continuation of the run in `resume_dir`. Plain data: Ray ships it."""

    trial: int
    config: dict | None = None
    record: dict | None = None
    resume_dir: str | None = None
    quiet: bool = False


@dataclass
class Outcome:
    trial: int
    status: str
    run_dir: str | None
    error: str | None = None


def run_trial(job: Job, data: Any = None) -> Outcome:
    """Train or resume one trial; how it ended. A failure is recorded in the run (train does
    that) and returned here, so one trial's failure never ends the sweep. The Ray task."""
    from engine.config import config_from_dict
    from engine.train import resume, train

    try:
        if job.resume_dir:
            result = resume(Path(job.resume_dir), quiet=job.quiet)
        else:
            result = train(config_from_dict(job.config or {}), data=data, quiet=job.quiet, sweep=job.record)
    except Exception as exc:  # any failure of one trial is that trial's result, recorded in its run
        first = (str(exc).splitlines() or [""])[0]
        return Outcome(job.trial, Status.FAILED, job.resume_dir, f"{exc.__class__.__name__}: {first}")
    return Outcome(job.trial, str(result.status), str(result.run_dir) if result.run_dir else None)


def jobs_for(plan: SweepPlan, runs_dir: Path, states: Sequence[TrialState] | None = None,
             quiet: bool = False) -> list[Job]:
    """What is left of a sweep: a fresh run for each trial without one, the continuation of each
    interrupted trial. Completed and failed trials are done (a failed run can be continued by hand
    with `resnet-runs resume`); a trial whose run is still running elsewhere is left alone."""
    jobs = []
    for state in trial_states(plan, runs_dir) if states is None else states:
        if state.status == Status.INTERRUPTED and resume_state_path(state.run_dir).is_file():
            jobs.append(Job(state.trial.number, resume_dir=str(state.run_dir), quiet=quiet))
        elif state.status in (PENDING, Status.INTERRUPTED):  # not started, or stopped before its first epoch ended
            config = plan.trial_config(state.trial).to_dict()
            jobs.append(Job(state.trial.number, config, plan.record(state.trial), quiet=quiet))
    return jobs


# ---------------------------------------------------------------- checks before the first trial


def check_on_data(plan: SweepPlan, jobs: Sequence[Job]) -> dict[tuple[str, str], Any]:
    """What `train` checks against the dataset and this machine before creating a run (a batch
    larger than the training set, too few steps for the warm-up, a device that is absent), for
    every fresh trial, so that a sweep that cannot run is refused whole. Returns the loaded
    datasets, which trials run here share."""
    from engine.config import config_from_dict
    from engine.datasets import load_dataset
    from engine.device import prepare_run

    loaded: dict[tuple[str, str], Any] = {}
    problems: dict[str, str] = {}
    for job in jobs:
        if job.config is None:
            continue
        config = config_from_dict(job.config)
        key = (config.dataset, config.data_dir)
        if key not in loaded:
            loaded[key] = load_dataset(config.dataset, config.data_dir)
        try:
            prepare_run(config, loaded[key], quiet=True)
        except ValueError as exc:
            trial = plan.trials[job.trial - 1]
            problems.setdefault(str(exc).splitlines()[0], f"trial {job.trial} ({trial_label(trial)})")
    if problems:
        raise SweepError("\n".join(f"{where}: {problem}" for problem, where in problems.items()))
    return loaded


@contextlib.contextmanager
def sweep_lock(runs_dir: Path, sweep_id: str) -> Iterator[None]:
    """Held while this process runs the sweep: a second `sweep --resume` is refused meanwhile."""
    path = sweep_lock_path(runs_dir, sweep_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise SweepError(f"sweep {sweep_id} is being run by another process; let it finish, or stop it (Ctrl-C) "
                         "and then resume") from None
    try:
        yield
    finally:
        handle.close()


# ---------------------------------------------------------------- running the trials


@dataclass
class SweepRun:
    """What one `sweep` command did: each trial's outcome, and whether the user stopped it."""

    outcomes: list[Outcome]
    stopped: bool


def run_here(jobs: Sequence[Job], data: dict[tuple[str, str], Any], report: Callable[[Outcome], None],
             announce: Callable[[Job], None]) -> SweepRun:
    """The trials one after another in this process. Ctrl-C stops the trial in hand (train
    records it interrupted) and starts no other."""
    from engine.device import StopRequest

    outcomes = []
    with StopRequest(announce=True) as stop:
        for job in jobs:
            if stop.requested:
                break
            announce(job)
            shared = None
            if job.config is not None:
                shared = data.get((job.config["dataset"], job.config["data_dir"]))
            outcome = run_trial(job, shared)
            outcomes.append(outcome)
            report(outcome)
            if outcome.status == Status.INTERRUPTED:  # only a stop request interrupts a trial in this process
                return SweepRun(outcomes, True)
        return SweepRun(outcomes, stop.requested)


def import_ray(local: bool) -> Any:
    """Ray, or the install command. For a local cluster Ray must bind the loopback address only:
    on Linux it binds the machine's network address unless this variable says otherwise before
    Ray is imported (it reads it once)."""
    if local:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        import ray
    except ImportError:
        raise SweepError(f"--ray needs Ray, which is not installed; install it with `{RAY_INSTALL}` "
                         "(in a checkout of this project, `make install` does), or drop --ray to run the "
                         "trials one after another here") from None
    from ray._private import ray_constants

    if local and getattr(ray_constants, "ENABLE_RAY_CLUSTER", False):
        raise SweepError("Ray was imported before the sweep could keep it on 127.0.0.1; start the sweep in a "
                         "fresh process, with RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 in its environment")
    return ray


def start_ray(address: str, num_cpus: int | None = None) -> Any:
    """Start a Ray instance on this machine bound to 127.0.0.1 (`local`), or join a cluster."""
    local = address == LOCAL
    ray = import_ray(local)
    if local:
        # Ray starts its workers at niceness 15; here the trials are the job, and beside any other
        # busy process a niced trial gets a few per cent of a core. A user's own setting wins.
        os.environ.setdefault("RAY_worker_niceness", "0")
        ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    else:
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise SweepError(f"--ray {address}: cannot join a Ray cluster there ({exc}); give the head node's "
                             "address (HOST:PORT, as `ray start --head` printed it), or `--ray local`") from None
    return ray


@dataclass
class RaySession:
    """Ray, started or joined, and the GPUs each trial takes."""

    ray: Any
    gpus_per_trial: float


@contextlib.contextmanager
def ray_session(address: str | None, gpus_per_trial: float | None) -> Iterator[RaySession | None]:
    """Ray for the length of a sweep (None without --ray); shut down (a local instance stopped)
    at the end, whatever happens."""
    if not address:
        yield None
        return
    ray = start_ray(address)
    try:
        yield RaySession(ray, trial_resources(ray, gpus_per_trial))
    finally:
        ray.shutdown()


def trial_resources(ray: Any, gpus_per_trial: float | None) -> float:
    """--gpus-per-trial, by default 1 where the cluster has GPUs, else 0 (CPU only)."""
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if gpus_per_trial is None:
        return 1.0 if gpus >= 1 else 0.0
    if gpus_per_trial > gpus:
        raise SweepError(f"--gpus-per-trial {gpus_per_trial:g}: the Ray cluster has {gpus:g} GPUs, so no trial "
                         "could start; lower it (0 runs trials on CPUs)")
    return gpus_per_trial


def run_on_ray(session: RaySession, jobs: Sequence[Job], report: Callable[[Outcome], None], runs_dir: Path,
               plan: SweepPlan) -> SweepRun:
    """Every trial as one Ray task at once; Ray runs as many as the resources allow. On Ctrl-C,
    queued tasks are dropped and running ones interrupted (each records its run interrupted);
    a second Ctrl-C, or STOP_GRACE_S without an answer, kills them (the lock check then reports
    their runs interrupted)."""
    from engine.device import StopRequest

    ray = session.ray
    task = ray.remote(run_trial).options(num_gpus=session.gpus_per_trial, num_cpus=1, max_retries=0)
    pending = {task.remote(job): job for job in jobs}
    outcomes: list[Outcome] = []
    stopped_at = None

    def collect(ref: Any) -> None:
        outcome = _ray_outcome(ray, ref, pending.pop(ref), runs_dir, plan)
        outcomes.append(outcome)
        report(outcome)

    with StopRequest(announce=True) as stop:
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=0.25)
                for ref in ready:
                    collect(ref)
                if stop.requested and stopped_at is None:
                    stopped_at = time.monotonic()
                    for ref in pending:
                        ray.cancel(ref)
                elif stopped_at is not None and time.monotonic() - stopped_at > STOP_GRACE_S:
                    for ref in pending:
                        ray.cancel(ref, force=True)
                    stopped_at = float("inf")
        except KeyboardInterrupt:  # the second Ctrl-C: stop at once
            for ref in pending:
                ray.cancel(ref, force=True)
            for ref in list(pending):
                collect(ref)
            return SweepRun(outcomes, True)
    return SweepRun(outcomes, stop.requested)


def _ray_outcome(ray: Any, ref: Any, job: Job, runs_dir: Path, plan: SweepPlan) -> Outcome:
    """A task's outcome; a task that was cancelled or whose worker died ends interrupted, with its
    run (if it got one) found in the runs folder."""
    try:
        return ray.get(ref, timeout=60)
    except ray.exceptions.TaskCancelledError:
        error = "stopped before it finished"
    except ray.exceptions.RayTaskError as exc:
        return Outcome(job.trial, Status.FAILED, job.resume_dir, str(exc).splitlines()[0])
    except ray.exceptions.RayError as exc:  # the worker or its node died
        error = f"its Ray worker died ({exc.__class__.__name__})"
    run_dir = job.resume_dir
    if run_dir is None:
        found = trial_runs(plan, runs_dir).get(job.trial)
        run_dir = str(max(found, key=lambda p: p.name)) if found else None
    return Outcome(job.trial, Status.INTERRUPTED, run_dir, error)


def resume_command(plan: SweepPlan, runs_dir: Path, ray: str | None) -> str:
    """`resnet-runs sweep --resume ID`, with --runs-dir and --ray when they are needed."""
    extra = ["--ray", ray] if ray else []
    return commands.command("sweep", "--resume", plan.id, *extra, runs_dir=runs_dir)


def for_cluster(jobs: Sequence[Job], runs_dir: Path) -> list[Job]:
    """Jobs for nodes elsewhere: the runs folder and the data as absolute paths (as this machine
    spells them; they must be reachable from every node)."""
    return [dataclasses.replace(j, config=_cluster_paths(j.config, runs_dir)) if j.config else j for j in jobs]


def _cluster_paths(config: dict, runs_dir: Path) -> dict:
    config = dict(config)
    config["runs_dir"] = str(Path(runs_dir).absolute())
    if config["dataset"] == "cifar10":
        config["data_dir"] = str(Path(config["data_dir"]).absolute())
    if config["dataset"].startswith("npz:"):
        config["dataset"] = "npz:" + str(Path(config["dataset"][4:]).absolute())
    return config


# ---------------------------------------------------------------- what a person reads


def outcome_line(plan: SweepPlan, outcome: Outcome) -> str:
    """`trial 3/8 (lr=0.05, seed=1): completed, best test acc 45.31% (run ID)`."""
    trial = plan.trials[outcome.trial - 1]
    head = f"trial {trial.number}/{len(plan.trials)} ({trial_label(trial)}): {outcome.status}"
    if outcome.run_dir:
        best = summary_of(Path(outcome.run_dir)).get("best_test_acc")
        if best is not None:
            head += f", best test acc {best:.2%}"
        head += f" (run {Path(outcome.run_dir).name})"
    return head + (f": {outcome.error}" if outcome.error else "")


def settings_table(plan: SweepPlan, states: Sequence[TrialState]) -> list[str]:
    """One line per setting (trials that differ only in seed): completed trials, mean and
    standard deviation of best test accuracy and its 95% interval, best first; then whether the
    best setting beats the next one by more than seed noise."""
    from engine.seed_stats import compare, describe

    settings: dict[str, list[TrialState]] = {}
    for state in states:
        settings.setdefault(", ".join(f"{k}={v}" for k, v in state.trial.params.items()) or "(one setting)",
                            []).append(state)
    rows = []
    for label, members in settings.items():
        values = [s.value("best_test_acc") for s in members
                  if s.status == Status.COMPLETED and s.value("best_test_acc") is not None]
        rows.append((label, len(members), values, describe(values)))
    rows.sort(key=lambda r: (r[3].mean is None, -(r[3].mean or 0.0)))
    width = max(len("setting"), *(len(r[0]) for r in rows))
    lines = [f"{'setting':<{width}}  {'done':>7}  {'best test acc':>16}  {'95% interval':>17}"]
    for label, total, values, g in rows:
        mean = "-" if g.mean is None else f"{g.mean:.2%}" + (f" ± {g.std:.2%}" if g.std is not None else "")
        interval = "-" if g.low is None else f"{g.low:.2%}..{g.high:.2%}"
        lines.append(f"{label:<{width}}  {f'{len(values)}/{total}':>7}  {mean:>16}  {interval:>17}")
    ranked = [r for r in rows if r[3].mean is not None]
    if len(ranked) >= 2:
        verdict = compare(ranked[0][2], ranked[1][2])
        lines.append(f"best ({ranked[0][0]}) against the next ({ranked[1][0]}): {verdict.note}")
    return lines
