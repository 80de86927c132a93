"""Safe file I/O: appends keep every completed row, and readers refuse oversized files unread."""

from __future__ import annotations

import io
import json
import os
import tracemalloc
import zipfile

import numpy as np
import pytest

from engine import safe_io
from engine.safe_io import MiB, Unreadable, is_number


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_an_interrupt_during_fsync_keeps_the_row_that_was_written(tmp_path, monkeypatch):
    path = tmp_path / "epochs.jsonl"
    safe_io.append_jsonl(path, [{"epoch": 1}])

    def interrupted(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        safe_io.append_jsonl(path, [{"epoch": 2}])
    monkeypatch.undo()
    assert lines(path) == [{"epoch": 1}, {"epoch": 2}]


def test_an_interrupt_part_way_through_a_write_rolls_back_the_partial_line(tmp_path, monkeypatch):
    path = tmp_path / "steps.jsonl"
    safe_io.append_jsonl(path, [{"step": 1}])
    real_write = os.write
    calls = []

    def half_then_interrupt(fd, data):
        calls.append(len(data))
        if len(calls) > 1:
            raise KeyboardInterrupt
        return real_write(fd, bytes(data[: len(data) // 2]))

    monkeypatch.setattr(os, "write", half_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        safe_io.append_jsonl(path, [{"step": 2}, {"step": 3}])
    monkeypatch.undo()
    assert lines(path) == [{"step": 1}]
    safe_io.append_jsonl(path, [{"step": 2}])
    assert lines(path) == [{"step": 1}, {"step": 2}]


def test_a_full_disk_at_fsync_rolls_the_append_back(tmp_path, monkeypatch):
    path = tmp_path / "epochs.jsonl"
    safe_io.append_jsonl(path, [{"epoch": 1}])

    def no_space(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        safe_io.append_jsonl(path, [{"epoch": 2}])
    monkeypatch.undo()
    assert lines(path) == [{"epoch": 1}]


def test_files_over_their_cap_are_refused_unread(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b"[" + b"0," * 1000 + b"0]")
    assert len(safe_io.read_json(path, 4096)) == 1001
    with pytest.raises(Unreadable, match="over the 1.0 KiB cap"):
        safe_io.read_json(path, 1024)


def test_non_strict_json_constants_are_refused(tmp_path):
    path = tmp_path / "nan.json"
    path.write_text('{"a": NaN}')
    with pytest.raises(Unreadable, match="not valid JSON"):
        safe_io.read_json(path, MiB)


def test_what_is_written_is_strict_json_nan_and_infinities_as_null_numpy_numbers_as_numbers(tmp_path):
    path = tmp_path / "written.json"
    safe_io.atomic_write_json(path, {"loss": float("nan"), "curve": [0.5, float("inf"), -float("inf")],
                                     "acc": np.float32(0.25), "epochs": np.int64(3), 7: "key made text"})
    assert safe_io.read_json(path, MiB) == {"loss": None, "curve": [0.5, None, None], "acc": 0.25, "epochs": 3,
                                            "7": "key made text"}
    safe_io.atomic_write_json(path, {"plain": [1, 2.5, "x", None, True]})  # nothing to convert: as given
    assert safe_io.read_json(path, MiB) == {"plain": [1, 2.5, "x", None, True]}


def _zeros_bomb(path, rows: int, columns: int = 10) -> None:
    """An .npz whose float32 `probs` member inflates from a few hundred KiB to rows*columns*4
    bytes: a header that tells the truth and deflated zeros, written in chunks."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": (rows, columns)})
    chunk = bytes(MiB)
    remaining = rows * columns * 4
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("probs.npy", "w", force_zip64=True) as member:
            member.write(header.getvalue())
            while remaining:
                member.write(chunk[: min(remaining, len(chunk))])
                remaining -= min(remaining, len(chunk))


def test_a_compressed_member_that_inflates_past_the_cap_is_refused_without_inflating(tmp_path):
    path = tmp_path / "final.npz"
    _zeros_bomb(path, rows=300 * MiB // 40)  # 300 MiB of probs from a small file
    assert path.stat().st_size < 2 * MiB
    tracemalloc.start()
    try:
        with pytest.raises(Unreadable, match="300.0 MiB, over the 256.0 MiB cap"):
            safe_io.load_npz(path, 256 * MiB, ["probs"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * MiB, f"{peak} bytes allocated while refusing"


def test_an_npy_header_claiming_more_than_its_member_holds_is_refused(tmp_path):
    path = tmp_path / "liar.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (10**6, 10**3)})
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("probs.npy", header.getvalue() + bytes(80))
    tracemalloc.start()
    try:
        with pytest.raises(Unreadable, match="declares a shape its size does not hold"):
            safe_io.load_npz(path, 16 * 1024**3, ["probs"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < MiB


def test_an_npy_file_is_checked_against_its_size_and_cap_before_mapping(tmp_path):
    path = tmp_path / "images.npy"
    np.save(path, np.zeros((4, 32, 32, 3), np.uint8))
    assert safe_io.load_npy_mapped(path, MiB).shape == (4, 32, 32, 3)
    with pytest.raises(Unreadable, match="over the"):
        safe_io.load_npy_mapped(path, 1024)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(Unreadable, match="declares 12.0 KiB of data"):
        safe_io.load_npy_mapped(path, MiB)


def test_bounded_npz_reading_returns_exactly_what_was_saved(tmp_path):
    arrays = {"a": np.arange(12, dtype=">i4").reshape(3, 4), "b": np.asfortranarray(np.random.rand(3, 5)),
              "c": np.zeros((0, 10), np.float32), "d": np.array(3.5)}
    np.savez(tmp_path / "x.npz", **arrays)
    loaded = safe_io.load_npz(tmp_path / "x.npz", MiB, arrays)
    for key, value in arrays.items():
        assert loaded[key].dtype == value.dtype and np.array_equal(loaded[key], value)


def test_object_arrays_are_refused_before_unpickling(tmp_path):
    np.savez(tmp_path / "x.npz", a=np.array([{"x": 1}], dtype=object))
    with pytest.raises(Unreadable, match="not plain numbers"):
        safe_io.load_npz(tmp_path / "x.npz", MiB, ["a"])


def test_one_rule_for_what_is_a_number_in_a_run_file():
    """Every reader (the query language, the sort, the listing's alignment, the sweep chart) asks
    this: ints (however large) and finite floats are numbers; bools, NaN, infinities, text, null
    and numpy's integers (never in a file) are not."""
    for number in (0, -3, 10**400, 0.5, -1e308, np.float64(2.5)):
        assert is_number(number), number
    for other in (True, False, float("nan"), float("inf"), -float("inf"), "1", None, [1], np.int64(1)):
        assert not is_number(other), other
