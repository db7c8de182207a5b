"""Distortions: the classic definitions, computed once per image and copy, cached, training-only."""
import re

import numpy as np
import pytest
from helpers import make_dataset, retrain_args

from bottleneck.cli.retrain import retrain_main
from bottleneck.data.distort import Distortion


def test_no_distortion_is_the_identity_resize():
    pixels = np.random.default_rng(0).integers(0, 256, (40, 50, 3)).astype(np.uint8)
    out = Distortion(random_crop=0).apply(pixels, 40, 50, np.random.default_rng(1))
    np.testing.assert_allclose(out, pixels / 255.0, atol=1e-6)


def test_flip_mirrors_about_half_of_the_copies():
    pixels = np.zeros((8, 8, 3), np.uint8)
    pixels[:, :4] = 255  # left half white
    d = Distortion(flip_left_right=True)
    flipped = [d.apply(pixels, 8, 8, d.rng("digest", c))[0, 0, 0] == 0 for c in range(200)]
    assert 0.35 < np.mean(flipped) < 0.65


def test_brightness_multiplies_by_a_factor_within_the_range():
    pixels = np.full((10, 10, 3), 100, np.uint8)
    d = Distortion(random_brightness=20)
    factors = [d.apply(pixels, 10, 10, d.rng("x", c)).mean() * 255 / 100 for c in range(300)]
    assert 0.8 <= min(factors) < 0.85 and 1.15 < max(factors) <= 1.2


def test_crop_cuts_a_window_of_the_scaled_up_image():
    ramp = np.tile(np.arange(100, dtype=np.uint8)[None, :, None], (100, 1, 3))  # value = column
    d = Distortion(random_crop=50)
    lefts = {float(d.apply(ramp, 100, 100, d.rng("y", c))[0, 0, 0]) for c in range(40)}
    assert len(lefts) > 5  # different windows
    out = d.apply(ramp, 100, 100, d.rng("y", 0))
    assert out.shape == (100, 100, 3)
    # Scaled up by 1.5: 100 output columns span about 100 / 1.5 original columns.
    assert (out[0, -1, 0] - out[0, 0, 0]) * 255 == pytest.approx(99 / 1.5, abs=2)


def test_copies_are_a_fixed_function_of_image_and_copy_number():
    d = Distortion(flip_left_right=True, random_crop=10, random_scale=10, random_brightness=10)
    pixels = np.random.default_rng(0).integers(0, 256, (60, 60, 3)).astype(np.uint8)
    a = d.apply(pixels, 50, 50, d.rng("img", 3))
    b = d.apply(pixels, 50, 50, d.rng("img", 3))
    c = d.apply(pixels, 50, 50, d.rng("img", 4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert d.variant(3) != d.variant(4) != Distortion(random_crop=10).variant(4)


def test_distorted_training_is_cached_and_never_touches_validation_or_test(tmp_path, tiny_module, caplog):
    caplog.set_level("INFO", logger="retrain")
    images = make_dataset(tmp_path / "images", 10)
    flags = ["--flip_left_right", "--random_crop=10", "--random_brightness=10", "--distorted_copies=3"]
    assert retrain_main(retrain_args(tmp_path, images, tiny_module, *flags, steps=100)) == 0
    training = int(re.search(r"0 distorted copies cached, (\d+) to compute \(3 per", caplog.text).group(1))
    assert training % 3 == 0 and 0 < training // 3 < 30  # only training images get copies
    assert "Final test accuracy" in caplog.text
    caplog.clear()
    assert retrain_main(retrain_args(tmp_path, images, tiny_module, *flags, steps=100)) == 0
    assert f"{training} distorted copies cached, 0 to compute" in caplog.text
    assert "30 bottlenecks cached, 0 imported, 0 to compute." in caplog.text
