"""Datasets as uint8 arrays: torchvision's CIFAR-10 (downloaded when absent), any `npz` with the
keys of `../shared/data/README.md`, and `digits`, scikit-learn's bundled handwritten digits brought
to 3x32x32, so a first run works offline.

Apart from the augmentation (engine/data.py) because the dashboard reads training images back
through it (engine/run_dataset.py): an npz dataset and the digits load without importing torch,
which takes a second or two on 2 cores (CIFAR-10 needs torchvision's reader)."""

from __future__ import annotations

import hashlib
import importlib.util
import socket
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from engine.safe_io import npz_headers

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
MAX_IMAGES = 2_000_000
MAX_NPZ_BYTES = 2 * MAX_IMAGES * (32 * 32 * 3 + 8) + 2**20  # both splits at the image cap


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the problem and the way on."""


@dataclass
class ImageDataset:
    name: str
    classes: list[str]
    x_train: np.ndarray  # uint8 (N, 32, 32, 3)
    y_train: np.ndarray  # int64 (N,)
    x_test: np.ndarray
    y_test: np.ndarray
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for array in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()[:16]

    def describe(self) -> dict:
        return {
            "name": self.name,
            "classes": list(self.classes),
            "num_classes": len(self.classes),
            "train_size": int(len(self.y_train)),
            "test_size": int(len(self.y_test)),
            "image_shape": list(self.x_train.shape[1:]),
            "mean": list(self.mean),
            "std": list(self.std),
            "fingerprint": self.fingerprint(),
        }

    def subset(self, train: int, test: int) -> ImageDataset:
        """The first `train` / `test` images (0 keeps all): quick runs on a slice."""
        t = slice(0, train or None)
        s = slice(0, test or None)
        return ImageDataset(self.name, self.classes, self.x_train[t], self.y_train[t],
                            self.x_test[s], self.y_test[s], self.mean, self.std)


# ---------------------------------------------------------------- loading


def load_dataset(spec: str, data_dir: str | Path = "data") -> ImageDataset:
    if spec == "cifar10":
        return load_cifar10(Path(data_dir))
    if spec == "digits":
        return load_digits()
    if spec.startswith("npz:"):
        return load_npz(Path(spec[4:]))
    raise DatasetError(f"unknown dataset {spec!r}; use cifar10, digits or npz:PATH/TO/FILE.npz")


def load_cifar10(data_dir: Path) -> ImageDataset:
    from torchvision.datasets import CIFAR10

    folder = data_dir / "cifar-10-batches-py"
    if not folder.is_dir():
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(20)
        try:
            CIFAR10(str(data_dir), train=True, download=True)
        except Exception as exc:
            raise DatasetError(
                f"CIFAR-10 is not under {data_dir}/ and could not be downloaded ({exc.__class__.__name__}: {exc}).\n"
                f"Two ways on: put the extracted cifar-10-batches-py/ folder under {data_dir}/ "
                "(or pass --data-dir), or run `make demo` for an offline run on the bundled digits."
            ) from None
        finally:
            socket.setdefaulttimeout(previous)
    try:
        train = CIFAR10(str(data_dir), train=True, download=False)
        test = CIFAR10(str(data_dir), train=False, download=False)
    except Exception as exc:
        raise DatasetError(f"{folder} is damaged ({exc}); delete it and download again") from None
    return ImageDataset(
        "cifar10", list(CIFAR10_CLASSES),
        np.asarray(train.data, dtype=np.uint8), np.asarray(train.targets, dtype=np.int64),
        np.asarray(test.data, dtype=np.uint8), np.asarray(test.targets, dtype=np.int64),
        CIFAR10_MEAN, CIFAR10_STD,
    )


def upscale_bilinear(images: np.ndarray, size: int) -> np.ndarray:
    """(N, h, w) images resized to (N, size, size) as torch's `interpolate(mode="bilinear",
    align_corners=False)` does (each output pixel's centre mapped back, clamped at the edge), in
    numpy, so the digits load without torch. For the digits (sixteenths, scaled by a power of two)
    every product and sum is exact, so the pixels, and the dataset's fingerprint, are torch's to the
    bit (tests/test_data.py compares them)."""
    def taps(inside: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        source = np.maximum((np.arange(size) + 0.5) * (inside / size) - 0.5, 0.0)
        low = np.floor(source).astype(int)
        return low, np.minimum(low + 1, inside - 1), source - low

    rows, cols = (taps(n) for n in images.shape[1:3])
    top, bottom = images[:, rows[0]], images[:, rows[1]]
    across = [(1 - cols[2]) * half[:, :, cols[0]] + cols[2] * half[:, :, cols[1]] for half in (top, bottom)]
    return (1 - rows[2])[:, None] * across[0] + rows[2][:, None] * across[1]


def digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (1797, 8, 8) float pixels 0..16 and int64 labels, read from the file
    it bundles without importing scikit-learn, which imports scipy.stats (1-2 s on 2 cores, paid by a
    digits run's Training dynamics page); scikit-learn's own loader where that file is not found."""
    spec = importlib.util.find_spec("sklearn")
    folders = spec.submodule_search_locations if spec else None
    path = Path(folders[0]) / "datasets" / "data" / "digits.csv.gz" if folders else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits as sk_digits

        bunch = sk_digits()
        return bunch.images, bunch.target.astype(np.int64)
    table = np.loadtxt(path, delimiter=",")
    return table[:, :-1].reshape(-1, 8, 8), table[:, -1].astype(np.int64)


def load_digits() -> ImageDataset:
    """scikit-learn's 1,797 handwritten digits (8x8, 0..16), upscaled to 3x32x32 uint8.

    A fixed shuffle splits them 80/20, so every machine sees the same train and test sets."""
    pixels, y = digits_arrays()
    gray = (np.clip(upscale_bilinear(pixels / 16.0, 32), 0, 1) * 255).round().astype(np.uint8)
    x = np.repeat(gray[..., None], 3, axis=-1)
    order = np.random.default_rng(0).permutation(len(y))
    cut = int(len(y) * 0.8)
    train, test = order[:cut], order[cut:]
    mean, std = channel_stats(x[train])
    return ImageDataset("digits", [str(d) for d in range(10)], x[train], y[train], x[test], y[test], mean, std)


def load_npz(path: Path) -> ImageDataset:
    """uint8 images (N, 32, 32, 3) and integer labels, read without pickle and checked."""
    if not path.is_file():
        raise DatasetError(f"npz dataset {path} does not exist; check the path after `npz:`")
    try:
        headers = npz_headers(path, MAX_NPZ_BYTES)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise DatasetError(f"{path} is not a readable .npz file ({exc}); write it with numpy.savez") from None
    missing = [k for k in NPZ_KEYS if k not in headers]
    if missing:
        raise DatasetError(f"{path} lacks the keys {missing}; it needs {list(NPZ_KEYS)} (and optionally classes)")
    problems = []
    for key in ("x_train", "x_test"):
        shape, dtype = headers[key]
        if dtype != np.uint8 or len(shape) != 4 or tuple(shape[1:]) != (32, 32, 3):
            problems.append(f"{key} must be uint8 of shape (N, 32, 32, 3), got {dtype} {shape}")
        elif shape[0] > MAX_IMAGES:
            problems.append(f"{key} holds {shape[0]} images, more than the {MAX_IMAGES} allowed")
    for key, images in (("y_train", "x_train"), ("y_test", "x_test")):
        shape, dtype = headers[key]
        if dtype.kind not in "iu" or len(shape) != 1:
            problems.append(f"{key} must be a 1-D integer array, got {dtype} {shape}")
        elif shape[0] != headers[images][0][0]:
            problems.append(f"{key} has {shape[0]} labels for {headers[images][0][0]} images in {images}")
    if problems:
        raise DatasetError(f"{path}: " + "; ".join(problems))

    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in NPZ_KEYS}
            classes = [str(c) for c in npz["classes"]] if "classes" in npz.files else None
    except ValueError as exc:
        raise DatasetError(f"{path} holds object arrays, which are refused ({exc})") from None
    labels = np.concatenate([arrays["y_train"], arrays["y_test"]])
    num_classes = len(classes) if classes else int(labels.max()) + 1
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise DatasetError(
            f"{path}: labels must lie in 0..{num_classes - 1} for {num_classes} classes, "
            f"found {labels.min()}..{labels.max()}"
        )
    classes = classes or [str(i) for i in range(num_classes)]
    if tuple(classes) == CIFAR10_CLASSES:
        mean, std = CIFAR10_MEAN, CIFAR10_STD
    else:
        mean, std = channel_stats(arrays["x_train"])
    return ImageDataset(f"npz:{path.name}", classes,
                        arrays["x_train"], arrays["y_train"].astype(np.int64),
                        arrays["x_test"], arrays["y_test"].astype(np.int64), mean, std)


def channel_stats(images: np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    pixels = images.reshape(-1, images.shape[-1]).astype(np.float64) / 255.0
    return tuple(float(v) for v in pixels.mean(0)), tuple(float(v) for v in pixels.std(0))
