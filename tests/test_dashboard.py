"""Every dashboard page, driven with Streamlit's AppTest on real tiny runs (tests/conftest.py).

The pages' numbers are checked against counts computed here straight from the prediction dumps."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from dashboard import section_tabs
from engine import runs
from engine.safe_io import atomic_write_json

PROJECT_ROOT = Path(__file__).resolve().parent.parent
APP = str(PROJECT_ROOT / "dashboard" / "app.py")


def open_app(monkeypatch, runs_dir: Path, selected: list[str] | None = None, focus: str | None = None) -> AppTest:
    """The app on `runs_dir`, optionally with runs selected and one run in focus."""
    monkeypatch.setenv("RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    if selected is not None:
        at.sidebar.multiselect(key="runs").set_value(selected).run()
    if focus is not None:
        at.switch_page("app_pages/run.py").run()
        at.sidebar.selectbox(key="run").set_value(focus).run()
    return at


def go(at: AppTest, page: str, tab: str | None = None) -> AppTest:
    """Move to `page`; on a page drawn in tabs, to its `tab` (else the tab it shows first)."""
    if tab is not None:
        at.session_state[section_tabs.BY_PAGE[page].key] = tab  # as a click on the tab does
    at.switch_page(f"app_pages/{page}.py").run()
    assert not at.exception, (page, tab, [e.value for e in at.exception])
    return at


def figures(at: AppTest) -> dict[str, dict]:
    """The plotly figures the page drew, by title."""
    out = {}
    for node in at.get("plotly_chart"):
        spec = json.loads(node.proto.spec)
        title = spec["layout"].get("title", {})
        out[title.get("text", "") if isinstance(title, dict) else title] = spec
    return out


def titles(at: AppTest) -> list[str]:
    """The titles of the charts on the page, in order, without their subtitles."""
    return [title.split("<br>")[0] for title in figures(at)]


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def run_ids(runs_dir: Path) -> list[str]:
    return [run.id for run in runs.list_runs(runs_dir)]


def final_dump(run_dir: Path) -> dict:
    return runs.load_run(run_dir).predictions("final")


def test_runs_page_lists_every_run_with_its_figures(monkeypatch, runs_dir):
    at = open_app(monkeypatch, runs_dir)
    table = at.dataframe[0].value
    assert sorted(table["id"]) == sorted(run_ids(runs_dir))
    assert set(table["status"]) == {"completed"}
    assert (table["epochs_done"] == 2).all() and (table["epochs_planned"] == 2).all()
    for row in table.itertuples():
        run = runs.load_run(runs_dir / row.id)
        assert row.final_test_acc == pytest.approx(run.epochs[-1]["test_acc"] * 100)
    assert not at.warning


def test_the_selection_survives_page_switches_and_comes_from_the_url(monkeypatch, runs_dir):
    ids = sorted(run_ids(runs_dir))
    monkeypatch.setenv("RUNS_DIR", str(runs_dir))
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params["runs"] = [ids[1], "../../etc"]
    at.query_params["run"] = ids[1]
    at.run()
    assert at.sidebar.multiselect(key="runs").value == [ids[1]]  # unknown ids are dropped
    for page in ("run", "compare", "misclassified"):
        go(at, page)
        assert at.sidebar.multiselect(key="runs").value == [ids[1]]
        assert at.query_params["runs"] == ids[1]
    assert at.title[0].value.endswith(runs.load_run(runs_dir / ids[1]).name)


def test_run_page_shows_key_figures_and_charts(monkeypatch, runs_dir, tiny_run):
    at = open_app(monkeypatch, runs_dir, focus=tiny_run.name)
    run = runs.load_run(tiny_run)
    assert at.title[0].value == f"Run {run.name}"
    assert metric(at, "Parameters") == f"{run.model_summary['total_params']:,}"
    assert metric(at, "Final test accuracy") == f"{run.epochs[-1]['test_acc']:.2%}"
    # The first tab alone is drawn on a visit: accuracy, loss, LR schedule, LR finder.
    assert titles(at) == ["Accuracy per epoch", "Loss per epoch", "Learning-rate schedule", "LR range test"]
    go(at, "run", "Predictions")
    assert titles(at)[0] == "Accuracy per class" and titles(at)[1].startswith("Confusion matrix")
    go(at, "run", "Config and model")
    assert not titles(at) and len(at.image) == 16  # the training samples
    assert f"Total params: {run.model_summary['total_params']:,}" in at.text[0].value


def test_a_confusion_cell_opens_the_gallery_on_that_pair(monkeypatch, runs_dir, tiny_run):
    dump = final_dump(tiny_run)
    wrong = dump["label"] != dump["pred"]
    true, pred = next((int(t), int(p)) for t, p in zip(dump["label"][wrong], dump["pred"][wrong]))
    at = go(open_app(monkeypatch, runs_dir, focus=tiny_run.name), "run", "Predictions")
    # AppTest cannot click a plotly point (tests/test_browser.py clicks real cells); this is the picker.
    form_boxes = [box for box in at.selectbox if box.label in ("True class", "Predicted class")]
    form_boxes[0].set_value(true)
    form_boxes[1].set_value(pred)
    next(b for b in at.button if b.label == "Show these images").click().run()
    assert not at.exception
    expected = int(np.sum((dump["label"] == true) & (dump["pred"] == pred)))
    assert at.title[0].value.startswith("Misclassifications")
    assert int(metric(at, "Matching images")) == expected


def test_gallery_filters_match_counts_from_the_dump(monkeypatch, runs_dir, tiny_run):
    dump = final_dump(tiny_run)
    label, pred, conf = dump["label"], dump["pred"], dump["confidence"]
    wrong = label != pred
    at = go(open_app(monkeypatch, runs_dir, focus=tiny_run.name), "misclassified")
    assert int(metric(at, "Matching images")) == int(wrong.sum())
    assert len(at.image) == min(int(wrong.sum()), 24)

    common_true = int(np.bincount(label[wrong]).argmax())
    at.multiselect(key="mis_true").set_value([common_true]).run()
    assert int(metric(at, "Matching images")) == int(np.sum(wrong & (label == common_true)))

    at.multiselect(key="mis_true").set_value([]).run()
    common_pred = int(np.bincount(pred[wrong]).argmax())
    at.multiselect(key="mis_pred").set_value([common_pred]).run()
    at.slider(key="mis_conf").set_range(0.2, 0.5).run()
    expected = int(np.sum(wrong & (pred == common_pred) & (conf >= 0.2) & (conf <= 0.5)))
    assert int(metric(at, "Matching images")) == expected
    assert not at.exception


def test_grad_cam_gives_a_map_of_the_image_size_for_each_method(monkeypatch, runs_dir, tiny_run):
    at = go(open_app(monkeypatch, runs_dir, focus=tiny_run.name), "misclassified")
    at.checkbox[0].check().run()
    at.checkbox[1].check().run()
    picked = at.session_state["cam_indices"][tiny_run.name]
    assert len(picked) == 2
    go(at, "grad_cam")
    assert at.text_input[0].value == ", ".join(map(str, picked))
    assert not at.image  # nothing is computed before the button
    for method in ("GradCAM", "GradCAM++", "EigenCAM", "LayerCAM"):
        at.selectbox(key="cam_method").set_value(method)
        at.button(key="cam_go").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        assert len(at.image) == 4  # image and overlay, side by side


def test_compare_counts_equal_the_dumps_diff(monkeypatch, runs_dir):
    ids = sorted(run_ids(runs_dir))
    at = go(open_app(monkeypatch, runs_dir, selected=ids), "compare", "Predictions")
    a, b = final_dump(runs_dir / ids[0]), final_dump(runs_dir / ids[1])
    right_a, right_b = a["pred"] == a["label"], b["pred"] == b["label"]
    assert (a["index"] == b["index"]).all()
    assert int(metric(at, "A right, B wrong")) == int(np.sum(right_a & ~right_b))
    assert int(metric(at, "B right, A wrong")) == int(np.sum(right_b & ~right_a))
    go(at, "compare", "Key figures and config")
    figures = at.dataframe[0].value
    assert len(figures) == 2
    diff = at.dataframe[1].value
    assert "seed" in diff.index and "name" in diff.index and "width" not in diff.index
    assert "max LR used" in diff.index
    assert not at.error


def test_compare_refuses_runs_on_different_datasets(monkeypatch, runs_dir, tmp_path):
    root = tmp_path / "runs"
    ids = sorted(run_ids(runs_dir))
    for run_id in ids:
        shutil.copytree(runs_dir / run_id, root / run_id)
    dataset = runs.load_run(root / ids[1]).dataset
    atomic_write_json(root / ids[1] / runs.DATASET_JSON, {**dataset, "fingerprint": "0" * 16})
    at = go(open_app(monkeypatch, root, selected=ids), "compare")
    assert any("another dataset" in w.value for w in at.warning), [w.value for w in at.warning]
    assert not at.metric  # one run left on the first run's dataset: nothing to compare


def damaged_copy(runs_dir: Path, tiny_run: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """Copies of the fixture run, each damaged in one way, plus a folder that is no run at all."""
    root = tmp_path / "runs"
    damaged = {}
    for name in ("truncated", "garbage", "nocheckpoint"):
        target = root / f"{tiny_run.name}-{name}"
        shutil.copytree(tiny_run, target)
        damaged[name] = target.name
    epochs = root / damaged["truncated"] / runs.EPOCHS_JSONL
    epochs.write_bytes(epochs.read_bytes()[:-25])
    (root / damaged["garbage"] / "predictions" / "final.npz").write_bytes(b"not a zip file at all" * 50)
    shutil.rmtree(root / damaged["nocheckpoint"] / runs.CHECKPOINTS_DIR)
    junk = root / "junk-folder"
    junk.mkdir()
    (junk / runs.RUN_JSON).write_text("{ this is not json")
    return root, damaged


def test_damaged_runs_give_warnings_not_exceptions(monkeypatch, runs_dir, tiny_run, tmp_path):
    root, damaged = damaged_copy(runs_dir, tiny_run, tmp_path)
    at = open_app(monkeypatch, root)
    table = at.dataframe[0].value
    assert len(table) == 4
    garbage = table.set_index("id").loc[damaged["garbage"]]
    assert garbage["status"].endswith("(damaged)") and "predictions/final.npz" in garbage["damaged"]
    warned = " ".join(w.value for w in at.warning)
    assert damaged["truncated"] in warned and "junk-folder" in warned

    at.sidebar.multiselect(key="runs").set_value(list(damaged.values())).run()
    for name, run_id in damaged.items():
        at.switch_page("app_pages/run.py").run()
        at.sidebar.selectbox(key="run").set_value(run_id).run()
        for page in ("run", "misclassified", "grad_cam", "live"):
            go(at, page)
            if page == "grad_cam" and name != "nocheckpoint":
                at.text_input[0].set_value("0, 1").run()
                at.button(key="cam_go").click().run()
                assert not at.exception
        if name == "garbage":
            go(at, "misclassified")
            assert any("final.npz" in w.value for w in at.warning), [w.value for w in at.warning]
        if name == "nocheckpoint":
            go(at, "grad_cam")
            assert any("no checkpoint" in w.value for w in at.warning)
    go(at, "compare")


def test_live_page_follows_a_running_run(monkeypatch, tmp_path, tiny_run):
    root = tmp_path / "runs"
    writer = runs.RunWriter.create(root, "live", epochs_planned=4)
    try:
        source = runs.load_run(tiny_run)
        writer.write_dataset(source.dataset)
        writer.append_epoch(source.epochs[0])
        at = go(open_app(monkeypatch, root), "live")
        assert at.toggle(key="live_auto").value is True
        assert "epoch 1 of 4" in at.get("progress")[0].proto.text
        writer.append_epoch({**source.epochs[1], "epoch": 2})
        at.run()
        assert "epoch 2 of 4" in at.get("progress")[0].proto.text
        assert not at.exception
    finally:
        writer.finish("interrupted", "test over")
    at.run()
    assert any("No run is training now" in i.value for i in at.info)


def test_an_empty_runs_folder_says_what_to_do(monkeypatch, tmp_path):
    at = open_app(monkeypatch, tmp_path)
    assert "make demo" in at.info[0].value
    for page in ("run", "misclassified", "grad_cam", "compare", "live"):
        go(at, page)


def test_a_growing_steps_file_leaves_the_other_caches_alone(monkeypatch, tiny_run, tmp_path):
    """Each cache is keyed on its own file: a steps.jsonl append during a live run re-reads the
    steps only. Shown by swapping the dump for same-size garbage with its old mtime: still served
    from the cache after the append, re-read (and refused) once its own stamp changes."""
    import os

    from dashboard import data

    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / tiny_run.name)
    monkeypatch.setenv("RUNS_DIR", str(root))
    run_id = tiny_run.name
    dump, _ = data.predictions(run_id)
    steps_before = len(data.steps(run_id))
    dump_file = root / run_id / runs.PREDICTIONS_DIR / "final.npz"
    stat = dump_file.stat()
    dump_file.write_bytes(b"x" * stat.st_size)
    os.utime(dump_file, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with open(root / run_id / runs.STEPS_JSONL, "a") as steps:
        steps.write('{"step": 100000, "epoch": 2, "loss": 1.0, "lr": 0.001}\n')
    assert len(data.steps(run_id)) == steps_before + 1  # the grown file is read again
    cached, _ = data.predictions(run_id)
    assert cached is not None and (cached["pred"] == dump["pred"]).all()  # the dump was not
    os.utime(dump_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    reread, problems = data.predictions(run_id)
    assert reread is None and problems


def test_a_run_name_is_shown_as_plain_text_never_as_markdown(monkeypatch, tiny_run, tmp_path):
    root = tmp_path / "runs"
    target = root / tiny_run.name
    shutil.copytree(tiny_run, target)
    meta = json.loads((target / runs.RUN_JSON).read_text())
    atomic_write_json(target / runs.RUN_JSON, {**meta, "name": "[click me](http://example.com) **loud**"})
    at = go(open_app(monkeypatch, root, selected=[target.name], focus=target.name), "run")
    title = at.title[0].value
    assert r"\[click me\]\(http" in title and r"\*\*loud\*\*" in title, title
