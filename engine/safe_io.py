"""Safe file I/O that knows nothing about runs: atomic writes, whole-line appends, and readers
that refuse anything larger than a fixed cap *before* allocating or inflating it.

Writers never leave a half-written file under its final name. Readers raise `Unreadable` with
a short reason; the caller (engine/runs.py) names the file and turns it into a warning.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import secrets
import zipfile
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

MiB = 1024**2
TEMP_MARKER = ".tmp-"  # a file being written is `.NAME.tmp-PID-RANDOM[.SUFFIX]` beside its final name


class Unreadable(ValueError):
    """A file that cannot be read safely; the message says why (without the file's name)."""


# ---------------------------------------------------------------- writing


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary sibling, fsync, then rename: readers see the old or the new file."""
    atomic_save(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (to_strict_json(obj, indent=2) + "\n").encode())


def atomic_save(path: Path, writer: Callable[[Path], Any]) -> None:
    """Let `writer(tmp_path)` produce the file, fsync it, then rename it into place."""
    path = Path(path)
    # unique per write, not only per process: two threads may write one file at once
    tmp = path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}{path.suffix}")
    try:
        writer(tmp)
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def is_temporary(name: str) -> bool:
    """True for the name of an atomic write's temporary file (one a killed writer may leave)."""
    return name.startswith(".") and TEMP_MARKER in name


@contextlib.contextmanager
def locked_folder(path: Path) -> Iterator[None]:
    """Hold an exclusive flock on a folder itself (no lock file is created): serialises the
    read-modify-write of small files in it between processes."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def append_jsonl(path: Path, rows: Iterable[dict]) -> None:
    """Append whole lines in one unbuffered write, so a crash can only cut the last line.

    A failed write (OSError: a full disk surfaces at write or at fsync) is rolled back, so the
    next append starts on a clean line. Any other interruption (Ctrl-C) rolls back only bytes
    of an incomplete write: once every byte is in the file, the rows stay."""
    data = "".join(to_strict_json(row) + "\n" for row in rows).encode()
    if not data:
        return
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        size = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except OSError:
            os.ftruncate(fd, size)
            raise
        except BaseException:
            if os.fstat(fd).st_size != size + len(data):
                os.ftruncate(fd, size)
            raise
    finally:
        os.close(fd)


def _strict(value: Any) -> Any:
    """NaN and infinities have no strict-JSON form: store them as null (drawn as gaps)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _strict(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_strict(v) for v in value]
    if isinstance(value, np.generic):
        return _strict(value.item())
    return value


def is_number(value: Any) -> bool:
    """A number as run files hold one, the one rule every reader of them uses: an int or a finite
    float, not a bool (JSON's true is no number). NaN and infinities are not numbers here: strict
    JSON stores them as null, and a sum that overflows to one is no value either."""
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and math.isfinite(value))


def to_strict_json(obj: Any, indent: int | None = None) -> str:
    try:  # the common case: nothing to convert, and no copy of a large document made to find that out
        return json.dumps(obj, indent=indent, allow_nan=False)
    except (ValueError, TypeError):  # a NaN or infinity, or a numpy number
        return json.dumps(_strict(obj), indent=indent, allow_nan=False)


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def file_stamp(path: Path) -> tuple[int, int] | None:
    """(mtime in ns, size) of a file for cache keys, None when absent; a folder's mtime misses
    appends to the files inside it, so stamp the file itself."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size)


def file_identity(path: Path | str) -> tuple[int, int, int] | None:
    """(mtime in ns, size, inode) of a file, None when absent: the stamp plus the inode, which
    every atomic replacement changes even within one tick of the clock."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


# ---------------------------------------------------------------- bounded reading


def human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1024**3), ("MiB", MiB), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _over(size: int, cap: int) -> Unreadable:
    return Unreadable(f"is {human_bytes(size)}, over the {human_bytes(cap)} cap for this file")


