"""Opening and sharing runs never executes their content, and names cannot escape runs/."""

from __future__ import annotations

import io
import os
import pickle
import shutil
import tarfile
import tomllib
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine import runs
from engine.archive import ArchiveError, export_run, import_run
from engine.checkpoint import CheckpointError, load_resume_state, load_weights
from engine.model import create_model
from tests.conftest import PROJECT_ROOT


class _Payload:
    """Unpickling this runs os.system: the attack a shared .pth file can carry."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_disguised_as_a_checkpoint_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "final.safetensors"
    bad.write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(CheckpointError, match=r"final\.safetensors.*not a valid safetensors"):
        load_weights(create_model(10, 4), bad)
    assert not marker.exists()


def test_a_pickle_payload_in_the_resume_state_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "resume.pt"
    torch.save({"epoch": 1, "evil": _Payload(marker)}, bad)
    with pytest.raises(CheckpointError, match=r"resume\.pt was refused"):
        load_resume_state(bad)
    assert not marker.exists()


def test_weights_of_another_shape_are_refused_before_loading(tmp_path):
    from safetensors.torch import save_file

    path = tmp_path / "w.safetensors"
    save_file(create_model(10, 8).state_dict(), str(path))
    model = create_model(10, 4)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="does not fit this model: wrong shapes"):
        load_weights(model, path)
    assert all((before[k] == v).all() for k, v in model.state_dict().items())


def test_prediction_dumps_with_objects_are_not_unpickled(tmp_path, tiny_run):
    copy = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, copy)
    marker = tmp_path / "pwned"
    arrays = {k: np.zeros(3) for k in runs.PREDICTION_KEYS}
    arrays["label"] = np.array([_Payload(marker)] * 3, dtype=object)
    np.savez(copy / "predictions" / "final.npz", **arrays)
    run = runs.load_run(copy)
    assert run.predictions("final") is None
    assert any("predictions/final.npz" in w for w in run.warnings)
    assert not marker.exists()


@pytest.mark.parametrize("name", ["..", "../etc", "/etc/passwd", "a\x00b", "x" * 300, "", "a/../../b", "-rf"])
def test_run_names_that_would_escape_are_refused(tmp_path, name):
    (tmp_path / "runs").mkdir()
    with pytest.raises(runs.RunFormatError):
        runs.resolve_run_dir(tmp_path / "runs", name)


def test_a_folder_whose_name_ends_in_a_newline_is_not_a_run_id(tmp_path):
    root = tmp_path / "runs"
    (root / "evil\n").mkdir(parents=True)
    (root / "evil\n" / runs.RUN_JSON).write_text("{}")
    with pytest.raises(runs.RunFormatError, match="is not a run id"):
        runs.resolve_run_dir(root, "evil\n")


def test_a_symlink_out_of_the_runs_folder_is_refused(tmp_path, tiny_run):
    root = tmp_path / "runs"
    root.mkdir()
    (root / "sneaky").symlink_to(tiny_run)
    with pytest.raises(runs.RunFormatError, match="outside the runs folder"):
        runs.resolve_run_dir(root, "sneaky")


def test_overlong_or_nul_run_names_are_refused_by_the_config():
    from engine.config import ConfigError, build_config

    for name in ("n" * 65, "a\x00b"):
        with pytest.raises(ConfigError, match="name must be at most 64"):
            build_config({"name": name})


def test_export_then_import_round_trips_and_never_overwrites(tmp_path, tiny_run):
    light = export_run(tiny_run, tmp_path / "light.tar.gz")
    full = export_run(tiny_run, tmp_path / "full.tar.gz", with_checkpoints=True)
    target = tmp_path / "imported"
    first = import_run(light, target)
    assert first.name == tiny_run.name
    run = runs.load_run(first)
    assert run.epochs == runs.load_run(tiny_run).epochs and run.warnings == []
    assert run.checkpoint_tags() == [] and run.prediction_tags() == ["final", "best"]
    second = import_run(full, target)
    assert second != first and second.name.endswith("seed1")
    assert runs.load_run(second).checkpoint_tags() == ["final", "best"]
    assert len(list(target.iterdir())) == 2


def _tar_with(tmp_path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    path = tmp_path / "evil.tar"
    with tarfile.open(path, "w") as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name: str, data: bytes = b"{}") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    return info, data


def _link(name: str, target: str, kind=tarfile.SYMTYPE) -> tuple[tarfile.TarInfo, None]:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


@pytest.mark.parametrize("members, fragment", [
    ([_file("run1/run.json"), _file("run1/../../escape.txt")], "points outside"),
    ([_file("/tmp/abs/run.json")], "points outside"),
    ([_file("run1/run.json"), _link("run1/link", "/etc/passwd")], "link or device"),
    ([_file("run1/run.json"), _link("run1/hard", "run1/run.json", tarfile.LNKTYPE)], "link or device"),
    ([_file("run1/run.json"), _file("run2/run.json")], "exactly one run folder"),
    ([_file("run1/notes.txt")], "not a run"),
])
def test_unsafe_archives_are_refused_and_nothing_is_written(tmp_path, members, fragment):
    archive = _tar_with(tmp_path, members)
    target = tmp_path / "runs"
    with pytest.raises(ArchiveError, match=fragment):
        import_run(archive, target)
    assert not target.exists() or list(target.iterdir()) == []
    assert not (tmp_path / "escape.txt").exists()


def test_archives_with_too_many_members_are_refused(tmp_path, monkeypatch):
    import engine.archive

    monkeypatch.setattr(engine.archive, "MAX_MEMBERS", 3)
    archive = _tar_with(tmp_path, [_file("run1/run.json")] + [_file(f"run1/f{i}") for i in range(4)])
    with pytest.raises(ArchiveError, match="more than the 3 "):
        import_run(archive, tmp_path / "runs")


def test_the_dashboard_listens_on_loopback_with_xsrf_on_by_default():
    config = tomllib.loads((PROJECT_ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "127.0.0.1"
    assert config["server"].get("enableXsrfProtection", True) is True
    assert config["server"].get("enableCORS", True) is True


RUN_FILES = [runs.RUN_JSON, runs.CONFIG_JSON, runs.DATASET_JSON, runs.ENVIRONMENT_JSON, runs.LR_FINDER_JSON,
             runs.MODEL_SUMMARY_JSON, runs.EPOCHS_JSONL, runs.STEPS_JSONL, runs.TEST_IMAGES_NPY,
             runs.TRAIN_SAMPLES_NPZ, "predictions/final.npz", "predictions/best.npz"]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(RUN_FILES), damage=st.sampled_from(["truncate", "empty", "garbage", "flip", "delete"]),
       where=st.floats(0, 1), noise=st.binary(min_size=1, max_size=64))
def test_damaged_files_give_warnings_never_exceptions(tmp_path_factory, tiny_run, runs_dir, name, damage,
                                                      where, noise):
    root = tmp_path_factory.mktemp("damaged")
    copy = root / tiny_run.name
    shutil.copytree(tiny_run, copy)
    target = copy / name
    data = target.read_bytes()
    cut = int(len(data) * where)
    if damage == "truncate":
        target.write_bytes(data[:cut])
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "garbage":
        target.write_bytes(noise * 10)
    elif damage == "flip":
        flipped = bytearray(data)
        flipped[min(cut, len(data) - 1)] ^= 0xFF
        target.write_bytes(bytes(flipped))
    else:
        target.unlink()
    shutil.copytree(next(p for p in runs_dir.iterdir() if p.name.endswith("seed2")), root / "good-seed2")

    listed = runs.list_runs(root)
    assert {r.id for r in listed} == {copy.name, "good-seed2"}
    good = next(r for r in listed if r.id == "good-seed2")
    assert good.warnings == [] and good.predictions("final") is not None
    run = runs.load_run(copy)
    broken = damage in ("empty", "garbage") or (damage == "truncate" and data[:cut].rstrip() != data.rstrip())
    if broken and not name.endswith(".jsonl"):  # a cut JSON-lines file is a live run's normal state
        # seen at load, before any page opens the file: the runs table shows the run as damaged
        assert name in run.summary()["damaged"], (name, damage, run.warnings)
    run.steps()
    for tag in ("final", "best"):
        dump = run.predictions(tag)
        assert dump is None or len(dump["label"]) == len(dump["probs"])
    images = run.test_images()
    assert images is None or images.dtype == np.uint8
    run.train_samples()
    if name == runs.RUN_JSON and damage == "delete":
        assert run.status == "unknown" and name in run.damaged
