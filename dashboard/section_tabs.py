"""A page in tabs of which only the chosen one is drawn; the choice kept for the session and in the URL.

Streamlit draws every tab's content unless a tab change reruns the page (`on_change="rerun"`),
and a chart page's first visit waits for every chart on it: on a 2-core machine the Run and
Compare pages' cold visits took 3.7 and 4.1 s with every section drawn, 2.5 s with their
first tab only (bench/dashboard_bench.py --browser). So they draw one section at a time.

The chosen tab is kept for the session, as the run selection is, so leaving the page and coming
back (the sidebar, the back button after a confusion-matrix cell opened the gallery) finds it
again; and it is written into the URL the app writes once per script run (`tab=`,
`widgets.run_selection`), so a link or a reload opens the tab it names."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import streamlit as st

TAB_PARAM = "tab"
CHOSEN = "section_tab_chosen"  # per page: the tab shown last in this session (a plain key: it outlives the page)
UNKNOWN = "section_tab_unknown"  # a link's tab= that names no tab of its page, to be said on it


def slug(label: str) -> str:
    """A tab's name in the URL: "Key figures and config" -> "key-figures-and-config"."""
    return re.sub(r"[^a-z0-9]+", "-", label.lower()).strip("-")


@dataclass(frozen=True)
class SectionTabs:
    key: str  # the tabs' widget key
    labels: tuple[str, ...]  # the first is shown unless the URL or the person chooses another

    def chosen(self) -> str:
        """The tab to show: one just clicked (the widget's value differs from the one last shown),
        else the one last shown in this session, else, on a session's first tabbed page, the URL's
        (a link or a reload; later the URL may hold another page's, as Streamlit's back button
        leaves it), else the first."""
        clicked = st.session_state.get(self.key)  # absent once another page ran: widget state is per page
        last = st.session_state.get(CHOSEN, {}).get(self.key)
        if clicked in self.labels and clicked != last:
            return clicked
        if last in self.labels:
            return last
        return self._from_link() or self.labels[0]

    def _from_link(self) -> str | None:
        """The tab the URL names, on the first tabbed page a session shows; else None."""
        if CHOSEN in st.session_state:
            return None
        given = st.query_params.get(TAB_PARAM, "")
        return next((label for label in self.labels if slug(label) == given), None)

    def url_params(self) -> dict[str, str]:
        """The URL parameter for the chosen tab (none for the first); called once per script run
        before the page draws. A link's `tab=` naming no tab of this page is noted for `draw`."""
        given = st.query_params.get(TAB_PARAM, "")
        if CHOSEN not in st.session_state and given and self._from_link() is None:
            st.session_state[UNKNOWN] = given
        label = self.chosen()
        st.session_state.setdefault(CHOSEN, {})[self.key] = label
        st.session_state[self.key] = label  # the widget shows it, before it is made
        return {} if label == self.labels[0] else {TAB_PARAM: slug(label)}

    def open_next(self, label: str) -> None:
        """Make `label` the tab the page shows when it is next opened in this session: for a button
        on another page that leads to this one for that section (the Sweep page's "Compare the
        ticked trials" opens Compare's Seed groups)."""
        st.session_state.setdefault(CHOSEN, {})[self.key] = label
        st.session_state.pop(self.key, None)  # a widget value left from an earlier visit would win

    def draw(self, sections: Mapping[str, Callable[[], None]]) -> None:
        """The tab strip, and the chosen tab filled by its function in `sections` (one per label):
        the only section that runs."""
        if set(sections) != set(self.labels):
            raise ValueError(f"{self.key}: sections {sorted(sections)} are not the tabs {sorted(self.labels)}")
        unknown = st.session_state.pop(UNKNOWN, None)
        if unknown is not None:
            st.warning(f"The link's `tab={unknown}` names no tab of this page, so {self.labels[0]} is shown. "
                       f"Its tabs: {', '.join(f'`{slug(label)}`' for label in self.labels)}.",
                       icon=":material/warning:")
        label = self.chosen()
        tabs = st.tabs(list(self.labels), key=self.key, on_change="rerun")
        with tabs[self.labels.index(label)]:
            sections[label]()

RUN = SectionTabs("run_tab", ("Curves", "Predictions", "Calibration", "Config and model"))
COMPARE = SectionTabs("compare_tab", ("Curves", "Key figures and config", "Seed groups", "Calibration", "Predictions"))
BY_PAGE = {"run": RUN, "compare": COMPARE}  # the pages drawn in tabs, by their names in dashboard/app.py
