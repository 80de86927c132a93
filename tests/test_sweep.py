"""`resnet-runs sweep` one trial after another, on real tiny runs: a grid, a random search, a
TOML [sweep] section, every kind of bad sweep refused before any trial, a sweep killed mid-trial
and one stopped with Ctrl-C, both finished by `sweep --resume`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import runs
from engine.cli import main
from engine.run_summary import summary_of
from engine.sweep import PENDING, trial_states
from engine.sweep_plan import SweepRequest, list_sweeps, plan_sweep, request_from_command_line
from tests.conftest import PROJECT_ROOT, SAMPLE

SWEEP_FLAGS = ["--dataset", f"npz:{SAMPLE}", "--width", "4", "--batch-size", "32", "--train-subset", "256",
               "--test-subset", "128", "--lr-finder-iters", "12", "--threads", "2"]
STEPS_PER_EPOCH = 8  # 256 images in batches of 32


def only_plan(runs_dir: Path):
    plans, problems = list_sweeps(runs_dir)
    assert not problems and len(plans) == 1, (plans, problems)
    return plans[0]


def start_sweep(runs_dir: Path, log: Path, *extra: str) -> subprocess.Popen:
    """`resnet-runs sweep` in a process of its own, its output in `log` (a pipe could fill and block it)."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, "-m", "engine", "sweep", *SWEEP_FLAGS, "--runs-dir", str(runs_dir),
                                 *extra], cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT)


def rows_in(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def trial_run(runs_dir: Path, name: str) -> Path | None:
    """The run folder named `name` (a trial's name is SWEEP-N), or None before it exists."""
    found = [p for p in runs_dir.iterdir() if p.is_dir() and p.name.endswith(f"-{name}")] if runs_dir.is_dir() else []
    return found[0] if found else None


def wait_until(condition, proc: subprocess.Popen, log: Path, what: str, timeout: float = 300.0) -> None:
    start = time.monotonic()
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the sweep ended (exit {proc.returncode}) before {what}:\n"
                                 f"{log.read_text(errors='replace')[-3000:]}")
        if time.monotonic() - start > timeout:
            proc.kill()
            raise AssertionError(f"{what}: not after {timeout:.0f} s")
        time.sleep(0.02)


def epochs_of(run_dir: Path | None) -> int:
    return rows_in(run_dir / runs.EPOCHS_JSONL) if run_dir else 0


# ---------------------------------------------------------------- sweeps that run


