"""The Sweep chart's component folder (dashboard/parcoords_brush.py): Streamlit serves a component
from one folder, so the page and plotly.js are copied there, once, and somewhere writable. What the
chart does in a browser is tests/test_browser_sweep.py's."""

from __future__ import annotations

import os
import tempfile

from dashboard import parcoords_brush


def test_the_folder_holds_the_page_and_plotly_js_written_once(tmp_path):
    folder = parcoords_brush.component_folder(tmp_path)
    assert folder.parent == tmp_path
    assert (folder / "index.html").read_bytes() == parcoords_brush.PAGE.read_bytes()
    assert (folder / "plotly.min.js").read_bytes() == parcoords_brush.PLOTLY_JS.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == ["index.html", "plotly.min.js"]  # no part file left
    written = (folder / "plotly.min.js").stat().st_mtime_ns
    assert parcoords_brush.component_folder(tmp_path) == folder
    assert (folder / "plotly.min.js").stat().st_mtime_ns == written


def test_a_cut_short_copy_is_written_again(tmp_path):
    folder = parcoords_brush.component_folder(tmp_path)
    (folder / "plotly.min.js").write_bytes(b"// cut short")
    parcoords_brush.component_folder(tmp_path)
    assert (folder / "plotly.min.js").read_bytes() == parcoords_brush.PLOTLY_JS.read_bytes()


def test_a_cache_folder_that_cannot_be_written_falls_back_to_a_temporary_one(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))  # what gettempdir() answers
    (tmp_path / "tmp").mkdir()
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    folder = parcoords_brush.component_folder(blocked)
    assert folder.parent == tmp_path / "tmp" / f"resnet-runs-{os.getuid()}"
    assert (folder / "index.html").is_file()
