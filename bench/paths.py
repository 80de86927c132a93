"""Where the benches find the project, the CIFAR-10 sample and their results folder, and how a
bench saves its figures: one place, so every bench reads the same sample and writes alike."""

from __future__ import annotations

import datetime
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT.parent / "shared" / "data" / "cifar10-sample.npz"
RESULTS = ROOT / "bench" / "results"


def save_result(result: dict, what: str) -> Path:
    """Write `result` to bench/results/<today>-CPU-<what>.json; the path written."""
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"{datetime.date.today()}-CPU-{what}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    return out
