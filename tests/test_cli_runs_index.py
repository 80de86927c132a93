"""The command line over the run index (issue 19): `list` reads the runs' summaries, filters them
(`--status`, `--tag`, `--where`), prints them as JSON for scripts or as a table with the settings
that tell them apart; `tag` and `note` work while a real run trains the same folder; `archive` and
`restore` move runs and refuse what they must; damaged runs are still listed, as damaged."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
from pathlib import Path

import pytest

from engine import run_layout as layout
from engine import runs
from engine.run_summary import BOOKKEEPING, SUMMARY_KEYS
from tests.runs_for_tests import cli, open_run, start_training, wait_for, write_run

PUBLIC_KEYS = [key for key in SUMMARY_KEYS if key not in BOOKKEEPING]
HOSTILE = "\x1b[2J\n| fake | row"


def listed(capsys, root: Path, *flags) -> list[dict]:
    """`list --json` of `root`: the parsed array."""
    code, out, err = cli(capsys, "list", "--json", "--runs-dir", root, *flags)
    assert code == 0 and err == "", err
    return json.loads(out)


def ids(rows: list[dict]) -> set[str]:
    return {row["id"] for row in rows}


def refused(code: int, out: str, err: str) -> list[str]:
    """Exit 2, nothing on stdout, no traceback, a first line `error: ...`; returns stderr's lines."""
    assert code == 2, (code, out, err)
    assert out == "" and "Traceback" not in err, (out, err)
    lines = err.splitlines()
    assert lines and lines[0].startswith("error: "), err
    return lines


def fingerprints(run_dir: Path) -> dict[str, str]:
    """{file: sha256} of every file in a run folder but the lock."""
    return {str(p.relative_to(run_dir)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run_dir.rglob("*")) if p.is_file() and p.name != layout.LOCK_FILE}


@pytest.fixture
def real_runs(runs_dir, tmp_path) -> tuple[Path, Path, Path]:
    """(runs folder, seed1, seed2): copies of the session's two real tiny runs."""
    root = tmp_path / "runs"
    copies = [Path(shutil.copytree(run, root / run.name, ignore=shutil.ignore_patterns(layout.LOCK_FILE)))
              for run in sorted(runs_dir.iterdir()) if run.is_dir()]
    seed1, seed2 = sorted(copies, key=lambda p: p.name.endswith("seed2"))
    return root, seed1, seed2


# ---------------------------------------------------------------- list --json


def test_list_json_is_one_array_of_every_runs_summary(real_runs, capsys):
    root, seed1, seed2 = real_runs
    assert cli(capsys, "tag", "seed1", "+baseline", "--runs-dir", root)[0] == 0
    assert cli(capsys, "note", "seed2", "second seed\nsame recipe", "--runs-dir", root)[0] == 0
    failed = write_run(root, HOSTILE, status=runs.Status.FAILED, lr=0.2)
    code, out, err = cli(capsys, "list", "--json", "--runs-dir", root)
    assert code == 0 and err == "", err
    assert "\x1b" not in out  # JSON escapes what a run's name holds: safe on a terminal
    rows = json.loads(out)
    assert [row["id"] for row in rows] == sorted((seed1.name, seed2.name, failed.name), reverse=True)
    for row in rows:
        assert list(row) == PUBLIC_KEYS
        run = runs.load_run(root / row["id"])
        assert row["name"] == run.name and row["status"] == run.status and row["error"] == run.error
        assert row["dataset"] == run.dataset_name and row["created"] == run.created
        assert row["epochs_done"] == len(run.epochs) and row["epochs_planned"] == run.epochs_planned
        assert row["best_test_acc"] == run.best_epoch()[0] and row["best_test_acc"] is not None
        assert row["final_test_acc"] == run.epochs[-1]["test_acc"]
        assert row["config"] == run.config and row["sweep"] is None and row["damaged"] == []
    by_id = {row["id"]: row for row in rows}
    assert by_id[seed1.name]["tags"] == ["baseline"] and by_id[seed1.name]["note"] == ""
    assert by_id[seed2.name]["tags"] == [] and by_id[seed2.name]["note"] == "second seed\nsame recipe"
    assert by_id[seed1.name]["status"] == "completed" and by_id[seed1.name]["epochs_done"] == 2
    hostile = by_id[failed.name]
    assert hostile["name"] == HOSTILE and hostile["status"] == "failed" and hostile["error"] == "stopped for a test"
    assert hostile["config"]["lr"] == 0.2 and hostile["epochs_done"] == 2 and hostile["epochs_planned"] == 3
    assert (root / layout.INDEX_CACHE).is_file()  # read through the index, which keeps its cache


