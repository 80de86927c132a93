"""Entry point: `streamlit run dashboard/app.py [-- --runs-dir PATH]` (or RUNS_DIR=PATH).

Declares the pages and the run selection they share (dashboard/widgets.py), which is made
here, before the page runs, so it survives page switches and is kept in the URL. Imports
`dashboard` and `engine` as the installed package (`make install` installs it editable)."""

import numpy as np
import streamlit as st
from PIL import Image

from dashboard import section_tabs, widgets


def _favicon() -> Image.Image:
    """A small confusion-matrix-like icon drawn here: the page icon needs no internet fetch."""
    cells = np.full((4, 4, 3), (205, 222, 240), np.uint8)
    cells[np.arange(4), np.arange(4)] = (31, 95, 168)
    return Image.fromarray(np.kron(cells, np.ones((8, 8, 1), np.uint8)))


st.set_page_config(page_title="ResNet18 runs", page_icon=_favicon(), layout="wide")

PAGES = {
    "runs": st.Page("app_pages/runs.py", title="Runs", icon=":material/table_rows:", default=True),
    "run": st.Page("app_pages/run.py", title="Run", icon=":material/monitoring:"),
    "misclassified": st.Page("app_pages/misclassified.py", title="Misclassifications", icon=":material/image_search:"),
    "grad_cam": st.Page("app_pages/grad_cam.py", title="Grad-CAM", icon=":material/blur_on:"),
    "dynamics": st.Page("app_pages/dynamics.py", title="Training dynamics", icon=":material/scatter_plot:"),
    "compare": st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    "sweep": st.Page("app_pages/sweep.py", title="Sweep", icon=":material/stacked_line_chart:"),
    "live": st.Page("app_pages/live.py", title="Live", icon=":material/autorenew:"),
}
SINGLE_RUN_PAGES = {"run", "misclassified", "grad_cam", "dynamics"}
OWN_URL_PAGES = ("misclassified", "sweep")  # their URLs hold more than the run selection: filters, the sweep

page = st.navigation(list(PAGES.values()))
widgets.run_selection(show_focus=any(page is PAGES[name] for name in SINGLE_RUN_PAGES),
                      write_url=all(page is not PAGES[name] for name in OWN_URL_PAGES),
                      tabs=next((tabs for name, tabs in section_tabs.BY_PAGE.items() if page is PAGES[name]), None))
page.run()
