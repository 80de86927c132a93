"""The `resnet-runs` command: installed, it works from any directory and from a wheel; text read
from runs reaches the terminal escaped; every failure is `error:` lines and exit status 2; the
commands the engine prints work when pasted."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from engine import commands, runs
from engine.cli import main
from tests.conftest import PROJECT_ROOT, SAMPLE

VENV_BIN = PROJECT_ROOT / ".venv" / "bin"
COMMAND = VENV_BIN / commands.PROG
HOSTILE = "\x1b[2J\n| fake | row"


def installed() -> Path:
    if not COMMAND.exists():
        pytest.skip("resnet-runs is not installed in .venv (make install)")
    return COMMAND


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a new shell that has not activated the venv."""
    env = {k: v for k, v in os.environ.items() if k not in ("RUNS_DIR", "VIRTUAL_ENV", "PYTHONPATH")}
    env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if Path(p) != VENV_BIN)
    return {**env, **extra}


def run_in(cwd: Path, *argv: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in argv], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=env or clean_env())


def hostile_copy(tiny_run: Path, root: Path, status: str = "failed") -> Path:
    """A copy of a real run whose name, error, dataset and device hold escape sequences."""
    copy = root / tiny_run.name
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns(runs.LOCK_FILE))
    for file, changes in ((runs.RUN_JSON, {"name": HOSTILE, "status": status, "error": "boom\x1b]0;owned\x07"}),
                          (runs.DATASET_JSON, {"name": "npz:\x1b[31mred"}),
                          (runs.ENVIRONMENT_JSON, {"device_name": "cpu\r\x1b[Kfake"})):
        data = json.loads((copy / file).read_text())
        data.update(changes)
        (copy / file).write_text(json.dumps(data))
    return copy


def assert_escaped(text: str) -> None:
    assert "\x1b" not in text and "\x07" not in text and "\r" not in text, text


