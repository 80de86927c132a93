"""`resnet-runs sweep --ray` on a local Ray cluster that this module starts once (num_cpus=2, bound
to 127.0.0.1 the way `--ray local` binds it) and shuts down after: each sweep is a process of its
own that joins the cluster by its address, as on a real cluster."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from engine import runs
from engine.cli import main
from engine.sweep import trial_states
from tests.conftest import PROJECT_ROOT
from tests.test_sweep import STEPS_PER_EPOCH, SWEEP_FLAGS, epochs_of, only_plan, rows_in, trial_run, wait_until

if importlib.util.find_spec("ray") is None:  # installed by `make install` (requirements.txt); optional for users
    pytest.skip("Ray is not installed", allow_module_level=True)

LOOPBACK = ("127.0.0.1", "[::ffff:127.0.0.1]", "[::1]")


def listening_sockets() -> list[tuple[str, int]]:
    """(local address, pid) of every listening TCP socket `ss` can attribute to a process."""
    out = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True, check=True).stdout
    found = []
    for line in out.splitlines():
        local = line.split()[3]
        found += [(local, int(pid)) for pid in re.findall(r"pid=(\d+)", line)]
    return found


def descends_from_here(pid: int) -> bool:
    """Whether `pid` is this process or one it started (directly or not), read from /proc."""
    while pid > 1:
        if pid == os.getpid():
            return True
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return False
        pid = int(stat.rsplit(")", 1)[1].split()[1])
    return False


@pytest.fixture(scope="module")
def cluster():
    """One local Ray cluster for the module, started by the code `--ray local` uses; its
    address for the sweeps to join. Every socket it listens on must be on the loopback address."""
    if shutil.which("ss") is None:
        pytest.skip("`ss` (iproute2) is needed to see which addresses Ray listens on")
    from engine.sweep import start_ray

    ray = start_ray("local", num_cpus=2)
    try:
        ours = [(address, pid) for address, pid in listening_sockets() if descends_from_here(pid)]
        assert ours, "the Ray cluster listens on no port?"
        exposed = [(address, pid) for address, pid in ours if address.rsplit(":", 1)[0] not in LOOPBACK]
        assert not exposed, f"Ray listens beyond 127.0.0.1: {exposed}"
        assert ray.cluster_resources()["CPU"] == 2
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def sweep_process(cluster: str, runs_dir: Path, log: Path, *extra: str) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "engine", "sweep", *SWEEP_FLAGS, "--runs-dir", str(runs_dir),
                                 "--ray", cluster, *extra], cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)


def resume_on(cluster: str, runs_dir: Path, sweep_id: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", "sweep", "--resume", sweep_id, "--ray", cluster,
                           "--runs-dir", str(runs_dir)], cwd=PROJECT_ROOT, capture_output=True, text=True,
                          timeout=600)


def outcome(runs_dir: Path) -> dict:
    """{(trial, params, seed): (status, config without its name and runs folder)} of the only sweep."""
    plan = only_plan(runs_dir)
    found = {}
    for state in trial_states(plan, runs_dir):
        config = {k: v for k, v in runs.load_run(state.run_dir).config.items() if k not in ("name", "runs_dir")}
        found[(state.trial.number, json.dumps(state.trial.params), state.trial.seed)] = (state.status, config)
    return found


def test_the_same_grid_on_ray_ends_with_the_same_runs(cluster, tmp_path, sample, capsys):
    grid = ["--grid", "lr=0.02,0.05", "--seeds", "2", "--epochs", "1"]
    here, there = tmp_path / "here", tmp_path / "ray"
    assert main(["sweep", *SWEEP_FLAGS, *grid, "--runs-dir", str(here)]) == 0
    log = tmp_path / "ray.log"
    proc = sweep_process(cluster, there, log, *grid)
    assert proc.wait(timeout=600) == 0, log.read_text()
    assert "as Ray tasks" in log.read_text() and "4 of 4 trials completed" in log.read_text()
    on_ray = outcome(there)
    assert on_ray == outcome(here)
    assert {status for status, _ in on_ray.values()} == {"completed"}
    for state in trial_states(only_plan(there), there):
        assert runs.load_run(state.run_dir).meta["sweep"]["trial"] == state.trial.number


def test_a_trial_whose_worker_dies_is_interrupted_and_resumed(cluster, tmp_path, sample):
    """SIGKILL the Ray worker of trial 1 in its second epoch: the sweep goes on with trial 2, ends
    naming trial 1 interrupted and the resume command; `sweep --resume` continues trial 1 in its
    own folder from its last completed epoch."""
    runs_dir, log = tmp_path / "runs", tmp_path / "sweep.log"
    proc = sweep_process(cluster, runs_dir, log, "--seeds", "2", "--epochs", "3", "--lr", "0.05",
                         "--step-log-every", "1", "--name", "die")
    wait_until(lambda: rows_in((trial_run(runs_dir, "die-1") or tmp_path) / runs.STEPS_JSONL)
               >= STEPS_PER_EPOCH + 2, proc, log, "trial 1's second epoch")
    victim = trial_run(runs_dir, "die-1")
    worker = json.loads((victim / runs.RUN_JSON).read_text())["pid"]
    assert worker != proc.pid and descends_from_here(worker)  # a worker of this module's cluster
    os.kill(worker, signal.SIGKILL)
    assert proc.wait(timeout=600) == 1, log.read_text()
    text = log.read_text()
    assert "trial 1/2 (seed=1): interrupted" in text and "its Ray worker died" in text
    plan = only_plan(runs_dir)
    assert f"sweep --resume {plan.id} --ray {cluster}" in text
    assert [s.status for s in trial_states(plan, runs_dir)] == ["interrupted", "completed"]
    done = resume_on(cluster, runs_dir, plan.id)
    assert done.returncode == 0, done.stdout + done.stderr
    states = trial_states(plan, runs_dir)
    assert [s.status for s in states] == ["completed", "completed"] and states[0].run_dir == victim
    run = runs.load_run(victim)
    assert run.meta["resumed"] == 1 and [row["epoch"] for row in run.epochs] == [1, 2, 3]
    assert len(runs.run_dirs(runs_dir)) == 2


def test_ctrl_c_on_ray_records_the_trials_in_flight_interrupted(cluster, tmp_path, sample):
    """SIGINT to the sweep while both trials train: each run records itself interrupted (the
    cancel reaches the trial as Ctrl-C would), the sweep exits 130 naming how to continue."""
    runs_dir, log = tmp_path / "runs", tmp_path / "sweep.log"
    proc = sweep_process(cluster, runs_dir, log, "--seeds", "2", "--epochs", "4", "--lr", "0.05",
                         "--step-log-every", "1", "--name", "int")
    wait_until(lambda: all(rows_in((trial_run(runs_dir, f"int-{n}") or tmp_path) / runs.STEPS_JSONL) >= 2
                           for n in (1, 2)), proc, log, "both trials' first steps")
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=300) == 130, log.read_text()
    plan = only_plan(runs_dir)
    assert f"sweep --resume {plan.id} --ray {cluster}" in log.read_text()
    for n in (1, 2):
        meta = json.loads((trial_run(runs_dir, f"int-{n}") / runs.RUN_JSON).read_text())
        assert meta["status"] == "interrupted" and meta["error"].startswith("stopped by the user"), meta
        assert epochs_of(trial_run(runs_dir, f"int-{n}")) < 4
