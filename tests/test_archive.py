"""Sharing runs: an archive imports completely or not at all, and every refusal is one `error:`
line with exit status 2, whatever is wrong with the file (cut short, lying, hostile, not a tar)."""

from __future__ import annotations

import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import runs
from engine.archive import export_run
from engine.cli import main
from engine.run_index import RunIndex
from tests.conftest import PROJECT_ROOT

RUN_ID = "20250101-000000-abcdef-shared"
NOT_SHARED = (runs.LOCK_FILE, runs.SUMMARY_JSON)  # the summary is derived: rebuilt where the run lands


def tree(root: Path) -> dict[str, bytes]:
    """Every file under `root`, by relative path, with its bytes: the whole state of a folder."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def listing(root: Path) -> list[str]:
    """Every entry under `root`, files and folders, hidden ones included."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def import_cli(archive: Path, runs_dir: Path, capsys) -> tuple[int, str, str]:
    code = main(["import", str(archive), "--runs-dir", str(runs_dir)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_refused(archive: Path, tmp_path: Path, capsys, fragment: str = "") -> str:
    """Exit 2, one `error:` line naming the archive, and nothing written anywhere under tmp_path."""
    before = listing(tmp_path)
    code, out, err = import_cli(archive, tmp_path / "new" / "runs", capsys)
    assert code == 2, (out, err)
    assert err.startswith("error: cannot import ") and err.count("\n") == 1, err
    assert "Traceback" not in err and "\x1b" not in err and out == ""
    assert fragment in err, err
    assert listing(tmp_path) == before
    return err


# ---------------------------------------------------------------- hand-made archives


def header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname = size, kind, linkname
    return info.tobuf(tarfile.GNU_FORMAT)


def padded(data: bytes) -> bytes:
    return data + b"\0" * (-len(data) % tarfile.BLOCKSIZE)


def raw_tar(*entries: tuple, end: bytes = b"\0" * 1024) -> bytes:
    """A tar built block by block, so a header can say anything: (name, data[, kind[, size]])."""
    out = b""
    for entry in entries:
        name, data, kind, size = [*entry, *(tarfile.REGTYPE, None)[len(entry) - 2:]]
        out += header(name, len(data) if size is None else size, kind) + padded(data)
    return out + end


RUN_JSON = b'{"id": "x", "status": "completed"}'


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


HOSTILE = {
    "header says fewer bytes than follow": (raw_tar(
        (f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/notes.txt", b"n" * 2000, tarfile.REGTYPE, 700),
        (f"{RUN_ID}/more.txt", b"m")), "damaged"),
    "header says more bytes than there are": (raw_tar(
        (f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/notes.txt", b"n" * 100, tarfile.REGTYPE, 5000)), ""),
    "a file and a folder of the same name": (raw_tar(
        (f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/x", b"file"), (f"{RUN_ID}/x/y", b"inside")),
        "both a file and a folder"),
    "a file then a folder entry of the same name": (raw_tar(
        (f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/x", b"file"), (f"{RUN_ID}/x/", b"", tarfile.DIRTYPE)),
        "both a file and a folder"),
    "a member twice": (raw_tar((f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/run.json", b"{}")), "appears twice"),
    "top folder evil newline": (raw_tar(("evil\n/run.json", RUN_JSON)), "control characters"),
    "a run id with a trailing newline": (raw_tar((f"{RUN_ID}\n/run.json", RUN_JSON)), "control characters"),
    "a top folder that is not a run id": (raw_tar(("-rf/run.json", RUN_JSON)), "not a valid run id"),
    "an escape sequence in a member name": (raw_tar((f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/\x1b[2J", b"")),
                                            "control characters"),
    "a hard link": (raw_tar((f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/h", b"", tarfile.LNKTYPE)), "hard link"),
    "a symbolic link": (raw_tar((f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/s", b"", tarfile.SYMTYPE)),
                        "symbolic link"),
    "a fifo": (raw_tar((f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/f", b"", tarfile.FIFOTYPE)), "fifo"),
    "a device": (raw_tar((f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/d", b"", tarfile.CHRTYPE)), "device"),
    "a path that climbs out": (raw_tar((f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/../../x", b"")), "outside"),
    "an absolute path": (raw_tar(("/tmp/x/run.json", RUN_JSON)), "outside"),
    "a folder without run.json": (raw_tar((f"{RUN_ID}/notes.txt", b"")), "not a run"),
    "a run's files without their folder": (raw_tar(("run.json", RUN_JSON)), "without their folder"),
    "no end-of-archive blocks": (raw_tar((f"{RUN_ID}/run.json", RUN_JSON), end=b""), "cut short"),
    "garbage after the end": (raw_tar((f"{RUN_ID}/run.json", RUN_JSON)) + b"appended" * 100, "after its end"),
    "an archive with no members": (raw_tar(), "no run folder"),
    "a name the filesystem refuses (unpacking fails half-way)": (raw_tar(
        (f"{RUN_ID}/run.json", RUN_JSON), (f"{RUN_ID}/" + "n" * 300, b"x")), "could not be unpacked"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_a_broken_or_hostile_archive_is_one_error_line_and_writes_nothing(tmp_path, capsys, case):
    data, fragment = HOSTILE[case]
    assert_refused(write(tmp_path, "x.tar", data), tmp_path, capsys, fragment)
    assert_refused(write(tmp_path, "x.tar.gz", gzip.compress(data)), tmp_path, capsys, fragment)


def zip_bytes() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{RUN_ID}/run.json", RUN_JSON)
    return buffer.getvalue()


@pytest.mark.parametrize("name, data, fragment", [
    ("garbage.tar.gz", os.urandom(3000), "not a readable tar archive"),
    ("empty.tar.gz", b"", "not a readable tar archive"),
    ("run.zip", zip_bytes(), "not a readable tar archive"),
    ("half-a-gzip-header.tar.gz", gzip.compress(raw_tar((f"{RUN_ID}/run.json", RUN_JSON)))[:6], "not a readable"),
])
def test_files_that_are_not_tar_archives_are_refused(tmp_path, capsys, name, data, fragment):
    assert_refused(write(tmp_path, name, data), tmp_path, capsys, fragment)


def test_a_missing_path_or_a_folder_is_refused(tmp_path, capsys):
    assert_refused(tmp_path / "absent.tar.gz", tmp_path, capsys, "does not exist")
    (tmp_path / "folder.tar.gz").mkdir()
    assert_refused(tmp_path / "folder.tar.gz", tmp_path, capsys, "not a file")


def test_one_of_several_runs_being_bad_imports_none_of_them(tmp_path, capsys):
    data = raw_tar((f"{RUN_ID}/run.json", RUN_JSON), ("20250101-000000-abcdef-other/run.json", RUN_JSON),
                   ("20250101-000000-abcdef-other/link", b"", tarfile.SYMTYPE))
    (tmp_path / "new" / "runs").mkdir(parents=True)
    assert_refused(write(tmp_path, "two.tar", data), tmp_path, capsys, "symbolic link")


# ---------------------------------------------------------------- real runs


@pytest.fixture(scope="module")
def shared(tiny_run, tmp_path_factory) -> tuple[Path, dict[str, bytes]]:
    """The light export of a real run, and the files a complete import of it yields."""
    folder = tmp_path_factory.mktemp("shared")
    archive = export_run(tiny_run, folder / "run.tar.gz")
    reference = folder / "reference"
    assert main(["import", str(archive), "--runs-dir", str(reference)]) == 0
    return archive, tree(reference)


def test_export_then_import_gives_the_same_files(shared, tiny_run):
    _, files = shared
    expected = {f"{tiny_run.name}/{k}": v for k, v in tree(tiny_run).items()
                if not k.startswith(runs.CHECKPOINTS_DIR + "/") and k not in NOT_SHARED}
    assert files == expected


def test_a_summary_is_neither_exported_nor_imported_and_the_reader_builds_its_own(tiny_run, tmp_path, capsys):
    """summary.json is derived from the run's files: one written elsewhere is never trusted."""
    archive = export_run(tiny_run, tmp_path / "run.tar.gz")
    with tarfile.open(archive) as tar:
        names = tar.getnames()
    assert f"{tiny_run.name}/{runs.RUN_JSON}" in names and f"{tiny_run.name}/{runs.SUMMARY_JSON}" not in names
    forged = Path(shutil.copytree(tiny_run, tmp_path / "forged" / tiny_run.name,
                                  ignore=shutil.ignore_patterns(runs.LOCK_FILE)))
    summary = json.loads((forged / runs.SUMMARY_JSON).read_text())
    (forged / runs.SUMMARY_JSON).write_text(json.dumps({**summary, "best_test_acc": 0.99, "name": "forged"}))
    with tarfile.open(tmp_path / "forged.tar.gz", "w:gz") as tar:
        tar.add(forged, arcname=forged.name)
    code, _, err = import_cli(tmp_path / "forged.tar.gz", tmp_path / "runs", capsys)
    imported = tmp_path / "runs" / tiny_run.name
    assert code == 0 and not (imported / runs.SUMMARY_JSON).exists(), err
    [row] = RunIndex(tmp_path / "runs").refresh()
    assert row["name"] == "seed1" and row["best_test_acc"] == runs.load_run(tiny_run).best_epoch()[0] != 0.99


def test_a_packed_runs_folder_with_an_archive_and_an_index_imports_its_runs_and_names_the_rest(runs_dir, tmp_path,
                                                                                               capsys):
    """`tar -C runs -czf all.tar.gz .` of a folder of format 2: the archive and the index's cache
    are entries of the runs folder, not runs; they are skipped and named."""
    packed = Path(shutil.copytree(runs_dir, tmp_path / "packed", ignore=shutil.ignore_patterns(runs.LOCK_FILE)))
    first, *rest = sorted(p.name for p in packed.iterdir() if p.is_dir())
    assert main(["archive", first, "--runs-dir", str(packed)]) == 0
    assert main(["list", "--runs-dir", str(packed)]) == 0 and (packed / runs.INDEX_CACHE).is_file()
    capsys.readouterr()
    with tarfile.open(tmp_path / "all.tar.gz", "w:gz") as tar:
        tar.add(packed, arcname=".")
    code, out, err = import_cli(tmp_path / "all.tar.gz", tmp_path / "imported", capsys)
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "imported").iterdir()) == rest
    assert f"skipped {runs.ARCHIVE_DIR} (not a run folder)" in out and f"skipped {runs.INDEX_CACHE}" in out


@pytest.mark.skipif(shutil.which("tar") is None, reason="needs the tar command")
def test_a_runs_folder_packed_with_tar_dot_imports_every_run(runs_dir, tmp_path, capsys):
    """`tar -C runs -czf all.tar.gz .`: `./` prefixes, several runs, a README beside them."""
    packed = tmp_path / "packed"
    shutil.copytree(runs_dir, packed)
    (packed / "README.md").write_text("runs live here\n")
    archive = tmp_path / "all.tar.gz"
    subprocess.run(["tar", "-C", str(packed), "-czf", str(archive), "."], check=True)
    assert any(name.startswith("./") for name in tarfile.open(archive).getnames())
    target = tmp_path / "imported"
    code, out, err = import_cli(archive, target, capsys)
    assert code == 0, err
    ids = sorted(p.name for p in runs_dir.iterdir() if p.is_dir())
    assert sorted(p.name for p in target.iterdir()) == ids
    assert out.count("imported as") == len(ids) and "skipped README.md" in out
    for run_id in ids:
        assert tree(target / run_id) == {k: v for k, v in tree(packed / run_id).items() if k not in NOT_SHARED}
    code, out, _ = import_cli(archive, target, capsys)  # again: every id is taken, fresh ids follow
    assert code == 0 and len(list(target.iterdir())) == 2 * len(ids)


def packed_runs(runs_dir: Path, tmp_path: Path) -> Path:
    """Every run of `runs_dir` in one archive, as `tar -C runs -czf all.tar.gz .` would pack them."""
    archive = tmp_path / "all.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(runs_dir, arcname=".", filter=lambda m: None if m.name.endswith(runs.LOCK_FILE) else m)
    return archive


def test_a_failure_while_moving_runs_into_place_undoes_the_runs_already_moved(runs_dir, tmp_path, capsys,
                                                                              monkeypatch):
    """The disk fails on the second run's rename (the OS, simulated: the rename itself): the first
    run, already in place, goes back, and the runs folder is exactly as it was."""
    archive = packed_runs(runs_dir, tmp_path)
    target = tmp_path / "runs"
    target.mkdir()
    (target / "20240101-000000-000000-mine").mkdir()
    (target / "20240101-000000-000000-mine" / "run.json").write_text("{}")
    before = tree(target), listing(target)
    renames = []
    real_rename = Path.rename

    def failing_rename(self, destination):
        renames.append(destination)
        if len(renames) == 2:  # the first run is in place by now
            raise OSError(5, "Input/output error")
        return real_rename(self, destination)

    monkeypatch.setattr(Path, "rename", failing_rename)
    code, out, err = import_cli(archive, target, capsys)
    assert code == 2 and out == "" and err.count("\n") == 1, err
    assert "moving run" in err and "Input/output error" in err and "nothing was written" in err, err
    assert len(renames) >= 3  # the first run was moved, and moved back
    assert (tree(target), listing(target)) == before


def test_a_dangling_link_in_the_runs_folder_is_a_taken_id(runs_dir, tmp_path, capsys):
    archive = packed_runs(runs_dir, tmp_path)
    ids = sorted(p.name for p in runs_dir.iterdir() if p.is_dir())
    target = tmp_path / "runs"
    target.mkdir()
    (target / ids[0]).symlink_to(tmp_path / "gone")
    code, _, err = import_cli(archive, target, capsys)
    assert code == 0, err
    assert (target / ids[0]).is_symlink() and not (target / ids[0]).exists()  # left as it was
    imported = sorted(p.name for p in target.iterdir() if p.name != ids[0])
    assert len(imported) == len(ids) and ids[0] not in imported


def test_an_import_never_overwrites_and_keeps_the_name(shared, tmp_path, capsys):
    archive, files = shared
    target = tmp_path / "runs"
    first = import_cli(archive, target, capsys)
    second = import_cli(archive, target, capsys)
    assert first[0] == second[0] == 0
    ids = sorted(p.name for p in target.iterdir())
    assert len(ids) == 2 and len({runs.run_id_suffix(i) for i in ids}) == 1
    shared_files = {k.split("/", 1)[1]: v for k, v in files.items()}
    for run_id in ids:  # the same files; only the copy's run.json names its new id
        copied = tree(target / run_id)
        assert json.loads(copied.pop(runs.RUN_JSON)) == {**json.loads(shared_files[runs.RUN_JSON]), "id": run_id}
        assert copied == {k: v for k, v in shared_files.items() if k != runs.RUN_JSON}


def test_an_import_whose_id_is_taken_says_so_and_the_copy_knows_its_new_id(shared, tmp_path, capsys):
    archive, files = shared
    original = next(iter(files)).split("/")[0]
    target = tmp_path / "runs"
    assert import_cli(archive, target, capsys)[:2] == (0, f"imported as {target / original}\n")
    code, out, err = import_cli(archive, target, capsys)
    assert code == 0, err
    [copy] = [p for p in target.iterdir() if p.name != original]
    assert out == f"imported as {copy} (the id {original} is taken, so this copy has a new id)\n"
    assert json.loads((copy / runs.RUN_JSON).read_text())["id"] == copy.name
    run = runs.load_run(copy)
    assert run.meta["id"] == run.id == copy.name and run.warnings == []
    assert not [p for p in copy.rglob("*") if ".tmp-" in p.name]


def imports_exactly_or_not_at_all(data: bytes, name: str, files: dict[str, bytes], tmp_path_factory) -> None:
    """Importing these archive bytes gives exactly `files`, or exit 2 with no runs folder made."""
    root = tmp_path_factory.mktemp("damaged")
    archive = root / name
    archive.write_bytes(data)
    target = root / "runs"
    code = main(["import", str(archive), "--runs-dir", str(target)])
    if code == 0:
        assert tree(target) == files
    else:
        assert code == 2 and not target.exists()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1), compressed=st.booleans(), at_header=st.booleans(), pick=st.integers(0, 10_000))
def test_an_archive_cut_anywhere_imports_completely_or_not_at_all(shared, tmp_path_factory, where, compressed,
                                                                  at_header, pick):
    """Cut anywhere, and (for a plain tar) exactly before a member's header, where a cut looks
    like a clean end to a lenient reader."""
    archive, files = shared
    data = gzip.decompress(archive.read_bytes())
    headers = [m.offset for m in tarfile.open(fileobj=io.BytesIO(data)).getmembers()]
    length = headers[pick % len(headers)] if at_header and not compressed else int(len(data) * where)
    if compressed:
        data = archive.read_bytes()
        length = int(len(data) * where)
    imports_exactly_or_not_at_all(data[:length], "cut.tar.gz" if compressed else "cut.tar", files, tmp_path_factory)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.floats(0, 1), xor=st.integers(1, 255))
def test_a_corrupted_byte_in_a_tar_gz_imports_exactly_or_is_refused(shared, tmp_path_factory, where, xor):
    """gzip's checksum covers every byte, so the whole stream is checked before anything lands."""
    archive, files = shared
    data = bytearray(archive.read_bytes())
    data[min(int(len(data) * where), len(data) - 1)] ^= xor
    imports_exactly_or_not_at_all(bytes(data), "flip.tar.gz", files, tmp_path_factory)


def test_the_installed_command_refuses_a_truncated_download_without_a_traceback(shared, tmp_path):
    archive, _ = shared
    cut = tmp_path / "download.tar.gz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    command = PROJECT_ROOT / ".venv" / "bin" / "resnet-runs"
    if not command.exists():
        pytest.skip("resnet-runs is not installed in .venv (make install)")
    result = subprocess.run([str(command), "import", str(cut), "--runs-dir", str(tmp_path / "runs")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: cannot import") and result.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_export_failures_are_one_error_line(tiny_run, tmp_path, capsys):
    runs_dir = str(tiny_run.parent)
    code = main(["export", tiny_run.name, "--runs-dir", runs_dir, "-o", str(tmp_path / "no" / "such" / "x.tar.gz")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: could not write") and err.count("\n") == 1
    code = main(["export", "../escape", "--runs-dir", runs_dir])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "no").exists()
