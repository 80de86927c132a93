"""The run format's layout is spelled once (engine/run_layout.py) and read everywhere else: no
engine module spells a file name, a run-folder path or a status itself."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest

from engine import run_layout as layout
from engine import run_validate, runs
from tests.conftest import PROJECT_ROOT

ENGINE = PROJECT_ROOT / "engine"
# Literals left on purpose, each named: cam.py is another engineer's.
KNOWN_LEFTOVERS = {("cam.py", "final"),
                   ("safe_io.py", ".npy")}  # the .npz container's member suffix: numpy's format, not ours
NAMES = ({v for k, v in vars(layout).items() if k.isupper() and isinstance(v, str)}
         | set(layout.Status) | set(layout.ROLES.values()) | set(layout.PREDICTION_TAGS)) - {""}
BARE_FILE = re.compile(r"/?[\w.-]*\.(json|jsonl|npz|npy|safetensors|pt|txt)\Z")


def docstrings(tree: ast.AST) -> set[int]:
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                found.add(id(first.value))
    return found


def stray_literals(path: Path) -> list[tuple[str, int, str]]:
    """(file, line, literal) for each string constant that spells a piece of the layout."""
    tree = ast.parse(path.read_text(), filename=str(path))
    skip = docstrings(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
            value = node.value
            if (value in NAMES or BARE_FILE.match(value) or f"{layout.PREDICTIONS_DIR}/" in value
                    or f"{layout.CHECKPOINTS_DIR}/" in value):
                found.append((path.name, node.lineno, value))
    return found


def test_no_engine_module_spells_a_file_name_a_path_or_a_status():
    modules = [p for p in sorted(ENGINE.glob("*.py")) if p.name != "run_layout.py"]
    found = [hit for path in modules for hit in stray_literals(path) if (hit[0], hit[2]) not in KNOWN_LEFTOVERS]
    assert found == [], "spell these through engine/run_layout.py: " + ", ".join(f"{f}:{n} {v!r}" for f, n, v in found)


@pytest.mark.parametrize("source", [
    'path = run_dir / "epochs.jsonl"\n',
    'if run.status == "completed":\n    pass\n',
    'dump = f"predictions/{tag}.npz"\n',
    'weights = run_dir / CHECKPOINTS_DIR / f"{tag}.safetensors"\n',
    'writer.write_predictions("best", dump)\n',
    'summary = read(run_dir / "summary.json")\n',
])
def test_the_scan_catches_a_planted_literal(tmp_path, source):
    planted = tmp_path / "planted.py"
    planted.write_text(f'"""A docstring may say epochs.jsonl."""\n{source}')
    assert stray_literals(planted), source


def test_statuses_have_one_definition():
    assert run_validate.STATUSES is layout.STATUSES and runs.STATUSES is layout.STATUSES
    assert set(layout.STATUSES) == {"running", "completed", "failed", "interrupted"}
    assert layout.Status.RUNNING == "running" and json.dumps({"s": layout.Status.FAILED}) == '{"s": "failed"}'
    assert f"{layout.Status.INTERRUPTED}" == "interrupted"


def test_the_layout_is_re_exported_by_runs_unchanged():
    for name in runs.__all__:
        if hasattr(layout, name):
            assert getattr(runs, name) is getattr(layout, name), name
    assert runs.FORMAT_VERSION == 2
    for tag in layout.PREDICTION_TAGS:
        assert layout.prediction_path(Path("r"), tag) == Path("r") / layout.ROLES[f"predictions/{tag}"]
        assert layout.checkpoint_path(Path("r"), tag) == Path("r") / layout.ROLES[f"checkpoint/{tag}"]
    assert layout.resume_state_path(Path("r")) == Path("r") / layout.ROLES["resume_state"]
    assert set(layout.SUMMARY_SOURCES) >= {layout.RUN_JSON, layout.EPOCHS_JSONL, layout.TAGS_JSON, layout.NOTE_TXT}


def test_a_run_written_by_the_engine_uses_the_layouts_paths(tmp_path):
    writer = runs.RunWriter.create(tmp_path, "paths", 1)
    assert writer.checkpoint_path(layout.BEST) == layout.checkpoint_path(writer.path, layout.BEST)
    assert writer.resume_state_path == layout.resume_state_path(writer.path)
    writer.finish(layout.Status.COMPLETED)
    run = runs.load_run(writer.path)
    assert run.resume_state_path() == layout.resume_state_path(writer.path)
    assert {p.name for p in writer.path.iterdir()} == {layout.RUN_JSON, layout.SUMMARY_JSON, layout.LOCK_FILE,
                                                       layout.PREDICTIONS_DIR, layout.CHECKPOINTS_DIR}