def test_names_and_errors_from_a_run_reach_the_terminal_escaped(tiny_run, tmp_path, capsys):
    root = tmp_path / "runs"
    run = hostile_copy(tiny_run, root)
    assert runs.load_run(run).name == HOSTILE  # the reader keeps it; only the terminal escapes it

    assert main(["list", "--runs-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert_escaped(out)
    lines = out.splitlines()
    assert len(lines) == 3 and lines[2].startswith(run.name)  # header, rule, one row: no fake row
    assert r"\x1b[2J\n| fake" in lines[2]

    assert main(["show", run.name, "--runs-dir", str(root)]) == 0
    out = capsys.readouterr().out
    assert_escaped(out)
    assert all(re.match(r"^ *[A-Za-z_ ]+:( |$)", line) for line in out.splitlines()), out
    assert r"name: \x1b[2J\n| fake | row" in out and r"boom\x1b]0;owned\x07" in out

    archive = tmp_path / "shared.tar.gz"
    assert main(["export", run.name, "--runs-dir", str(root), "-o", str(archive)]) == 0
    assert main(["import", str(archive), "--runs-dir", str(tmp_path / "other")]) == 0
    captured = capsys.readouterr()
    assert_escaped(captured.out + captured.err)


def test_resume_output_is_escaped_too(tiny_run, tmp_path, capsys):
    run = hostile_copy(tiny_run, tmp_path / "runs", status="interrupted")
    code = main(["resume", run.name, "--runs-dir", str(run.parent)])
    captured = capsys.readouterr()
    assert code in (0, 2), captured
    assert_escaped(captured.out + captured.err)


def test_a_damaged_run_is_listed_as_damaged_naming_the_file(tiny_run, tmp_path, capsys):
    root = tmp_path / "runs"
    copy = root / tiny_run.name
    shutil.copytree(tiny_run, copy)
    with open(copy / runs.EPOCHS_JSONL, "a") as handle:
        handle.write('{"epoch": 3, "test_acc": "0.97"}\n')
    assert main(["list", "--runs-dir", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "(damaged)" in lines[2]
    assert lines[3].strip().startswith(f"damaged: {runs.EPOCHS_JSONL}")


def error_lines(code: int, err: str) -> list[str]:
    assert code == 2, err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert lines and all(line.startswith("error: ") for line in lines), err
    return lines


@pytest.mark.parametrize("argv, fragment", [
    (["show", "no-such-run"], "no run"),
    (["show", "../../etc"], ""),
    (["show", "bad\nid"], ""),
    (["resume", "no-such-run"], "no run"),
    (["export", "no-such-run"], "no run"),
    (["import", "absent.tar.gz"], "does not exist"),
    (["train", "--epochs", "0", "--batch-size", "0"], "epochs must be at least 1"),
    (["train", "--name", HOSTILE], "printable"),
    (["train", "--dataset", "npz:absent.npz"], "absent.npz"),
])
def test_every_refusal_is_error_lines_with_status_2(tmp_path, capsys, monkeypatch, argv, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    code = main(argv + ["--runs-dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    lines = error_lines(code, err)
    assert fragment in err
    assert_escaped(err)
    assert len(lines) == (2 if argv[1:3] == ["--epochs", "0"] else 1)
    assert list((tmp_path / "runs").iterdir()) == []


def test_resume_refusals_are_one_error_line_and_change_nothing(tiny_run, tmp_path, capsys):
    root = tmp_path / "runs"
    copy = root / tiny_run.name
    shutil.copytree(tiny_run, copy, ignore=shutil.ignore_patterns(runs.LOCK_FILE))
    error_lines(main(["resume", copy.name, "--runs-dir", str(root)]), capsys.readouterr().err)  # complete

    meta = json.loads((copy / runs.RUN_JSON).read_text())
    (copy / runs.RUN_JSON).write_text(json.dumps({**meta, "status": "interrupted"}))
    (copy / runs.CHECKPOINTS_DIR / runs.RESUME_STATE).write_bytes(b"not a resume state")
    before = {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    lines = error_lines(main(["resume", copy.name, "--runs-dir", str(root)]), capsys.readouterr().err)
    assert len(lines) == 1 and runs.RESUME_STATE in lines[0]
    assert {p: p.read_bytes() for p in copy.rglob("*") if p.is_file()} == before


def own_copy(runs_dir: Path, tmp_path: Path) -> Path:
    """A copy of the session's runs: `list` writes the index's cache into the folder it lists."""
    return Path(shutil.copytree(runs_dir, tmp_path / "listed-runs", ignore=shutil.ignore_patterns(runs.LOCK_FILE)))


def test_the_installed_command_works_from_any_directory(runs_dir, tmp_path):
    command = installed()
    runs_dir = own_copy(runs_dir, tmp_path)
    ids = [p.name for p in runs_dir.iterdir() if p.is_dir()]
    for argv, env in (([command, "list", "--runs-dir", runs_dir], None),
                      ([command, "list"], clean_env(RUNS_DIR=str(runs_dir))),
                      ([VENV_BIN / "python", "-m", "engine", "list", "--runs-dir", runs_dir], None)):
        result = run_in(tmp_path, *argv, env=env)
        assert result.returncode == 0, result.stderr
        assert all(run_id in result.stdout for run_id in ids)


def test_a_wheel_of_the_project_gives_a_working_command_outside_the_checkout(runs_dir, tmp_path):
    """`pip install .` anywhere: build a wheel from a copy of the sources, install it into a bare
    folder, and run its command from another directory with only that folder on the path."""
    installed()
    source = tmp_path / "source"
    for part in ("engine", "dashboard"):
        shutil.copytree(PROJECT_ROOT / part, source / part, ignore=shutil.ignore_patterns("__pycache__"))
    for part in ("pyproject.toml", "README.md"):
        shutil.copy(PROJECT_ROOT / part, source / part)
    pip = [VENV_BIN / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    built = run_in(source, *pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "wheel", ".")
    assert built.returncode == 0, built.stderr
    [wheel] = (tmp_path / "wheel").glob("resnet_runs-*.whl")
    site = tmp_path / "site"
    done = run_in(tmp_path, *pip, "install", "--no-deps", "--target", site, wheel)
    assert done.returncode == 0, done.stderr

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = clean_env(PYTHONPATH=str(site))
    runs_dir = own_copy(runs_dir, tmp_path)
    listed = run_in(elsewhere, site / "bin" / commands.PROG, "list", "--runs-dir", runs_dir, env=env)
    assert listed.returncode == 0, listed.stderr
    assert all(p.name in listed.stdout for p in runs_dir.iterdir() if p.is_dir())
    where = run_in(elsewhere, VENV_BIN / "python", "-c",
                   "import engine; from engine.cli import dashboard_app; print(engine.__file__); "
                   "print(dashboard_app())", env=env)
    engine_file, app = (Path(line) for line in where.stdout.split())
    assert engine_file.is_relative_to(site) and app.is_relative_to(site) and app.is_file()
    pages = {p.name for p in (app.parent / "app_pages").glob("*.py")}
    assert pages == {p.name for p in (PROJECT_ROOT / "dashboard" / "app_pages").glob("*.py")} and pages


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def listeners(port: int) -> set[str]:
    """Local addresses (hex, as the kernel lists them) listening on `port`, IPv4 and IPv6."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        if Path(table).exists():
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                    found.add(local.rsplit(":", 1)[0])
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="reads Linux's socket table")
def test_printed_commands_work_when_pasted_and_the_dashboard_stays_local(sample, tmp_path, monkeypatch):
    """Train from a directory that has no .streamlit/config.toml, into a folder whose name needs
    quoting; paste the dashboard command the run prints into a shell that never activated the venv."""
    command = installed()
    trained = run_in(tmp_path, command, "train", "--dataset", f"npz:{SAMPLE}", "--width", "4", "--epochs", "2",
                     "--batch-size", "32", "--train-subset", "128", "--test-subset", "64", "--lr", "0.1",
                     "--threads", "1", "--runs-dir", "my runs", "--name", "pasted")
    assert trained.returncode == 0, trained.stderr
    printed = re.search(r"open it with: (.+)", trained.stdout)
    assert printed, trained.stdout
    run_dir = next((tmp_path / "my runs").iterdir())
    monkeypatch.chdir(tmp_path)  # printed where it is pasted
    resume_line = commands.command("resume", run_dir.name, runs_dir="my runs")
    pasted = run_in(tmp_path, "bash", "-c", resume_line)  # a complete run: refused, but found
    assert pasted.returncode == 2 and "already complete" in pasted.stderr, pasted.stderr

    port = free_port()
    server = subprocess.Popen(["bash", "-c", f"{printed[1]} --port {port}"], cwd=tmp_path, env=clean_env(),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read().decode()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=5) as answer:
                    if answer.read() == b"ok":
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "the dashboard did not answer within 120 s"
            time.sleep(0.5)
        assert listeners(port) == {"0100007F"}  # 127.0.0.1 only, no 0.0.0.0 nor ::
        argv = Path(f"/proc/{server.pid}/cmdline").read_bytes().split(b"\0")
        flags = dict(zip(argv, argv[1:]))
        assert flags[b"--server.address"] == b"127.0.0.1"
        assert flags[b"--server.enableXsrfProtection"] == flags[b"--server.enableCORS"] == b"true"
        config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
        for section, options in config.items():  # what holds in the project root holds from anywhere
            for key, value in options.items():
                if not (section == "server" and key == "address"):  # --address chooses it; checked above
                    assert flags[f"--{section}.{key}".encode()] == json.dumps(value).strip('"').encode(), key
        assert Path(flags[b"--runs-dir"].decode()) == (tmp_path / "my runs").absolute()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)


def test_printed_commands_name_the_runs_folder_unless_it_is_the_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RUNS_DIR", raising=False)
    assert commands.command("resume", "x", runs_dir="runs").endswith("resume x")
    assert commands.command("resume", "x", runs_dir=tmp_path / "runs").endswith("resume x")
    assert commands.command("list", runs_dir="my runs").endswith("list --runs-dir 'my runs'")
    monkeypatch.setenv("RUNS_DIR", "elsewhere")  # perhaps set for this process only: always name it
    assert commands.command("list", runs_dir="runs").endswith("list --runs-dir runs")
    assert commands.command("list", runs_dir="elsewhere").endswith("list --runs-dir elsewhere")
    assert commands.program() in (commands.PROG, str(COMMAND), f"{sys.executable} -m engine")
