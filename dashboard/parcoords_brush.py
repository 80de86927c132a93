"""A parallel-coordinates chart whose brushes come back to Python: a small Streamlit component.

`st.plotly_chart` reports no selection from a `go.Parcoords` (its `on_select` covers points, boxes
and lassos), so a brush drawn on it would highlight lines the page never hears of. This component
is one static page (parcoords_brush.html, beside this file) that draws the figure with plotly.js
and sends back each brushed axis's intervals when a brush ends. Streamlit serves a component's files from
one folder, so the page and the plotly.js the plotly package ships (no CDN: the dashboard works
offline) are copied once into a cache folder named after both."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import plotly
import plotly.graph_objects as go
import streamlit.components.v1 as components

PAGE = Path(__file__).with_suffix(".html")
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"


def _cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "resnet-runs"


def component_folder(root: Path | None = None) -> Path:
    """The folder Streamlit serves the component from: index.html and plotly.min.js, written once
    per version of either (a rename makes each file whole, should two dashboards start at once).
    Falls back to a temporary folder where the cache folder cannot be written."""
    page = PAGE.read_bytes()
    digest = hashlib.sha256(page + plotly.__version__.encode()).hexdigest()[:12]
    for base in (root or _cache_root(), Path(tempfile.gettempdir()) / f"resnet-runs-{os.getuid()}"):
        folder = base / f"parcoords-brush-{digest}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            for name, source in (("plotly.min.js", PLOTLY_JS), ("index.html", PAGE)):
                if not (folder / name).is_file() or (folder / name).stat().st_size != source.stat().st_size:
                    part = folder / f".{name}.{os.getpid()}"
                    shutil.copyfile(source, part)
                    part.replace(folder / name)
            return folder
        except OSError:
            continue
    raise OSError(f"cannot write the chart's files under {root or _cache_root()} nor {tempfile.gettempdir()}: "
                  "set XDG_CACHE_HOME to a folder you can write")


@functools.cache
def _component():
    return components.declare_component("parcoords_brush", path=str(component_folder()))


def parcoords_brush(figure: go.Figure, key: str) -> Any:
    """Draw `figure` (one go.Parcoords whose dimensions are named) and return what its brushes were
    when the last one ended: {dimension name: [[low, high], ...]}, or {} before any brush. What the
    browser sends is not checked here: see `sweep_chart.brushes_from`."""
    return _component()(figure=json.loads(figure.to_json()), key=key, default={})
