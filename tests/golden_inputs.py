"""Deterministic 299x299 inputs shared by the golden-value script and its test."""
from pathlib import Path

import numpy as np
from PIL import Image

PHOTO = Path(__file__).resolve().parent / "fixtures" / "golden_photo_299.png"


def golden_images() -> np.ndarray:
    """Seeded noise, a smooth colour gradient and a real photo, as uint8 [3, 299, 299, 3]."""
    noise = np.random.default_rng(20151205).integers(0, 256, size=(299, 299, 3), dtype=np.uint8)
    ramp = np.linspace(0, 255, 299)
    gradient = np.stack(
        [np.add.outer(ramp, ramp) / 2, np.add.outer(ramp, 255 - ramp) / 2, np.tile(ramp, (299, 1))], axis=-1
    ).round().astype(np.uint8)
    photo = np.asarray(Image.open(PHOTO).convert("RGB"))
    return np.stack([noise, gradient, photo])
