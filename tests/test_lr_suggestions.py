"""The range test's suggestions and warnings: every method on curves of a known shape, the config's
`lr_suggestion` choosing which one sets max LR in a real tiny run, and what lr_finder.json keeps."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine import runs
from engine.config import ConfigError, build_config
from engine.lr_finder import SKIP_START, curve_warnings, minimum, suggest, valley
from engine.train import train
from tests.conftest import tiny_config

LRS = list(np.geomspace(1e-5, 1.0, 100))


def bowl(lrs: list[float]) -> list[float]:
    """A textbook curve: flat, falling fastest near 1e-2, lowest near 0.1, then blowing up."""
    x = np.log10(lrs)
    return list(2.3 - 1.5 / (1 + np.exp(-(x + 2) * 3)) + np.where(x > -1, (x + 1) ** 2 * 8, 0))


def test_each_method_finds_its_point_on_a_textbook_curve():
    loss = bowl(LRS)
    found = suggest(LRS, loss, loss)
    lowest = int(np.argmin(loss))
    assert found["minimum"] == lowest
    assert 5e-3 < LRS[found["steepest"]] < 2e-2  # the steepest fall, one decade below the minimum
    assert abs(found["valley"] - lowest / 2) <= 2  # half way down the one long descent (0 to the minimum)
    assert curve_warnings(loss, loss, was_diverged=True) == []


def test_valley_takes_the_longest_descent_not_an_early_dip():
    loss = [3.0, 2.0, 2.9] + list(np.linspace(2.9, 1.0, 60)) + [1.5, 3.0]
    index = valley(loss)
    assert 3 + 60 // 3 <= index <= 3 + 60 * 2 // 3  # within the long descent, not at the early dip (1)


@pytest.mark.parametrize("shape, expected", [
    ("flat", "flat"), ("noisy", "noisy"), ("rising", "diverged before the minimum"), ("falling", "no minimum")])
def test_an_untrustworthy_curve_is_named_with_what_to_change(shape, expected):
    rng = np.random.default_rng(0)
    smoothed = {"flat": [2.3] * 100, "noisy": list(np.linspace(2.3, 1.5, 100)),
                "rising": list(np.linspace(1.0, 3.0, 100)), "falling": list(np.linspace(2.3, 0.5, 100))}[shape]
    raw = list(np.array(smoothed) * (1 + (rng.standard_normal(100) if shape == "noisy" else 0)))
    warnings = curve_warnings(raw, smoothed, was_diverged=False)
    assert [w for w in warnings if w.startswith(expected)], warnings
    fixes = {"flat": "--lr-finder-end", "noisy": "--lr-finder-iters", "rising": "--lr-finder-start",
             "falling": "--lr-finder-end"}
    assert fixes[shape] in next(w for w in warnings if w.startswith(expected))


def test_minimum_ignores_the_noisy_last_points():
    loss = list(np.linspace(2.0, 1.0, 50)) + [0.1] * 3
    assert minimum(loss) < 50 and loss[minimum(loss)] == pytest.approx(min(loss[SKIP_START:-5]))


def test_an_unknown_suggestion_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="lr_suggestion must be steepest, valley or minimum"):
        build_config({"lr_suggestion": "median"})


@pytest.mark.parametrize("method", ["valley", "minimum"])
def test_the_chosen_suggestion_sets_max_lr_and_lr_finder_json_keeps_them_all(tmp_path, sample, method):
    run = runs.load_run(train(tiny_config(tmp_path, epochs=1, lr_suggestion=method, lr_finder_iters=30),
                              data=sample, quiet=True).run_dir)
    finder = run.lr_finder
    assert set(finder["suggestions"]) == {"steepest", "valley", "minimum"}
    chosen = finder["suggestions"][method]
    assert run.meta["plan"]["max_lr"] == finder["used_lr"] == finder["suggested_lr"] == chosen["lr"]
    lr_at = finder["lr"][chosen["index"]]
    assert math.isclose(chosen["lr"], lr_at / 10 if method == "minimum" else lr_at)
    assert isinstance(finder["warnings"], list) and run.warnings == []
