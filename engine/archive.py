"""Sharing runs: `export` packs one run folder into a .tar.gz; `import` unpacks run folders safely.

An archive from someone else is untrusted, and a download can be cut short. Before anything is
written, every header is read and the whole stream is checked to its end (so a truncated,
corrupted or lying archive is refused, not half imported), and every member must be a plain file
or folder inside a run folder whose name is a run id. The archive may hold one run (what `export`
writes) or several (`tar -C runs -czf all.tar.gz .`, whose `./` prefixes are fine); top-level
plain files such as a README are skipped and named. Runs are unpacked into a hidden staging
folder and renamed into place all together; a run whose id is taken lands under a fresh id,
which its run.json then holds too. The run's lock, temporary files and summary.json (derived, so
rebuilt by the reader where the run lands) are left out both ways."""

from __future__ import annotations

import lzma
import os
import tarfile
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from engine import commands, runs, safe_io
from engine.run_reader import JSON_CAP

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 8 * 1024**3
MAX_TRAILING_BYTES = 1024**2  # tar pads its end with zeros up to a 10 KiB record; more is not tar
READ_ERRORS = (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError)


class ArchiveError(ValueError):
    """An archive that cannot be imported or written; nothing was written."""


@dataclass
class Imported:
    """What an import did: the new run folders, the top-level entries it left out, and for each
    run given a fresh id (its own was taken) that id -> the id it had in the archive."""

    runs: list[Path]
    skipped: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)


def export_run(run_dir: Path, out: Path | None = None, with_checkpoints: bool = False,
               overwrite: bool = False) -> Path:
    """Pack `run_dir` into `out` (default: RUN_ID.tar.gz here); an existing file is replaced only
    when `overwrite` says so, and then atomically."""
    run_dir = Path(run_dir)
    out = Path(out) if out else Path(f"{run_dir.name}.tar.gz")
    if out.is_dir():
        raise ArchiveError(f"{runs.printable(out)} is a folder; pass a file name such as {run_dir.name}.tar.gz")
    if os.path.lexists(out) and not overwrite:
        raise ArchiveError(f"{runs.printable(out)} exists; pass --force to replace it, or -o another file name")

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = PurePosixPath(info.name).parts
        if _left_out(parts):
            return None
        if not with_checkpoints and len(parts) > 1 and parts[1] == runs.CHECKPOINTS_DIR and info.isfile():
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(run_dir, arcname=run_dir.name, filter=keep)

    try:
        safe_io.atomic_save(out, write)
    except OSError as exc:
        raise ArchiveError(f"could not write {runs.printable(out)}: {exc.strerror or exc}; "
                           "check that its folder exists and is writable") from None
    return out


def _left_out(parts: tuple[str, ...]) -> bool:
    """Never shared, in either direction: the writer's lock, half-written temporary files, and the
    run's summary.json, which is derived from the run's files: the reader rebuilds it where the run
    lands, so a summary written elsewhere is never trusted."""
    name = parts[-1]
    return name == runs.LOCK_FILE or safe_io.is_temporary(name) or parts[1:] == (runs.SUMMARY_JSON,)


def _shown(name: str) -> str:
    return repr(name if len(name) <= 100 else name[:100] + "...")


