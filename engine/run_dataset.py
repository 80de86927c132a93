"""The dataset a run trained on, loaded again from what the run recorded, for pages that show
training images (a run keeps only its test images and 32 training samples).

The config names the dataset and its folder; the subset flags cut it as training did; the
fingerprint in dataset.json proves it is the same data. A run trained on data handed to `train()`
directly, or on a file changed since, gets a DatasetError saying so rather than wrong images."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.datasets import DatasetError, ImageDataset, load_dataset


def load_run_dataset(config: Mapping[str, Any] | None, dataset: Mapping[str, Any] | None) -> ImageDataset:
    """The run's dataset exactly as it trained on it; DatasetError naming what is missing or different."""
    if not config or not isinstance(config.get("dataset"), str):
        raise DatasetError("the run's config.json does not name its dataset")
    spec, data_dir = config["dataset"], str(config.get("data_dir") or "data")
    data = load_dataset(spec, data_dir)
    data = data.subset(int(config.get("train_subset") or 0), int(config.get("test_subset") or 0))
    recorded = (dataset or {}).get("fingerprint")
    if recorded is None:
        raise DatasetError("the run's dataset.json holds no fingerprint, so its training images cannot be checked")
    if data.fingerprint() != recorded:
        where = f"{data_dir}/" if spec == "cifar10" else spec
        raise DatasetError(f"the dataset found at {where} is not the one this run trained on "
                           f"(fingerprint {data.fingerprint()}, the run recorded {recorded})")
    return data