def test_list_json_of_nothing_is_an_empty_array(tmp_path, capsys):
    (tmp_path / "runs").mkdir()
    assert listed(capsys, tmp_path / "runs") == []
    assert listed(capsys, tmp_path / "runs", "--archived") == []


# ---------------------------------------------------------------- filters


@pytest.fixture
def mixed(real_runs, capsys) -> tuple[Path, dict[str, str]]:
    """(runs folder, {short name: id}): the two real runs (seed1 tagged baseline and keep), a failed
    run with lr 0.2 tagged baseline, an interrupted one."""
    root, seed1, seed2 = real_runs
    hot = write_run(root, "hot", status=runs.Status.FAILED, lr=0.2)
    cut = write_run(root, "cut", status=runs.Status.INTERRUPTED)
    for name, words in (("seed1", ["+baseline", "keep"]), ("hot", ["+baseline"])):
        assert cli(capsys, "tag", name, *words, "--runs-dir", root)[0] == 0
    return root, {"seed1": seed1.name, "seed2": seed2.name, "hot": hot.name, "cut": cut.name}


@pytest.mark.parametrize("flags, expected", [
    (["--status", "failed"], {"hot"}),
    (["--status", "failed,interrupted"], {"hot", "cut"}),
    (["--status", "failed", "--status", "completed"], {"hot", "seed1", "seed2"}),
    (["--status", " Interrupted "], {"cut"}),
    (["--status", "running"], set()),
    (["--tag", "baseline"], {"seed1", "hot"}),
    (["--tag", "baseline", "--tag", "keep"], {"seed1"}),
    (["--where", "lr > 0.1"], {"hot"}),
    (["--where", 'status == "completed" and best_test_acc >= 0'], {"seed1", "seed2"}),
    (["--where", '"keep" in tags or name == "cut"'], {"seed1", "cut"}),
    (["--where", "epochs_done < epochs_planned"], {"hot", "cut"}),
    (["--status", "completed", "--tag", "baseline", "--where", 'name == "seed1"'], {"seed1"}),
])
def test_list_filters_by_status_tag_and_expression(mixed, capsys, flags, expected):
    root, named = mixed
    assert ids(listed(capsys, root, *flags)) == {named[name] for name in expected}


def test_the_filtered_table_lists_the_matching_runs_and_says_when_none_matches(mixed, capsys, monkeypatch):
    root, named = mixed
    monkeypatch.setenv("COLUMNS", "80")
    code, out, err = cli(capsys, "list", "--tag", "baseline", "--runs-dir", root)
    assert code == 0 and err == "", err
    header, _, *lines, hidden = out.splitlines()  # the real and the written runs differ in many settings
    assert len(lines) == 2 and {line.split()[0] for line in lines} == {named["seed1"], named["hot"]}
    assert all("baseline" in line for line in lines) and "tags" in header and "do not fit" in hidden
    code, out, err = cli(capsys, "list", "--tag", "nothing", "--status", "failed", "--runs-dir", root)
    assert code == 0 and out == f"none of the 4 runs in {root}/ matches --status failed --tag nothing\n", out


@pytest.mark.parametrize("flags, fragment", [
    (["--status", "complete"], "'complete' is not a status; give one of running, completed, failed, interrupted, "
                               "unknown"),
    (["--status", "completed,"], "'' is not a status"),
    (["--tag", "has space"], "'has space' is not a tag"),
    (["--tag", "a,b"], "repeat --tag"),
    (["--where", "lr >> 2"], "--where: column 1: '>>' is not allowed"),
    (["--where", 'lr > 0.1 and preset = "fast"'], "compare with ==, not ="),
    (["--where", "__import__('os').system('true')"], "a function call is not allowed"),
    (["--where", 'status == "complete"'], "no run has status 'complete'"),
    (["--where", ""], "the expression is empty"),
])
def test_a_bad_filter_is_refused_before_anything_is_read(tmp_path, capsys, flags, fragment):
    """The runs folder does not even exist: the filter is refused first, in one `error:` line,
    with the expression and a caret under the column after it."""
    lines = refused(*cli(capsys, "list", "--runs-dir", tmp_path / "absent", *flags))
    assert fragment in lines[0] and "runs folder" not in lines[0], lines
    if "column" not in lines[0]:
        assert len(lines) == 1, lines
        return
    column = int(lines[0].split("column ")[1].split(":")[0])
    assert lines[1:] == ["  " + flags[1], "  " + " " * (column - 1) + "^"], lines


