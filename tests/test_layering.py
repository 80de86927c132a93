"""The layers hold: the engine never imports the dashboard's libraries, and a dashboard page neither
imports torch nor reads files itself (pages go through dashboard/data.py)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import PROJECT_ROOT

ENGINE = PROJECT_ROOT / "engine"
PAGES = PROJECT_ROOT / "dashboard" / "app_pages"
DISPLAY_LIBRARIES = {"streamlit", "plotly", "pandas"}
PAGE_FORBIDDEN_IMPORTS = {"torch", "torchvision", "safetensors", "pickle", "pytorch_grad_cam"}
# Calls that open or parse a file: `open(...)`, `np.load`, `json.load`, `Path.read_text`, ...
READING_CALLS = {"open", "load", "loads", "read_text", "read_bytes", "fromfile", "memmap", "load_file",
                 "safe_open", "read_csv", "read_json", "read_parquet", "read_pickle", "iterdir", "glob", "rglob",
                 "scandir", "listdir", "walk"}


def shown(path: Path) -> Path:
    return path.relative_to(PROJECT_ROOT) if path.is_relative_to(PROJECT_ROOT) else path


def imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.append((node.lineno, node.module))
    return found


def forbidden_imports(path: Path, roots: set[str]) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    return [f"{shown(path)}:{line} imports {name}"
            for line, name in imported_modules(tree) if name.split(".")[0] in roots]


def file_reads(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if name in READING_CALLS:
                found.append(f"{shown(path)}:{node.lineno} calls {ast.unparse(func)}(...)")
    return found


def engine_modules() -> list[Path]:
    return sorted(ENGINE.glob("*.py"))


def page_files() -> list[Path]:
    return sorted(PAGES.glob("*.py"))


def test_no_engine_module_imports_a_display_library():
    problems = [p for path in engine_modules() for p in forbidden_imports(path, DISPLAY_LIBRARIES | {"dashboard"})]
    assert problems == []


def test_importing_every_engine_module_loads_no_display_library():
    """Catches indirect imports too (a helper package that pulls in pandas)."""
    names = [f"engine.{p.stem}" for p in engine_modules() if p.stem != "__main__"]
    code = ("import importlib, json, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            f"print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {sorted(DISPLAY_LIBRARIES)!r})))")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1]) == []


# Modules that take from a tenth of a second to several to import on 2 cores and that no page
# needs at its first script run: torch (pages without a model), scipy (the seed statistics import
# scipy.special when they compute, not when Compare draws its curves).
SLOW_IMPORTS = ("torch", "scipy")


def test_the_dashboards_modules_load_without_torch_or_scipy():
    """Every page imports them at a dashboard's first script run, which a cold first visit waits
    for: a page that needs no model must not pay for torch, nor every Compare visit for scipy."""
    names = [f"dashboard.{p.stem}" for p in sorted((PROJECT_ROOT / "dashboard").glob("*.py")) if p.stem != "app"]
    code = ("import importlib, sys\n"
            f"for name in {names!r}: importlib.import_module(name)\n"
            f"print([m for m in {SLOW_IMPORTS!r} if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "[]"


def test_a_runs_npz_or_digits_dataset_loads_again_without_torch(tmp_path):
    """The Training dynamics page shows training images by loading the run's dataset again; for an
    npz dataset or the bundled digits that must not import torch or scikit-learn (2-3 s of the page's
    first visit on 2 cores)."""
    rng = np.random.default_rng(0)
    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=rng.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8), y_train=np.arange(6) % 2,
             x_test=rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8), y_test=np.array([0, 1]))
    code = ("import sys\n"
            "from engine.datasets import load_npz\n"
            "from engine.run_dataset import load_run_dataset\n"
            f"spec = 'npz:{path}'\n"
            "fingerprint = load_npz(__import__('pathlib').Path(spec[4:])).fingerprint()\n"
            "data = load_run_dataset({'dataset': spec}, {'fingerprint': fingerprint})\n"
            "from engine.datasets import load_digits\n"
            "digits = load_run_dataset({'dataset': 'digits'}, {'fingerprint': load_digits().fingerprint()})\n"
            "print(len(data.x_train), len(digits.x_train), [m for m in ('torch', 'sklearn') if m in sys.modules])")
    result = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["6", "1437", "[]"]


def test_dashboard_pages_neither_import_torch_nor_read_files():
    problems = [p for path in page_files() for p in forbidden_imports(path, PAGE_FORBIDDEN_IMPORTS) + file_reads(path)]
    assert problems == []


@pytest.mark.parametrize("source, kind", [
    ("import streamlit as st\n", "engine"),
    ("from plotly import graph_objects\n", "engine"),
    ("import pandas.api\n", "engine"),
    ("import torch\n", "page"),
    ("from safetensors.torch import load_file\n", "page"),
    ("data = open('run.json').read()\n", "page"),
    ("import numpy as np\nx = np.load(path, allow_pickle=False)\n", "page"),
    ("import json\nmeta = json.loads(path.read_text())\n", "page"),
    ("rows = [p for p in run_dir.iterdir()]\n", "page"),
])
def test_the_checks_catch_a_planted_violation(tmp_path, source, kind):
    planted = tmp_path / f"planted_{kind}.py"
    planted.write_text(source)
    if kind == "engine":
        assert forbidden_imports(planted, DISPLAY_LIBRARIES)
    else:
        assert forbidden_imports(planted, PAGE_FORBIDDEN_IMPORTS) + file_reads(planted)
