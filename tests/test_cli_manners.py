"""The command line as a new user meets it (issue 18): run ids that can be pasted and typed (a
whole id, a unique start of one, or a unique name, wherever a run is taken), bad flags named with
the nearest ones, help without repeats, a taken port or an existing file refused before any work,
printed commands that match the way the user works, and `show` as readable as `list`."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from engine import commands, runs
from tests.conftest import PROJECT_ROOT, SAMPLE
from tests.runs_for_tests import cli

VENV_BIN = PROJECT_ROOT / ".venv" / "bin"
TWIN_ID = "20250101-000000-abcdef-seed1"  # a second run named seed1


def refused(code: int, out: str, err: str) -> list[str]:
    """Exit status 2, nothing on stdout, and `error:` lines only."""
    assert code == 2, (code, out, err)
    assert out == "" and "Traceback" not in err, (out, err)
    lines = err.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), err
    return lines


def copy_run(run: Path, root: Path, new_id: str | None = None, **meta) -> Path:
    """A copy of a real run under `root` (optionally under another id, with run.json changed)."""
    copy = root / (new_id or run.name)
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns(runs.LOCK_FILE))
    if new_id or meta:
        data = json.loads((copy / runs.RUN_JSON).read_text())
        data.update(meta, id=copy.name)
        (copy / runs.RUN_JSON).write_text(json.dumps(data))
    return copy


@pytest.fixture
def two_runs(runs_dir, tmp_path) -> tuple[Path, Path, Path]:
    """(runs folder, the seed1 run, the seed2 run): copies of the session's real runs."""
    root = tmp_path / "runs"
    copies = [copy_run(run, root) for run in sorted(runs_dir.iterdir()) if run.is_dir()]
    seed1, seed2 = sorted(copies, key=lambda p: p.name.endswith("seed2"))
    return root, seed1, seed2


# ---------------------------------------------------------------- run ids a person can type


def test_list_prints_whole_ids_and_names(tiny_run, tmp_path, capsys):
    root = tmp_path / "runs"
    long_id = "20250101-000000-abcdef-" + "a-long-descriptive-name-" * 4
    long_name = "a name of forty characters, all of them."
    copy_run(tiny_run, root, long_id, name=long_name)
    code, out, err = cli(capsys, "list", "--runs-dir", root)
    assert code == 0, err
    assert long_id in out and long_name in out and "~" not in out


@pytest.mark.parametrize("command", ["show", "resume", "export"])
@pytest.mark.parametrize("kind", ["whole id", "unique start of the id", "unique name"])
def test_every_command_that_takes_a_run_accepts_a_unique_prefix_or_name(two_runs, tmp_path, monkeypatch, capsys,
                                                                        command, kind):
    root, seed1, _ = two_runs
    monkeypatch.chdir(tmp_path)
    reference = {"whole id": seed1.name, "unique start of the id": seed1.name[:22], "unique name": "seed1"}[kind]
    code, out, err = cli(capsys, command, reference, "--runs-dir", root)
    if command == "resume":  # found, and refused only because it is complete
        assert refused(code, out, err) == [f"error: run {seed1.name} is already complete; nothing to resume"]
    elif command == "show":
        assert code == 0 and re.search(rf"^ *id: {seed1.name}$", out, re.M), (out, err)
    else:
        assert code == 0, err
        with tarfile.open(tmp_path / f"{seed1.name}.tar.gz") as archive:
            assert {name.split("/")[0] for name in archive.getnames()} == {seed1.name}


@pytest.mark.parametrize("command", ["show", "resume", "export"])
def test_an_ambiguous_reference_is_one_error_line_then_the_candidates(two_runs, tiny_run, tmp_path, monkeypatch,
                                                                      capsys, command):
    root, seed1, seed2 = two_runs
    twin = copy_run(tiny_run, root, TWIN_ID)
    monkeypatch.chdir(tmp_path)
    for reference, candidates in (("20", {seed1.name, seed2.name, twin.name}), ("seed1", {seed1.name, twin.name})):
        code, out, err = cli(capsys, command, reference, "--runs-dir", root)
        assert code == 2 and out == "", (out, err)
        first, *rest = err.splitlines()
        assert first.startswith("error: ") and repr(reference) in first and "matches" in first, first
        assert all(line.startswith("  ") for line in rest), err
        assert {line.split()[0] for line in rest} == candidates
    assert list(tmp_path.glob("*.tar.gz")) == []