def test_an_unknown_name_in_an_expression_names_the_nearest(mixed, capsys):
    root, _ = mixed
    lines = refused(*cli(capsys, "list", "--runs-dir", root, "--where", "best_acc > 0.5 and lr > 0"))
    assert lines[0].startswith("error: --where: column 1: unknown name 'best_acc'; did you mean ")
    assert "best_test_acc" in lines[0] and lines[1:] == ["  best_acc > 0.5 and lr > 0", "  ^"]
    lines = refused(*cli(capsys, "list", "--runs-dir", root, "--where", "lr > 0 and lrr > 1"))
    assert "unknown name 'lrr'" in lines[0] and lines[2] == "  " + " " * len("lr > 0 and ") + "^"


def test_a_config_key_only_older_runs_have_is_a_name_too(mixed, capsys):
    """An expression may name a config key that today's config lacks when runs that have it are listed."""
    root, named = mixed
    config = root / named["cut"] / layout.CONFIG_JSON
    config.write_text(json.dumps({**json.loads(config.read_text()), "warmup_epochs": 3}))
    assert ids(listed(capsys, root, "--where", "warmup_epochs == 3")) == {named["cut"]}


# ---------------------------------------------------------------- the table


def test_the_table_shows_the_settings_that_tell_runs_apart_as_far_as_the_width_allows(tmp_path, capsys,
                                                                                      monkeypatch):
    root = tmp_path / "runs"
    fast = write_run(root, "same-name", preset="fast", lr=0.1, batch_size=512)
    slow = write_run(root, "same-name", preset="s11", lr=0.05, batch_size=64)
    monkeypatch.setenv("COLUMNS", "400")
    code, out, err = cli(capsys, "list", "--runs-dir", root)
    header, rule, *rows = out.splitlines()
    assert code == 0 and len(rows) == 2, out
    assert header.split()[-4:] == ["tags", "preset", "batch_size", "lr"], header  # config order
    assert len(rule) == len(header)
    cells = {row.split()[0]: row.split()[-3:] for row in rows}
    assert cells == {fast.name: ["fast", "512", "0.1"], slow.name: ["s11", "64", "0.05"]}
    assert all(len(row) == len(header) for row in rows)  # numbers right-aligned under their key

    width = len(header) - 3  # lr no longer fits; preset and batch_size still do
    monkeypatch.setenv("COLUMNS", str(width))
    code, out, _ = cli(capsys, "list", "--runs-dir", root)
    header, rule, *rows, last = out.splitlines()
    assert header.split()[-3:] == ["tags", "preset", "batch_size"] and len(rule) <= width
    assert "lr" in last and "do not fit" in last and "preset" not in last, last

    monkeypatch.setenv("COLUMNS", "80")
    code, out, _ = cli(capsys, "list", "--runs-dir", root)
    assert out.splitlines()[0].split()[-1] == "tags"
    assert "preset, batch_size, lr" in out.splitlines()[-1]


def test_one_run_or_alike_runs_get_no_setting_columns(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "400")
    root = tmp_path / "runs"
    write_run(root, "one", lr=0.1)
    write_run(root, "two", lr=0.1)  # only the name differs, and a name is no setting
    code, out, _ = cli(capsys, "list", "--runs-dir", root)
    assert out.splitlines()[0].split()[-1] == "tags" and len(out.splitlines()) == 4, out


def test_damaged_runs_are_listed_as_damaged_naming_the_file_and_the_others_as_they_are(real_runs, capsys):
    root, seed1, seed2 = real_runs
    with open(seed1 / layout.EPOCHS_JSONL, "a") as handle:
        handle.write('{"epoch": 3, "test_acc": "0.97"}\n')
    garbage = write_run(root, "garbage")
    (garbage / layout.CONFIG_JSON).write_bytes(b"\x00garbage{")
    headless = write_run(root, "headless")
    (headless / layout.RUN_JSON).unlink()
    cut = write_run(root, "cut-dump")
    shutil.copy(seed2 / layout.prediction_file(layout.FINAL), cut / layout.prediction_file(layout.FINAL))
    dump = cut / layout.prediction_file(layout.FINAL)
    dump.write_bytes(dump.read_bytes()[:300])
    damaged = {seed1.name: layout.EPOCHS_JSONL, garbage.name: layout.CONFIG_JSON, headless.name: layout.RUN_JSON,
               cut.name: layout.prediction_file(layout.FINAL)}

    rows = {row["id"]: row for row in listed(capsys, root)}
    assert set(rows) == {*damaged, seed2.name}
    for run_id, file in damaged.items():
        assert file in rows[run_id]["damaged"], rows[run_id]
    assert rows[seed2.name]["damaged"] == [] and rows[headless.name]["status"] == "unknown"

    code, out, err = cli(capsys, "list", "--runs-dir", root)
    assert code == 0 and err == "", err
    lines = out.splitlines()
    for run_id, file in damaged.items():
        at = next(i for i, line in enumerate(lines) if line.startswith(run_id))
        assert "(damaged)" in lines[at], lines[at]
        assert any(line.startswith(f"    damaged: {file}") for line in lines[at + 1:at + 4]), lines[at:at + 4]
    clean = next(line for line in lines if line.startswith(seed2.name))
    assert "(damaged)" not in clean and "completed" in clean


