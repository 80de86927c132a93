"""Which training images the Training dynamics page shows, in which order, and the ranked list a
user downloads to relabel: pure functions of a run's per-image scores (engine/dynamics_scores.py)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from engine.dynamics_scores import ImageScores, data_map_regions, likely_mislabelled

# Each view: what it holds and how it is ordered, as a person reads it on the page.
VIEWS = {
    "likely mislabelled": "every image, the most doubtful given label first",
    "hard to learn": "low confidence, low variability (lowest confidence first): often mislabelled or odd",
    "ambiguous": "the most variable third (most variable first): the model went back and forth",
    "easy": "high confidence, low variability (most confident first)",
    "forgotten": "right at one epoch and wrong at a later one (most often forgotten first)",
    "selected on the map": "the points selected with box or lasso on the data map (most doubtful label first)",
}


def view_order(view: str, scores: ImageScores, selected: Sequence[int] = ()) -> np.ndarray:
    """Training-image indices the view holds, in the order the page shows them."""
    ranked = likely_mislabelled(scores)  # the most doubtful label first; never-drawn images last
    if view == "likely mislabelled":
        return ranked[~np.isnan(scores.aum[ranked])]
    if view == "forgotten":
        found = np.flatnonzero(scores.forgetting > 0)
        return found[np.lexsort((found, scores.aum[found], -scores.forgetting[found]))]
    if view == "selected on the map":
        chosen = np.zeros(len(scores), bool)
        chosen[np.asarray([i for i in selected if 0 <= i < len(scores)], np.int64)] = True
        return ranked[chosen[ranked]]
    region = data_map_regions(scores)[view]
    found = np.flatnonzero(region)
    key = {"hard to learn": scores.confidence[found], "ambiguous": -scores.variability[found],
           "easy": -scores.confidence[found]}[view]
    return found[np.lexsort((found, key))]


def mislabelled_table(scores: ImageScores, labels: np.ndarray | None, class_names: Sequence[str],
                      final_pred: np.ndarray | None = None) -> pd.DataFrame:
    """The ranked likely-mislabelled list, one row per training image (the CSV a user relabels from):
    `index` (position in the training set), the given label, what the final model predicts and its
    probability of the given label (where the run recorded them), and the scores."""
    order = likely_mislabelled(scores)

    def names(classes: np.ndarray | None) -> list[str]:
        if classes is None:
            return [""] * len(order)
        return [class_names[int(c)] if int(c) < len(class_names) else str(int(c)) for c in classes[order]]

    columns = {"rank": np.arange(1, len(order) + 1), "index": order, "given_label": names(labels)}
    if scores.final_prob is not None:
        columns.update(final_model_prediction=names(final_pred), final_model_prob_given=scores.final_prob[order])
    return pd.DataFrame({
        **columns, "aum": scores.aum[order], "confidence": scores.confidence[order],
        "variability": scores.variability[order], "correctness": scores.correctness[order],
        "forgetting": scores.forgetting[order], "epochs_seen": scores.epochs_seen[order]})
