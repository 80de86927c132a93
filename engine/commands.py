"""How to spell a `resnet-runs` command so that it works when pasted into the user's shell.

Messages that tell people what to run next (`resume`, `dashboard`, `--help`) build the command
here: the program as this shell can reach it, and `--runs-dir` whenever the folder is not the
default one."""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from pathlib import Path

PROG = "resnet-runs"
DEFAULT_RUNS_DIR = "runs"


def default_runs_dir() -> str:
    """The runs folder when no --runs-dir is given: $RUNS_DIR, else runs/ in the current directory."""
    return os.environ.get("RUNS_DIR") or DEFAULT_RUNS_DIR


def _spelled(path: Path) -> str:
    """A path as short as it can be while staying valid from the current directory."""
    try:
        relative = Path(path).absolute().relative_to(Path.cwd())
    except ValueError:
        return str(path)
    return str(relative) if len(relative.parts) > 1 else f"./{relative}"


def program() -> str:
    """`resnet-runs` when the shell finds this installation under that name, else its path;
    `python -m engine` (with this interpreter) when the command is not installed at all."""
    script = Path(sys.executable).parent / PROG
    if not script.exists():
        return f"{shlex.quote(_spelled(Path(sys.executable)))} -m engine"
    found = shutil.which(PROG)
    if found and Path(found).resolve() == script.resolve():
        return PROG
    return shlex.quote(_spelled(script))


def command(*args: str, runs_dir: str | Path | None = None) -> str:
    """A pasteable command line: `command("resume", run_id, runs_dir=d)`. The runs folder is left
    out only when it is ./runs and no $RUNS_DIR says otherwise: $RUNS_DIR may be set for this
    process alone (`make demo RUNS_DIR=...`) and not in the shell the command is pasted into."""
    words = [shlex.quote(str(a)) for a in args]
    plain = Path(DEFAULT_RUNS_DIR).resolve()
    implied = Path(runs_dir).resolve() == plain and Path(default_runs_dir()).resolve() == plain if runs_dir else True
    if not implied:
        words += ["--runs-dir", shlex.quote(str(runs_dir))]
    return " ".join([program(), *words])

