"""Datasets load as documented, and the batched augmentation draws per image."""

import numpy as np
import torch

from engine.config import build_config
from engine.data import augment, cutout, normalize, random_crop, random_flip
from engine.datasets import CIFAR10_STD, load_digits


def test_sample_loads_with_known_labels_and_the_cifar_statistics(sample):
    assert sample.x_train.shape == (5085, 32, 32, 3) and sample.x_train.dtype == np.uint8
    assert list(sample.y_train[:10]) == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert list(sample.y_test[:10]) == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert sample.std == CIFAR10_STD


def test_digits_are_an_offline_default_of_real_images():
    digits = load_digits()
    assert digits.x_train.shape[1:] == (32, 32, 3) and digits.x_train.dtype == np.uint8
    assert len(digits.y_train) + len(digits.y_test) == 1797
    assert set(digits.y_test) == set(range(10))
    assert digits.fingerprint() == load_digits().fingerprint()


def test_crop_offsets_are_uniform_per_image():
    """Every pixel differs per image: crop a batch of identical images whose pixels encode
    their own coordinates and read each image's offset back."""
    n, pad = 20000, 4
    coords = torch.arange(32 * 32, dtype=torch.float32).view(1, 1, 32, 32) + 1
    out = random_crop(coords.expand(n, 1, 32, 32), pad, torch.Generator().manual_seed(0))
    centre = out[:, 0, 16, 16] - 1  # the original pixel now at the centre
    dy = 16 - torch.div(centre, 32, rounding_mode="floor") + pad
    dx = 16 - centre % 32 + pad
    for offsets in (dy, dx):
        counts = torch.bincount(offsets.long(), minlength=2 * pad + 1).float() / n
        assert counts.shape[0] == 2 * pad + 1
        assert torch.allclose(counts, torch.full_like(counts, 1 / (2 * pad + 1)), atol=0.01)


def test_flip_rate_is_one_half_per_image():
    n = 20000
    x = torch.arange(32, dtype=torch.float32).view(1, 1, 1, 32).expand(n, 1, 2, 32)
    flipped = random_flip(x, torch.Generator().manual_seed(0))[:, 0, 0, 0] == 31
    assert abs(flipped.float().mean().item() - 0.5) < 0.015


def test_cutout_zeroes_one_clipped_square_per_image():
    x = torch.ones(4000, 3, 32, 32)
    holes = (cutout(x, 16, torch.Generator().manual_seed(0)) == 0).all(1)
    areas = holes.flatten(1).sum(1).float()
    assert areas.max() == 256 and areas.min() >= 64  # a corner clips the square to 8x8
    assert areas.std() > 0  # positions differ per image


def test_augment_transforms_each_image_and_normalises(sample):
    """Not the identity: an image passes unchanged only when every draw (crop offset, flip,
    jitter, cutout) happens to be the identity, which is rare; the same generator state gives
    the same batch."""
    c = build_config({"dataset": "cifar10"})
    x = torch.from_numpy(sample.x_train[:256]).permute(0, 3, 1, 2).contiguous()
    mean, std = torch.tensor(sample.mean), torch.tensor(sample.std)
    out = augment(x, c, mean, std, torch.Generator().manual_seed(0))
    assert out.shape == (256, 3, 32, 32) and out.dtype == torch.float32
    unchanged = ((out - normalize(x, mean, std)).abs().flatten(1).amax(1) < 1e-5).float().mean().item()
    assert unchanged < 0.05
    assert abs(out.mean().item()) < 0.3
    assert torch.equal(out, augment(x, c, mean, std, torch.Generator().manual_seed(0)))


def test_the_digits_are_upscaled_as_torchs_bilinear_interpolate_does_to_the_bit():
    """engine.datasets resizes the digits in numpy (so the dashboard loads them without torch); the
    pixels, and so every digits run's dataset fingerprint, must stay those of torch's resize."""
    from sklearn.datasets import load_digits as sk_digits

    from engine.datasets import upscale_bilinear

    images = sk_digits().images / 16.0
    expected = torch.nn.functional.interpolate(torch.from_numpy(images.astype(np.float32))[:, None], size=(32, 32),
                                               mode="bilinear", align_corners=False)[:, 0].numpy()
    assert np.array_equal(upscale_bilinear(images, 32), expected)
    assert load_digits().x_train.shape[1:] == (32, 32, 3)


def test_the_digits_file_read_directly_holds_scikit_learns_digits():
    """engine.datasets reads scikit-learn's bundled digits file itself (importing scikit-learn costs
    a second or more); the pixels and labels must be those scikit-learn's loader gives."""
    from sklearn.datasets import load_digits as sk_digits

    from engine.datasets import digits_arrays

    pixels, labels = digits_arrays()
    bunch = sk_digits()
    assert np.array_equal(pixels, bunch.images) and np.array_equal(labels, bunch.target)
