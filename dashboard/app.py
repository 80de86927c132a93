"""Entry point: `streamlit run dashboard/app.py [-- --runs-dir PATH]` (or RUNS_DIR=PATH).

Declares the pages and the run selection they share. The selection lives in sidebar widgets
created here, before the page runs, so it survives page switches and is kept in the URL."""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ on the path, not the project root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import widgets  # noqa: E402

st.set_page_config(page_title="ResNet18 runs", page_icon=":material/insights:", layout="wide")

PAGES = {
    "runs": st.Page("app_pages/runs.py", title="Runs", icon=":material/table_rows:", default=True),
    "run": st.Page("app_pages/run.py", title="Run", icon=":material/monitoring:"),
    "misclassified": st.Page("app_pages/misclassified.py", title="Misclassifications", icon=":material/image_search:"),
    "grad_cam": st.Page("app_pages/grad_cam.py", title="Grad-CAM", icon=":material/blur_on:"),
    "compare": st.Page("app_pages/compare.py", title="Compare", icon=":material/compare_arrows:"),
    "live": st.Page("app_pages/live.py", title="Live", icon=":material/autorenew:"),
}
SINGLE_RUN_PAGES = {"run", "misclassified", "grad_cam"}

page = st.navigation(list(PAGES.values()))
widgets.run_selection(show_focus=any(page is PAGES[name] for name in SINGLE_RUN_PAGES))
page.run()