def test_a_grid_runs_every_combination_one_after_another(tmp_path, sample, capsys):
    code = main(["sweep", *SWEEP_FLAGS, "--epochs", "1", "--grid", "lr=0.02,0.05", "--grid", "cutout=8,16",
                 "--name", "grid", "--runs-dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert code == 0, out
    plan = only_plan(tmp_path)
    assert [(t.number, t.params, t.seed) for t in plan.trials] == [
        (1, {"lr": 0.02, "cutout": 8}, 1), (2, {"lr": 0.02, "cutout": 16}, 1),
        (3, {"lr": 0.05, "cutout": 8}, 1), (4, {"lr": 0.05, "cutout": 16}, 1)]
    states = trial_states(plan, tmp_path)
    assert [s.status for s in states] == ["completed"] * 4
    assert sorted(s.run_id for s in states) == sorted(p.name for p in runs.run_dirs(tmp_path))  # each trial one run
    for state in states:  # an ordinary run, which knows its sweep
        run = runs.load_run(state.run_dir)
        assert run.status == "completed" and not run.problems and run.name == f"grid-{state.trial.number}"
        assert {k: run.config[k] for k in state.trial.params} == state.trial.params and run.config["seed"] == 1
        assert run.meta["sweep"] == {"id": plan.id, "name": "grid", "trial": state.trial.number,
                                     "params": state.trial.params, "seed": 1}
        assert summary_of(state.run_dir)["sweep"] == plan.id
    rows = [summary_of(p) for p in runs.run_dirs(tmp_path)]  # what the dashboard's index holds
    assert [s.run_id for s in trial_states(plan, tmp_path, rows)] == [s.run_id for s in states]
    assert f"sweep {plan.id}: 4 of 4 trials completed" in out
    assert "lr=0.05, cutout=16" in out and "best test acc" in out


def test_a_random_search_is_seeded_and_stays_in_its_ranges(tmp_path, sample, capsys):
    args = ["--random", "lr=0.005:0.2:log", "--random", "cutout=0:16", "--trials", "2", "--sweep-seed", "7",
            "--seeds", "2"]
    assert main(["sweep", *SWEEP_FLAGS, "--epochs", "1", *args, "--runs-dir", str(tmp_path)]) == 0
    plan = only_plan(tmp_path)
    assert [t.seed for t in plan.trials] == [1, 2, 1, 2]
    assert plan.trials[0].params == plan.trials[1].params and plan.trials[2].params == plan.trials[3].params
    assert plan.trials[0].params != plan.trials[2].params
    for trial in plan.trials:
        assert 0.005 <= trial.params["lr"] <= 0.2 and isinstance(trial.params["lr"], float)
        assert 0 <= trial.params["cutout"] <= 16 and isinstance(trial.params["cutout"], int)
    states = trial_states(plan, tmp_path)
    assert [s.status for s in states] == ["completed"] * 4
    for state in states:
        config = runs.load_run(state.run_dir).config
        assert (config["lr"], config["cutout"], config["seed"]) == (state.trial.params["lr"],
                                                                    state.trial.params["cutout"], state.trial.seed)
    # the same sweep seed draws the same values; another draws others
    request = SweepRequest(base={"dataset": f"npz:{SAMPLE}"}, random={"lr": "0.005:0.2:log", "cutout": "0:16"},
                           trials=2, sweep_seed=7, seeds=2)
    assert [t.params for t in plan_sweep(request).trials] == [t.params for t in plan.trials]
    request.sweep_seed = 8
    assert [t.params for t in plan_sweep(request).trials] != [t.params for t in plan.trials]


def test_a_log_range_is_drawn_evenly_over_its_orders_of_magnitude():
    """1e-4..1e-1 spans three decades: log-uniform puts a third of the draws in the first, uniform
    about 1%. Integer fields get integers within the range, both ends reachable."""
    def draws(spec: str) -> list:
        request = SweepRequest(base={"dataset": f"npz:{SAMPLE}"}, random={"lr": spec, "cutout": "0:3"}, trials=600)
        return [t.params for t in plan_sweep(request).trials]

    logged = [p["lr"] for p in draws("1e-4:1e-1:log")]
    assert 0.27 < sum(v < 1e-3 for v in logged) / len(logged) < 0.40 and all(1e-4 <= v <= 1e-1 for v in logged)
    linear = draws("1e-4:1e-1")
    assert sum(p["lr"] < 1e-3 for p in linear) / len(linear) < 0.03
    assert {p["cutout"] for p in linear} == {0, 1, 2, 3}


def test_a_toml_sweep_section_plans_what_the_flags_plan(tmp_path):
    config = tmp_path / "sweep.toml"
    config.write_text(f'dataset = "npz:{SAMPLE}"\nepochs = 1\nname = "from-file"\n\n[sweep]\n'
                      'grid = { lr = [0.02, 0.05], batch_size = [32, 64] }\nrandom = { cutout = "0:16" }\n'
                      'trials = 2\nseeds = 2\nsweep_seed = 3\n')
    from_file = plan_sweep(request_from_command_line({}, config_file=str(config)))
    from_flags = plan_sweep(request_from_command_line(
        {"dataset": f"npz:{SAMPLE}", "epochs": 1, "name": "from-file"}, grid=["lr=0.02,0.05", "batch_size=32,64"],
        random_=["cutout=0:16"], trials=2, seeds=2, sweep_seed=3))
    assert from_file.name == from_flags.name == "from-file" and len(from_file.trials) == 2 * 2 * 2 * 2
    assert [(t.params, t.seed) for t in from_file.trials] == [(t.params, t.seed) for t in from_flags.trials]
    assert from_file.base == from_flags.base
    # a flag wins over the file, field by field
    mixed = plan_sweep(request_from_command_line({"name": "flag"}, grid=["lr=0.1,0.2"], config_file=str(config)))
    assert mixed.name == "flag" and mixed.grid == {"lr": [0.1, 0.2], "batch_size": [32, 64]}


# ---------------------------------------------------------------- sweeps refused before any trial


BAD_SWEEPS = [
    (["--grid", "lrr=0.01,0.1"], "--grid lrr=0.01,0.1: no config field 'lrr' (did you mean lr?)"),
    (["--grid", "cutout=8,big"], "--grid cutout=8,big: 'big' is not an integer"),
    (["--grid", "hflip=yes"], "--grid hflip=yes: 'yes' is not true or false"),
    (["--grid", "lr="], "--grid lr=: the list of values is empty"),
    (["--grid", "lr=0.01,,0.1"], "an empty value; remove the extra comma"),
    (["--grid", "lr=0.1,0.1"], "0.1 is listed twice"),
    (["--grid", "momentum=0.9,1.5"], "--grid momentum=0.9,1.5: momentum must be in [0, 1) (got 1.5)"),
    (["--grid", "lr=0.01,-1"], "lr must be positive (got -1.0)"),
    (["--random", "cutout=0:40", "--trials", "2"], "--random cutout=0:40: cutout cannot take the range 0..40"),
    (["--random", "hflip=0:1", "--trials", "2"], "hflip is true or false, not a number, so it has no range"),
    (["--random", "lr=0.1:0.01", "--trials", "2"], "LOW (0.1) must be below HIGH (0.01)"),
    (["--random", "weight_decay=0:0.1:log", "--trials", "2"], "a log range needs LOW above 0"),
    (["--random", "lr=0.01:0.1"], "--random needs --trials N"),
    (["--random", "lr=0.01-0.1", "--trials", "2"], "write --random lr=LOW:HIGH or LOW:HIGH:log"),
    (["--grid", "lr=0.01,0.1", "--trials", "3"], "--trials N counts random draws"),
    (["--grid", "seed=1,2"], "seed cannot be swept: use --seeds K"),
    (["--grid", "runs_dir=a,b"], "runs_dir cannot be swept"),
    (["--grid", "lr=0.01,0.1", "--lr", "0.05"], "--lr 0.05 is given, and lr is swept too"),
    (["--grid", "lr=0.01", "--grid", "lr=0.1"], "lr is given to --grid twice"),
    (["--grid", "lr=0.01,0.1", "--random", "lr=0.01:0.1", "--trials", "2"], "lr is also in the grid"),
    (["--grid", "lr"], "write --grid FIELD=V1,V2,..."),
    ([], "nothing to sweep"),
    (["--seeds", "20000"], "the sweep would have 20,000 trials, more than 10,000"),
    (["--seeds", "0", "--grid", "lr=0.01,0.1"], "--seeds must be at least 1"),
    (["--grid", "lr_finder_start=0.5,0.01", "--grid", "lr_finder_end=0.1,0.9"],
     "the setting lr_finder_start=0.5, lr_finder_end=0.1: lr_finder_start (0.5) must be positive and below"),
    (["--grid", "max_steps=0,1"],  # checked against the data, as train checks before a run exists
     "trial 2 (max_steps=1, seed=1): the run has only 1 optimizer steps, too few for OneCycle's warm-up"),
    (["--grid", "lr=0.01,0.1", "--gpus-per-trial", "1"], "--gpus-per-trial needs --ray"),
    (["--grid", "lr=0.01,0.1", "--name", "x" * 60], "a sweep's name is at most 58 printable characters"),
    (["--grid", "lr=0.01,0.1", "--width", "0"], "the config under every trial: width must be at least 1"),
]


@pytest.mark.parametrize("args, message", BAD_SWEEPS, ids=[" ".join(a) or "empty" for a, _ in BAD_SWEEPS])
def test_a_bad_sweep_is_refused_with_one_line_before_any_trial(tmp_path, sample, capsys, args, message):
    runs_dir = tmp_path / "runs"
    assert main(["sweep", *SWEEP_FLAGS, "--epochs", "1", "--runs-dir", str(runs_dir), *args]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], err
    assert not runs_dir.exists()  # no plan, no run folder


BAD_SECTIONS = [
    ("[sweep]\ngrids = { lr = [0.1, 0.2] }\n", "unknown key 'grids' (did you mean grid?)"),
    ("[sweep]\ngrid = { lr = 0.1 }\n", "[sweep] grid.lr in"),
    ('[sweep]\ngrid = { batch_size = [32, "x"] }\n', "'x' is not an integer"),
    ("[sweep]\ngrid = { widht = [4, 8] }\n", "no config field 'widht' (did you mean width?)"),
    ('[sweep]\nrandom = { lr = { low = 0.01, hi = 0.1 } }\ntrials = 2\n', "write { low = LOW, high = HIGH"),
    ("[sweep]\ngrid = { lr = [] }\n", "the list of values is empty"),
]


@pytest.mark.parametrize("section, message", BAD_SECTIONS)
def test_a_bad_sweep_section_is_refused_before_any_trial(tmp_path, sample, capsys, section, message):
    config = tmp_path / "sweep.toml"
    config.write_text(f'dataset = "npz:{SAMPLE}"\nepochs = 1\n{section}')
    runs_dir = tmp_path / "runs"
    assert main(["sweep", "--config", str(config), "--runs-dir", str(runs_dir)]) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and message in lines[0], lines
    assert not runs_dir.exists()


def test_a_cluster_needs_an_absolute_runs_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["sweep", "--grid", "lr=0.01,0.1", "--ray", "10.0.0.1:6379", "--runs-dir", "shared/runs"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --ray 10.0.0.1:6379 with --runs-dir shared/runs:") and "absolute path" in line
    assert not (tmp_path / "shared").exists()


def test_ray_missing_is_refused_with_the_install_command(tmp_path):
    """Ray is optional: without it, --ray is refused before any work, naming the install command."""
    hide_ray = "import sys; sys.modules['ray'] = None; from engine.cli import main; sys.exit(main(sys.argv[1:]))"
    runs_dir = tmp_path / "runs"
    done = subprocess.run([sys.executable, "-c", hide_ray, "sweep", "--grid", "lr=0.01,0.1", "--ray", "local",
                           "--runs-dir", str(runs_dir)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    (line,) = done.stderr.splitlines()
    assert line.startswith("error: --ray needs Ray") and 'pip install "resnet-runs[ray]"' in line
    assert not runs_dir.exists()


def test_resume_names_a_sweep_that_is_not_there(tmp_path, capsys):
    assert main(["sweep", "--resume", "nope", "--runs-dir", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert "no sweep 'nope'" in line
    assert main(["sweep", "--resume", "nope", "--lr", "0.1", "--runs-dir", str(tmp_path)]) == 2
    assert "drop --lr" in capsys.readouterr().err


# ---------------------------------------------------------------- stopped sweeps, resumed


def test_a_sweep_killed_mid_trial_is_completed_by_resume(tmp_path, sample, capsys):
    """SIGKILL the sweep while trial 2 trains (one epoch done): trial 1 stays completed, trial 2's
    run reads interrupted, trial 3 has none; `sweep --resume` continues trial 2 from its epoch in
    the same folder and runs trial 3, and no trial gets a second run."""
    log = tmp_path / "sweep.log"
    runs_dir = tmp_path / "runs"
    proc = start_sweep(runs_dir, log, "--epochs", "3", "--step-log-every", "1", "--lr", "0.05", "--seeds", "3",
                       "--name", "kill")
    wait_until(lambda: rows_in((trial_run(runs_dir, "kill-2") or tmp_path) / runs.STEPS_JSONL)
               >= STEPS_PER_EPOCH + 2, proc, log, "trial 2's second epoch")  # epoch 1's resume state is written
    proc.kill()
    proc.wait(timeout=30)
    plan = only_plan(runs_dir)
    before = trial_states(plan, runs_dir)
    assert [s.status for s in before] == ["completed", "interrupted", PENDING]
    killed = before[1].run_dir
    assert 1 <= epochs_of(killed) < 3
    assert main(["sweep", "--resume", plan.id, "--runs-dir", str(runs_dir)]) == 0, capsys.readouterr()
    out = capsys.readouterr().out
    assert "2 of 3 trials left (1 to continue from their last completed epoch)" in out
    after = trial_states(plan, runs_dir)
    assert [s.status for s in after] == ["completed"] * 3
    assert after[1].run_dir == killed and len(runs.run_dirs(runs_dir)) == 3
    run = runs.load_run(killed)
    assert run.meta["resumed"] == 1 and run.meta["sweep"] == plan.record(plan.trials[1])
    assert [row["epoch"] for row in run.epochs] == [1, 2, 3]
    assert main(["sweep", "--resume", plan.id, "--runs-dir", str(runs_dir)]) == 0
    assert "nothing left to run" in capsys.readouterr().out


def test_ctrl_c_stops_the_sweep_cleanly_and_resume_finishes_it(tmp_path, sample, capsys):
    """SIGINT during trial 1: the run records itself interrupted (in its run.json, not only by
    the lock check), no other trial starts, the exit status is 130 and the sweep prints how to
    continue. While it runs, a second process cannot take the same sweep."""
    log = tmp_path / "sweep.log"
    runs_dir = tmp_path / "runs"
    proc = start_sweep(runs_dir, log, "--epochs", "3", "--step-log-every", "1", "--lr", "0.05", "--seeds", "2",
                       "--name", "stop")
    wait_until(lambda: rows_in((trial_run(runs_dir, "stop-1") or tmp_path) / runs.STEPS_JSONL)
               >= STEPS_PER_EPOCH + 2, proc, log, "trial 1's second epoch")
    plan = only_plan(runs_dir)
    assert main(["sweep", "--resume", plan.id, "--runs-dir", str(runs_dir)]) == 2
    assert "being run by another process" in capsys.readouterr().err
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130, log.read_text()
    text = log.read_text()
    assert f"sweep --resume {plan.id} --runs-dir {runs_dir}" in text and "0 of 2 trials completed, 2 left" in text
    (stopped,) = runs.run_dirs(runs_dir)  # trial 2 never started
    meta = json.loads((stopped / runs.RUN_JSON).read_text())
    assert meta["status"] == "interrupted" and meta["error"].startswith("stopped by the user")
    assert epochs_of(stopped) >= 1
    assert main(["sweep", "--resume", plan.id, "--runs-dir", str(runs_dir)]) == 0
    states = trial_states(plan, runs_dir)
    assert [s.status for s in states] == ["completed"] * 2 and states[0].run_dir == stopped
    assert runs.load_run(stopped).meta["resumed"] == 1


def test_the_bench_table_shows_each_way_of_starting_the_runs():
    from bench.__main__ import render

    mode = {"wall_seconds": 30.0, "slots": 1, "train_eval_seconds": 14.0, "overhead_per_trial_seconds": 4.0,
            "trials_per_hour": 480.0}
    result = {"trials": 4, "width": 8, "epochs": 2, "train_images": 1024, "by_hand": mode,
              "sweep": {**mode, "wall_seconds": 18.0, "against_hand_per_trial_seconds": -3.0},
              "ray": {**mode, "slots": 2, "against_hand_per_trial_seconds": 0.5}}
    table = render({"device": "cpu", "machine": "x", "torch": "t", "total_seconds": 1.0, "sweep": result})
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip() for line in table.splitlines()[2:]}
    head = "sweep overhead (4 trials, width 8, 2 epochs, 1024 images): "
    assert rows[head + "by hand, one train process each"].startswith("30.0 s wall, 14.0 s training and evaluating, "
                                                                      "4.0 s overhead per trial; 480 trials/hour")
    assert "-3.0 s per trial against by hand" in rows[head + "one sweep, one process"]
    assert rows[head + "one sweep on a local Ray cluster"].startswith("30.0 s wall on 2 slots")