class _StrictMember(tarfile.TarInfo):
    """tarfile ends an archive quietly at a header that is cut short or damaged; refuse instead,
    since that is what an interrupted download or a member that lies about its size looks like."""

    @classmethod
    def fromtarfile(cls, tar: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(tar)
        except tarfile.EOFHeaderError:
            raise
        except tarfile.HeaderError as exc:
            if tar.offset == 0:
                raise  # not a tar at all: tarfile says so
            raise ArchiveError(f"it is damaged or cut short at byte {tar.offset} ({exc}); "
                               "an interrupted download? fetch it again") from None


def _read_members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """Every header, then the rest of the stream (zeros only), so compressed checksums are verified."""
    members: list[tarfile.TarInfo] = []
    while (member := tar.next()) is not None:
        members.append(member)
        if len(members) > MAX_MEMBERS:
            raise ArchiveError(f"it holds more than the {MAX_MEMBERS} entries allowed")
    total = sum(m.size for m in members)
    if total > MAX_TOTAL_BYTES:
        raise ArchiveError(f"it unpacks to {total} bytes, more than the {MAX_TOTAL_BYTES} allowed")
    trailing = 0
    while chunk := tar.fileobj.read(64 * 1024):
        trailing += len(chunk)
        if trailing > MAX_TRAILING_BYTES or chunk.count(0) != len(chunk):
            raise ArchiveError("it has data after its end (a damaged header, or something appended)")
    return members


def _kind(member: tarfile.TarInfo) -> str:
    if member.issym():
        return "symbolic link"
    if member.islnk():
        return "hard link"
    if member.isfifo():
        return "fifo"
    return "device" if member.isdev() else "special entry"


def _select(members: list[tarfile.TarInfo]) -> tuple[list[tarfile.TarInfo], list[str], list[str]]:
    """The members to unpack, the run folders they form, and the top-level entries skipped;
    raises ArchiveError for anything unsafe or ambiguous."""
    kinds: dict[tuple[str, ...], bool] = {}  # path parts -> is a folder
    chosen: list[tarfile.TarInfo] = []
    skipped: set[str] = set()
    for member in members:
        name = member.name
        if not name.isprintable():
            raise ArchiveError(f"member {_shown(name)} has control characters in its name")
        path = PurePosixPath(name)
        if path.is_absolute() or ".." in path.parts:
            raise ArchiveError(f"member {_shown(name)} points outside its folder")
        if not (member.isfile() or member.isdir()):
            raise ArchiveError(f"member {_shown(name)} is a {_kind(member)}: only plain files and folders "
                               "are imported (no link or device)")
        parts = path.parts  # `./run/x` -> ('run', 'x'); `.` -> ()
        if not parts:
            continue
        if parts in kinds:
            twice = "is both a file and a folder" if kinds[parts] != member.isdir() else "appears twice"
            raise ArchiveError(f"member {_shown(name)} {twice}")
        kinds[parts] = member.isdir()
        top = parts[0]
        if top.startswith(".") or (len(parts) == 1 and member.isfile()):
            if top == runs.RUN_JSON:
                raise ArchiveError("it holds a run's files without their folder; pack the folder instead: "
                                   f"{commands.command('export', 'RUN_ID')}")
            skipped.add(top)
            continue
        if not _left_out(parts):
            chosen.append(member)
    for parts in kinds:
        for depth in range(1, len(parts)):
            if kinds.get(parts[:depth]) is False:
                raise ArchiveError(f"{_shown('/'.join(parts[:depth]))} is both a file and a folder")
    tops = sorted({PurePosixPath(m.name).parts[0] for m in chosen} - skipped)
    if not tops:
        raise ArchiveError("it holds no run folder")
    for top in tops:
        if not runs.RUN_ID_PATTERN.fullmatch(top):
            raise ArchiveError(f"folder {_shown(top)} is not a valid run id")
        if kinds.get((top, runs.RUN_JSON)) is not False:
            raise ArchiveError(f"folder {_shown(top)} has no {runs.RUN_JSON}: it is not a run")
    return chosen, tops, sorted(skipped)


def _record_new_id(staged: Path, run_id: str) -> None:
    """A copy under a fresh id says so in its run.json (atomically, before it is moved into
    place); a run.json that is no JSON object is left for the reader to report as damaged."""
    path = staged / runs.RUN_JSON
    try:
        meta = safe_io.read_json(path, JSON_CAP)
    except safe_io.Unreadable:
        return
    if isinstance(meta, dict):
        safe_io.atomic_write_json(path, {**meta, "id": run_id})


def _fresh_id(run_id: str, runs_dir: Path, taken: set[str]) -> str:
    """The run's own id, or a new one with the same name part when that id is already taken."""
    fresh = run_id
    while os.path.lexists(runs_dir / fresh) or fresh in taken:  # a dangling link takes its name too
        fresh = runs.new_run_id(runs.run_id_suffix(run_id))
    return fresh


def _unpack(archive: Path, runs_dir: Path, one_run: bool) -> Imported:
    if not archive.exists():
        raise ArchiveError("it does not exist")
    if not archive.is_file():
        raise ArchiveError("it is not a file")
    if runs_dir.exists() and not runs_dir.is_dir():
        raise ArchiveError(f"the runs folder {runs.printable(runs_dir)} is a file")
    try:
        tar = tarfile.open(archive, "r:*", tarinfo=_StrictMember)
    except READ_ERRORS:
        raise ArchiveError("it is not a readable tar archive (.tar, .tar.gz, .tar.bz2 or .tar.xz), "
                           "or it is cut short") from None
    try:
        with tar:
            chosen, tops, skipped = _select(_read_members(tar))
            if one_run and len(tops) != 1:
                raise ArchiveError(f"it must hold exactly one run folder, found {tops[:5]}")
            return _place(tar, chosen, tops, runs_dir, skipped)
    except READ_ERRORS as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc) or type(exc).__name__
        raise ArchiveError(f"it is damaged or could not be unpacked ({runs.printable(reason)})") from None


def _place(tar: tarfile.TarFile, chosen: list[tarfile.TarInfo], tops: list[str], runs_dir: Path,
           skipped: list[str]) -> Imported:
    """Unpack into a hidden staging folder, then rename each run into place; undo all on failure."""
    created = [p for p in (runs_dir, *runs_dir.parents) if not p.exists()]
    runs_dir.mkdir(parents=True, exist_ok=True)
    moved: list[tuple[Path, Path]] = []
    renamed: dict[str, str] = {}
    try:
        with tempfile.TemporaryDirectory(dir=runs_dir, prefix=".import-") as staging:
            try:
                tar.extractall(staging, members=chosen, filter="data")
                taken: set[str] = set()
                for top in tops:
                    staged = Path(staging, top)
                    target = runs_dir / _fresh_id(top, runs_dir, taken)
                    taken.add(target.name)
                    if target.name != top:
                        _record_new_id(staged, target.name)
                        renamed[target.name] = top
                    try:
                        staged.rename(target)
                    except OSError as exc:
                        raise ArchiveError(f"moving run {top} into {runs.printable(runs_dir)} failed "
                                           f"({exc.strerror or exc})") from None
                    moved.append((target, staged))
            except BaseException:
                for target, staged in reversed(moved):
                    target.rename(staged)  # back into staging, which is then removed
                raise
    except BaseException:
        for path in created:
            path.rmdir()
        raise
    return Imported([target for target, _ in moved], skipped, renamed)


def _with_archive(archive: Path, runs_dir: Path, one_run: bool) -> Imported:
    archive, runs_dir = Path(archive), Path(runs_dir)
    try:
        return _unpack(archive, runs_dir, one_run)
    except ArchiveError as exc:
        raise ArchiveError(f"cannot import {runs.printable(archive)}: {exc}; nothing was written") from None


def import_runs(archive: Path, runs_dir: Path) -> Imported:
    """Unpack every run folder of `archive` into `runs_dir`, or nothing at all."""
    return _with_archive(archive, runs_dir, one_run=False)


def import_run(archive: Path, runs_dir: Path) -> Path:
    """Unpack an archive of exactly one run (what `export_run` writes); returns its new folder."""
    return _with_archive(archive, runs_dir, one_run=True).runs[0]