def test_a_long_list_of_candidates_is_cut_and_says_how_many_more(tmp_path, capsys):
    root = tmp_path / "runs"
    for i in range(30):
        (root / f"20250101-0000{i:02d}-abcdef-same").mkdir(parents=True)
        (root / f"20250101-0000{i:02d}-abcdef-same" / runs.RUN_JSON).write_text(json.dumps({"name": "same"}))
    code, out, err = cli(capsys, "show", "same", "--runs-dir", root)
    lines = err.splitlines()
    assert code == 2 and lines[0].startswith("error: ") and "30 runs" in lines[0]
    assert len(lines) == 1 + 20 + 1 and "10 more" in lines[-1], err


def test_a_reference_that_matches_nothing_says_so_and_where_to_look(two_runs, capsys):
    root, _, _ = two_runs
    [line] = refused(*cli(capsys, "show", "nothing-like-it", "--runs-dir", root))
    assert "no run" in line and "nothing-like-it" in line and "list" in line


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_resume_takes_a_unique_prefix_too(two_runs):
    root, seed1, _ = two_runs
    result = subprocess.run(["make", "-s", "-o", ".venv/.installed", "resume", f"RUN={seed1.name[:22]}",
                             f"RUNS_DIR={root}"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    assert f"error: run {seed1.name} is already complete" in result.stderr, result.stderr


# ---------------------------------------------------------------- the command line's manners


@pytest.mark.parametrize("kind", ["absent", "a file"])
def test_list_of_a_runs_folder_that_is_not_there_is_an_error(tmp_path, capsys, kind):
    folder = tmp_path / "runs"
    if kind == "a file":
        folder.write_text("not a folder")
    [line] = refused(*cli(capsys, "list", "--runs-dir", folder))
    assert str(folder) in line and "--runs-dir" in line


def test_list_of_an_empty_runs_folder_is_not_an_error(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    code, out, err = cli(capsys, "list", "--runs-dir", tmp_path / "runs")
    assert code == 0 and "no runs" in out and err == ""


@pytest.mark.parametrize("argv, unknown, nearest", [
    (["train", "--epcohs", "3"], "--epcohs", "--epochs"),
    (["train", "--batchsize=32"], "--batchsize", "--batch-size"),
    (["list", "--runs-dri", "x"], "--runs-dri", "--runs-dir"),
    (["show", "RUN", "--runs-dri", "x"], "--runs-dri", "--runs-dir"),
    (["resume", "RUN", "--runs-dri", "x"], "--runs-dri", "--runs-dir"),
    (["export", "RUN", "--with-chekpoints"], "--with-chekpoints", "--with-checkpoints"),
    (["export", "RUN", "--froce"], "--froce", "--force"),
    (["import", "a.tar.gz", "--runs-dri", "x"], "--runs-dri", "--runs-dir"),
    (["dashboard", "--prot", "8502"], "--prot", "--port"),
])
def test_an_unknown_flag_is_named_with_the_nearest_ones_on_every_subcommand(tmp_path, monkeypatch, capsys, argv,
                                                                             unknown, nearest):
    monkeypatch.chdir(tmp_path)
    [line] = refused(*cli(capsys, *argv))
    assert unknown in line and nearest in line and commands.command(argv[0], "--help") in line, line
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_subcommand_is_named_with_the_nearest_one(capsys):
    [line] = refused(*cli(capsys, "trian", "--epochs", "3"))
    assert "'trian'" in line and "train" in line and commands.command("--help") in line, line


def test_a_missing_or_malformed_argument_is_one_error_line_naming_the_subcommands_help(capsys):
    for argv, fragment in ((["show"], "run"), (["train", "--epochs", "many"], "--epochs")):
        [line] = refused(*cli(capsys, *argv))
        assert fragment in line and commands.command(argv[0], "--help") in line, line


def test_train_help_states_each_default_once(capsys):
    code, out, _ = cli(capsys, "train", "--help")
    assert code == 0
    entries = re.split(r"\n(?=  -)", out)
    flags = [entry for entry in entries if entry.startswith("  --")]
    assert len(flags) > 40
    for entry in flags:
        assert entry.count("(default:") == (0 if entry.startswith("  --config ") else 1), entry


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_taken_port_is_refused_before_the_dashboard_announces_itself(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "engine", "dashboard", "--port", str(port),
                                 "--runs-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    lines = refused(result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1 and "--port" in lines[0] and str(port) in lines[0], lines


@pytest.mark.parametrize("port", ["0", "70000"])
def test_a_port_out_of_range_is_refused(tmp_path, port):
    """In a process of its own: a dashboard that starts replaces the process that started it."""
    result = subprocess.run([sys.executable, "-m", "engine", "dashboard", "--port", port, "--runs-dir", str(tmp_path)],
                            capture_output=True, text=True, timeout=60)
    [line] = refused(result.returncode, result.stdout, result.stderr)
    assert "--port" in line and port in line


@pytest.mark.parametrize("where", ["named with -o", "the default name"])
def test_export_never_overwrites_a_file_unless_forced(two_runs, tmp_path, monkeypatch, capsys, where):
    root, seed1, _ = two_runs
    monkeypatch.chdir(tmp_path)
    existing = tmp_path / ("mine.tar.gz" if where == "named with -o" else f"{seed1.name}.tar.gz")
    existing.write_bytes(b"somebody's precious file")
    output = ["-o", existing] if where == "named with -o" else []
    [line] = refused(*cli(capsys, "export", seed1.name, *output, "--runs-dir", root))
    assert str(existing.name) in line and "--force" in line
    assert existing.read_bytes() == b"somebody's precious file"
    code, out, err = cli(capsys, "export", seed1.name, *output, "--force", "--runs-dir", root)
    assert code == 0, err
    with tarfile.open(existing) as archive:
        assert runs.RUN_JSON in {Path(name).name for name in archive.getnames()}


def test_show_prints_figures_as_list_does_the_max_lr_and_the_config(two_runs, capsys):
    root, seed1, _ = two_runs
    run = runs.load_run(seed1)
    code, out, err = cli(capsys, "show", seed1.name, "--runs-dir", root)
    assert code == 0, err
    best, epoch = run.best_epoch()
    assert f"{best:.2%}" in out and f"{run.epochs[-1]['test_acc']:.2%}" in out
    assert not re.search(r"\d\.\d{5,}", out), out  # no raw floats such as 0.9888888888888889
    assert "None" not in out and "error:" not in out  # a completed run has no error to show
    assert re.search(r"^ *duration: \d+\.\d[smh]$", out, re.M), out
    assert re.search(rf"^ *max LR: {run.used_lr:.3g} \(LR range test\)$", out, re.M), out
    config_lines = out.split("config:\n", 1)[1].splitlines()
    shown = dict(line.strip().split(": ", 1) for line in config_lines)
    assert set(run.config) <= set(shown) and shown["width"] == "4" and shown["lr"] == "-"


def test_show_of_a_failed_run_prints_its_error(two_runs, capsys):
    root, seed1, _ = two_runs
    meta = json.loads((seed1 / runs.RUN_JSON).read_text())
    (seed1 / runs.RUN_JSON).write_text(json.dumps({**meta, "status": "failed", "error": "out of memory"}))
    code, out, _ = cli(capsys, "show", "seed1", "--runs-dir", root)
    assert code == 0 and re.search(r"^ *error: out of memory$", out, re.M), out


# ---------------------------------------------------------------- printed commands, as the user works


def test_the_demo_does_not_tell_its_user_to_run_the_demo(tmp_path, capsys):
    root = tmp_path / "runs"
    code, out, err = cli(capsys, "train", "--preset", "demo", "--device", "cpu", "--width", "4", "--epochs", "2",
                         "--batch-size", "32", "--train-subset", "256", "--test-subset", "64", "--lr", "0.1",
                         "--threads", "2", "--runs-dir", root)
    assert code == 0, err
    assert "No GPU found" in out and "demo" not in out.split("No GPU found", 1)[1].splitlines()[0], out


def test_a_slow_cpu_run_suggests_the_demo_as_a_command_that_works_pasted(tmp_path, capsys, monkeypatch):
    if not SAMPLE.exists():
        pytest.skip(f"{SAMPLE} is absent")
    monkeypatch.chdir(tmp_path)
    code, out, err = cli(capsys, "train", "--dataset", f"npz:{SAMPLE}", "--device", "cpu", "--width", "4",
                         "--epochs", "2", "--batch-size", "32", "--train-subset", "128", "--test-subset", "64",
                         "--lr", "0.1", "--threads", "2", "--runs-dir", "my runs")
    assert code == 0, err
    assert "make demo" not in out
    assert commands.command("train", "--preset", "demo", runs_dir="my runs") in out, out


def test_an_empty_runs_folder_in_the_dashboard_names_the_dashboard_command(monkeypatch, tmp_path):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("RUNS_DIR", str(tmp_path))
    at = AppTest.from_file(str(PROJECT_ROOT / "dashboard" / "app.py"), default_timeout=60).run()
    assert not at.exception, at.exception
    hints = " ".join(caption.value for caption in at.caption)
    assert "streamlit run" not in hints
    assert commands.command("dashboard", "--runs-dir", "PATH") in hints, hints
