"""How far a run's confidence can be trusted: reliability bins and the expected calibration error
(ECE) of a prediction dump (docs/run-format.md, "A prediction dump").

Top-label calibration, as in Guo et al. 2017 ("On Calibration of Modern Neural Networks"): each test
image counts once, at the probability of the class it was predicted as (the dump's `confidence`),
and is right or wrong. The images are put into equal-width confidence bins over [0, 1] (15 by
default, as in that paper), each bin's accuracy is set against its mean confidence, and

    ECE = sum over the bins of (images in the bin / all images) * |accuracy - mean confidence|.

A well-calibrated run says 80% where it is right 80% of the time (ECE near 0); a run that says 99%
and is always wrong has an ECE near 1. Pure numpy, so the engine, the dashboard and the tests share
one definition."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

BINS = 15  # Guo et al. 2017 use 15 equal-width bins; the figure depends on the count, so it is spelled once


@dataclass(frozen=True)
class Reliability:
    """The non-empty confidence bins of one dump (empty bins say nothing and are left out), in
    order of confidence, and the figures over all of them."""

    low: np.ndarray  # each bin's lower edge (exclusive, except 0 for the first bin)
    high: np.ndarray  # each bin's upper edge (inclusive)
    count: np.ndarray  # images in the bin
    confidence: np.ndarray  # their mean confidence
    accuracy: np.ndarray  # the fraction of them predicted right
    images: int  # images binned (those with a finite confidence)
    left_out: int  # images whose confidence is no finite number (a diverged run's NaN), in no bin

    @property
    def ece(self) -> float | None:
        """The expected calibration error, a fraction in [0, 1]; None without images (no figure
        rather than a made-up 0)."""
        if not self.images:
            return None
        return float(np.sum(self.count / self.images * np.abs(self.accuracy - self.confidence)))


def reliability(dump: Mapping[str, np.ndarray], bins: int = BINS) -> Reliability:
    """The reliability bins of a prediction dump (`label`, `pred`, `confidence`). A bin m of M holds
    the confidences in ((m - 1) / M, m / M], the first also 0, as in Guo et al."""
    if bins < 1:
        raise ValueError(f"bins must be at least 1, not {bins}")
    confidence = np.asarray(dump["confidence"], np.float64).ravel()
    right = (np.asarray(dump["label"]).ravel() == np.asarray(dump["pred"]).ravel()).astype(np.float64)
    finite = np.isfinite(confidence)
    confidence, right = confidence[finite], right[finite]
    which = np.clip(np.ceil(np.clip(confidence, 0.0, 1.0) * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(which, minlength=bins)
    used = count > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_confidence = np.bincount(which, weights=confidence, minlength=bins) / count
        accuracy = np.bincount(which, weights=right, minlength=bins) / count
    edges = np.arange(bins + 1) / bins
    return Reliability(low=edges[:-1][used], high=edges[1:][used], count=count[used],
                       confidence=mean_confidence[used], accuracy=accuracy[used], images=int(confidence.size),
                       left_out=int((~finite).sum()))


def expected_calibration_error(dump: Mapping[str, np.ndarray], bins: int = BINS) -> float | None:
    """ECE of a prediction dump (see the module's docstring); None for a dump without images."""
    return reliability(dump, bins).ece