# ---------------------------------------------------------------- tag and note


def test_tag_and_note_print_change_and_clear(tmp_path, capsys):
    root = tmp_path / "runs"
    run = write_run(root, "noted")
    code, out, err = cli(capsys, "note", "noted", "--runs-dir", root)
    assert (code, out) == (0, "") and "has no note" in err
    text = "lr too high?\nsee run 12 \x1b[2J"
    code, out, _ = cli(capsys, "note", "noted", text, "--runs-dir", root)
    assert code == 0 and out == f"note of {run.name} saved ({len(text)} characters)\n"
    code, out, _ = cli(capsys, "note", run.name[:22], "--runs-dir", root)
    assert out == "lr too high?\nsee run 12 \\x1b[2J\n"  # the text as written, escaped for the terminal
    assert runs.read_note(run) == ("lr too high?\nsee run 12 \x1b[2J", [])
    code, out, _ = cli(capsys, "note", "noted", "", "--runs-dir", root)
    assert code == 0 and out == f"note of {run.name} cleared\n" and runs.read_note(run) == ("", [])

    code, out, _ = cli(capsys, "tag", "noted", "+a", "-b", "c", "d", "--runs-dir", root)
    assert code == 0 and out == f"tags of {run.name}: a, c, d\n"
    code, out, _ = cli(capsys, "tag", "noted", "-c", "--runs-dir", root, "-a")  # flags anywhere; -TAG is no flag
    assert code == 0 and out == f"tags of {run.name}: d\n"
    assert cli(capsys, "tag", "noted", "--runs-dir", root)[1] == f"tags of {run.name}: d\n"
    assert cli(capsys, "tag", "--runs-dir", str(root), "noted", "--", "-d")[1] == f"{run.name} has no tags\n"
    assert runs.read_tags(run) == ([], [])


@pytest.mark.parametrize("argv, fragment", [
    (["tag", "noted", "+has space"], "'+has space' is not a tag change"),
    (["tag", "noted", "+ok", "-"], "'-' is not a tag change"),
    (["tag", "noted", "--bad"], "has no flag --bad"),
    (["tag", "nobody", "+x"], "no run 'nobody'"),
    (["note", "noted", "x" * 20_000], "at most 16384 characters"),
    (["note", "nobody", "text"], "no run 'nobody'"),
])
def test_a_bad_tag_or_note_is_refused_and_nothing_is_written(tmp_path, capsys, argv, fragment):
    root = tmp_path / "runs"
    run = write_run(root, "noted")
    before = fingerprints(run)
    lines = refused(*cli(capsys, *argv, "--runs-dir", root))
    assert len(lines) == 1 and fragment in lines[0], lines
    assert fingerprints(run) == before