def read_bytes(path: Path, cap: int) -> bytes:
    """The whole file, refused unread when it is larger than `cap` (even if it grows meanwhile)."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            if size > cap:
                raise _over(size, cap)
            data = handle.read(cap + 1)
    except OSError as exc:
        raise Unreadable(f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    if len(data) > cap:
        raise _over(len(data), cap)
    return data


def read_json(path: Path, cap: int) -> Any:
    """Strict JSON (no NaN / Infinity literals) from a file of at most `cap` bytes."""
    data = read_bytes(path, cap)
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Unreadable(f"is not valid JSON ({exc.__class__.__name__})") from None


def _no_constants(name: str) -> None:
    raise ValueError(f"{name} is not strict JSON")


def parse_jsonl(data: bytes) -> tuple[list[Any], int, bool]:
    """(parsed whole lines, count of unparseable lines, whether an unfinished last line was
    dropped). A cut last line is normal for a live or killed writer."""
    lines = data.split(b"\n")
    tail = lines.pop()  # after the final newline: empty, or a line still being written
    rows, bad = [], 0
    for line in lines:
        try:
            rows.append(json.loads(line.decode("utf-8"), parse_constant=_no_constants))
        except (UnicodeDecodeError, ValueError, RecursionError):
            bad += 1
    return rows, bad, bool(tail.strip())


# .npy members: the header says dtype and shape; we check the size it implies against the cap
# and against the bytes actually present before allocating anything.


def _npy_header(handle: BinaryIO) -> tuple[tuple[int, ...], bool, np.dtype]:
    fmt = np.lib.format
    try:
        version = fmt.read_magic(handle)
        if version == (1, 0):
            shape, fortran, dtype = fmt.read_array_header_1_0(handle)
        elif version == (2, 0):
            shape, fortran, dtype = fmt.read_array_header_2_0(handle)
        else:
            raise ValueError(f"npy version {version}")
    except Exception as exc:  # numpy raises several kinds for a malformed header
        raise Unreadable(f"has no valid .npy header ({exc.__class__.__name__})") from None
    if dtype.hasobject or dtype.itemsize == 0 or dtype.fields is not None:
        raise Unreadable(f"holds dtype {dtype}, not plain numbers")
    if any(d < 0 for d in shape):
        raise Unreadable(f"declares the impossible shape {shape}")
    return tuple(int(d) for d in shape), bool(fortran), dtype


def _nbytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def npy_info(path: Path, cap: int) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) of a .npy file, checked against the cap and the file size."""
    try:
        with open(path, "rb") as handle:
            size = os.fstat(handle.fileno()).st_size
            shape, _, dtype = _npy_header(handle)
            offset = handle.tell()
    except OSError as exc:
        raise Unreadable(f"cannot be read ({exc.strerror or exc.__class__.__name__})") from None
    nbytes = _nbytes(shape, dtype)
    if nbytes > cap:
        raise _over(nbytes, cap)
    if offset + nbytes != size:
        raise Unreadable(f"declares {human_bytes(nbytes)} of data but holds {human_bytes(size - offset)}")
    return shape, dtype, offset


def load_npy_mapped(path: Path, cap: int) -> np.ndarray:
    """A read-only memory map of a .npy file whose declared size has been checked."""
    npy_info(path, cap)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except Exception as exc:
        raise Unreadable(f"cannot be mapped ({exc.__class__.__name__})") from None


def npz_headers(path: Path, cap: int) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """{member: (shape, dtype)} of an .npz, reading only the zip directory and each .npy header.

    Refuses when the members' declared uncompressed sizes add up to more than `cap`, or a
    header's shape does not match its member's size, so nothing large is ever inflated."""
    try:
        size = os.path.getsize(path)
        if size > cap:  # before parsing: a huge central directory costs memory too
            raise _over(size, cap)
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
            total = sum(info.file_size for info in infos)
            if total > cap:
                raise _over(total, cap)
            headers = {}
            for info in infos:
                name = info.filename.removesuffix(".npy")
                with archive.open(info) as member:
                    shape, _, dtype = _npy_header(member)
                    offset = member.tell()
                if offset + _nbytes(shape, dtype) != info.file_size:
                    raise Unreadable(f"member {name!r} declares a shape its size does not hold")
                headers[name] = (shape, dtype)
            return headers
    except Unreadable:
        raise
    except Exception as exc:  # zipfile, zlib and struct errors of a damaged archive all mean "damaged"
        raise Unreadable(f"is not a valid .npz archive ({exc.__class__.__name__})") from None


def load_npz(path: Path, cap: int, keys: Iterable[str], optional: Iterable[str] = ()) -> dict[str, np.ndarray]:
    """The named arrays of an .npz, each read into an array of exactly its checked size; of the
    `optional` ones, those the file holds (a format's later additions, which older files lack)."""
    headers = npz_headers(path, cap)
    keys = list(keys) + [key for key in optional if key in headers]
    missing = [k for k in keys if k not in headers]
    if missing:
        raise Unreadable(f"lacks the array(s) {missing}")
    out = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for key in keys:
                with archive.open(f"{key}.npy") as member:
                    shape, fortran, dtype = _npy_header(member)
                    flat = np.empty(math.prod(shape), dtype=dtype)
                    buffer = memoryview(flat.view(np.uint8))
                    filled = 0
                    while filled < len(buffer):
                        got = member.readinto(buffer[filled:])
                        if not got:
                            raise Unreadable(f"array {key!r} is shorter than its header says")
                        filled += got
                out[key] = flat.reshape(shape, order="F" if fortran else "C")
    except Unreadable:
        raise
    except Exception as exc:
        raise Unreadable(f"is not a valid .npz archive ({exc.__class__.__name__})") from None
    return out
