"""Sharing runs: `export` packs one run folder into a .tar.gz; `import` unpacks one safely.

An archive from someone else is untrusted: every member is checked before anything is written
(a plain file or folder, inside one run folder, no links or devices, bounded size and count),
and the run lands under a fresh id when its id is taken."""

from __future__ import annotations

import shutil
import tarfile
import tempfile
from pathlib import Path, PurePosixPath

from engine import runs

MAX_MEMBERS = 10_000
MAX_TOTAL_BYTES = 8 * 1024**3


class ArchiveError(ValueError):
    """An archive that cannot be imported; nothing was written."""


def export_run(run_dir: Path, out: Path | None = None, with_checkpoints: bool = False) -> Path:
    run_dir = Path(run_dir)
    out = Path(out) if out else Path(f"{run_dir.name}.tar.gz")
    skipped = {runs.LOCK_FILE}

    def keep(info: tarfile.TarInfo) -> tarfile.TarInfo | None:
        parts = PurePosixPath(info.name).parts
        name = parts[-1]
        if name in skipped or ".tmp-" in name:
            return None
        if not with_checkpoints and len(parts) > 1 and parts[1] == runs.CHECKPOINTS_DIR and info.isfile():
            return None
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        return info

    def write(tmp: Path) -> None:
        with tarfile.open(tmp, "w:gz") as tar:
            tar.add(run_dir, arcname=run_dir.name, filter=keep)

    runs.atomic_save(out, write)
    return out


def _check_members(tar: tarfile.TarFile) -> str:
    """The one top-level folder name, after refusing anything unsafe."""
    members = tar.getmembers()
    if len(members) > MAX_MEMBERS:
        raise ArchiveError(f"archive holds {len(members)} entries, more than the {MAX_MEMBERS} allowed")
    total = sum(m.size for m in members)
    if total > MAX_TOTAL_BYTES:
        raise ArchiveError(f"archive unpacks to {total} bytes, more than the {MAX_TOTAL_BYTES} allowed")
    tops = set()
    for member in members:
        path = PurePosixPath(member.name)
        if path.is_absolute() or ".." in path.parts or "\x00" in member.name:
            raise ArchiveError(f"archive member {member.name!r} points outside its folder; refused")
        if not (member.isfile() or member.isdir()):
            raise ArchiveError(f"archive member {member.name!r} is a link or device; refused")
        tops.add(path.parts[0])
    if len(tops) != 1:
        raise ArchiveError(f"archive must hold exactly one run folder, found {sorted(tops)[:5]}")
    top = tops.pop()
    if not runs.RUN_ID_PATTERN.match(top):
        raise ArchiveError(f"archive folder {top!r} is not a valid run id")
    if not any(PurePosixPath(m.name) == PurePosixPath(top, runs.RUN_JSON) for m in members):
        raise ArchiveError(f"archive folder {top!r} has no {runs.RUN_JSON}: it is not a run")
    return top


def import_run(archive: Path, runs_dir: Path) -> Path:
    """Unpack a run archive into `runs_dir`; returns the new run folder."""
    archive, runs_dir = Path(archive), Path(runs_dir)
    if not archive.is_file():
        raise ArchiveError(f"{archive} does not exist")
    try:
        tar = tarfile.open(archive, "r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ArchiveError(f"{archive} is not a readable tar archive ({exc})") from None
    with tar:
        top = _check_members(tar)
        runs_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=runs_dir, prefix=".import-") as staging:
            tar.extractall(staging, filter="data")
            target_id = top if not (runs_dir / top).exists() else runs.new_run_id(top.split("-", 3)[-1])
            shutil.move(str(Path(staging) / top), runs_dir / target_id)
    return runs_dir / target_id