def test_tag_and_note_from_the_command_line_while_a_real_run_trains_the_same_folder(tmp_path, sample, capsys):
    proc = start_training(tmp_path, "--epochs", "4", "--step-log-every", "1", "--name", "busy")
    written, seen_running = 0, False
    try:
        wait_for(lambda: any((p / layout.RUN_JSON).is_file() for p in tmp_path.iterdir()), proc=proc,
                 what="run.json")
        (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir()]
        while proc.poll() is None:  # tag and note through the command line, the whole run long
            written += 1
            code, _, err = cli(capsys, "tag", "busy", f"+t{written}", f"-t{written - 2}", "--runs-dir", tmp_path)
            assert code == 0, err
            code, _, err = cli(capsys, "note", "busy", f"note {written}", "--runs-dir", tmp_path)
            assert code == 0, err
            if written % 5 == 0:
                [row] = listed(capsys, tmp_path)
                assert row["damaged"] == [] and row["status"] in ("running", "completed"), row
                seen_running |= row["status"] == "running"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
        proc.wait(60)
    assert proc.returncode == 0, proc.stderr.read().decode()[-2000:]
    assert written > 10 and seen_running
    run = runs.load_run(run_dir)
    assert run.status == "completed" and [e["epoch"] for e in run.epochs] == [1, 2, 3, 4] and run.warnings == []
    assert run.predictions(layout.FINAL) is not None and len(run.steps()) == 4 * 8
    assert run.checkpoint_path(layout.FINAL) is not None
    tags = [f"t{written - 1}", f"t{written}"]
    assert cli(capsys, "tag", "busy", "--runs-dir", tmp_path)[1] == f"tags of {run_dir.name}: {', '.join(tags)}\n"
    assert cli(capsys, "note", "busy", "--runs-dir", tmp_path)[1] == f"note {written}\n"
    [row] = listed(capsys, tmp_path)
    assert row["status"] == "completed" and row["tags"] == tags and row["note"] == f"note {written}"
    assert row["epochs_done"] == 4 and row["damaged"] == []
    assert not [p for p in run_dir.rglob("*") if ".tmp-" in p.name]


# ---------------------------------------------------------------- archive and restore


def test_archive_and_restore_through_the_command_line_move_the_whole_run(tmp_path, capsys):
    root = tmp_path / "runs"
    shelved, kept = write_run(root, "shelved"), write_run(root, "kept")
    assert cli(capsys, "tag", "shelved", "+old", "--runs-dir", root)[0] == 0
    assert ids(listed(capsys, root)) == {shelved.name, kept.name}
    before = fingerprints(shelved)

    code, out, err = cli(capsys, "archive", "shelved", "--runs-dir", root)
    assert code == 0, err
    assert out.startswith(f"archived {shelved.name} into {root / layout.ARCHIVE_DIR}/") and "restore" in out
    archived = layout.archive_dir(root) / shelved.name
    assert not shelved.exists() and fingerprints(archived) == before
    assert ids(listed(capsys, root)) == {kept.name}
    [row] = listed(capsys, root, "--archived")
    assert row["id"] == shelved.name and row["tags"] == ["old"]
    code, out, _ = cli(capsys, "list", "--archived", "--runs-dir", root)
    assert out.splitlines()[2].startswith(shelved.name) and len(out.splitlines()) == 3

    code, out, err = cli(capsys, "restore", "shelved", "--runs-dir", root)
    assert (code, out) == (0, f"restored {shelved.name} into {root}/\n"), err
    assert fingerprints(shelved) == before and not archived.exists()
    assert ids(listed(capsys, root)) == {shelved.name, kept.name}
    assert listed(capsys, root, "--archived") == []


def test_archive_refuses_a_running_run_and_restore_a_taken_id(tmp_path, capsys):
    root = tmp_path / "runs"
    writer = open_run(root, "live", epochs=3, done=1)  # this process holds the run's lock
    before = fingerprints(writer.path)
    lines = refused(*cli(capsys, "archive", "live", "--runs-dir", root))
    assert len(lines) == 1 and "it is running" in lines[0] and "nothing was moved" in lines[0], lines
    assert fingerprints(writer.path) == before
    writer.finish(layout.Status.COMPLETED)

    assert cli(capsys, "archive", "live", "--runs-dir", root)[0] == 0
    writer.path.mkdir()
    (writer.path / "something").write_text("x")  # the id is taken again in the runs folder
    lines = refused(*cli(capsys, "restore", "live", "--runs-dir", root))
    assert len(lines) == 1 and "already exists; nothing was moved" in lines[0], lines
    assert (layout.archive_dir(root) / writer.path.name / layout.RUN_JSON).is_file()
    assert [p.name for p in writer.path.iterdir()] == ["something"]

    lines = refused(*cli(capsys, "archive", "nobody", "--runs-dir", root))
    assert len(lines) == 1 and "no run 'nobody'" in lines[0]
    lines = refused(*cli(capsys, "restore", "nobody", "--runs-dir", root))
    assert len(lines) == 1 and "no run 'nobody'" in lines[0]
    shutil.rmtree(layout.archive_dir(root))
    lines = refused(*cli(capsys, "restore", "live", "--runs-dir", root))
    assert lines == [f"error: no archived runs in {root} (it has no {layout.ARCHIVE_DIR} folder); nothing to restore"]
