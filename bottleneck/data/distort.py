"""Training-image distortions, computed once per image and copy and cached like any bottleneck.

The classic script distorted every training image at every step and ran the full
network each time, which its tutorial said takes "many hours".  Here each
training image gets ``copies`` distorted versions, each a fixed function of the
image and the copy number, so their bottlenecks are cached and training samples
among them in seconds.  The distortions follow the classic definitions:

- random_crop: the image is first scaled up by a margin of ``crop`` percent, then
  a window of the input size is cut at a random position;
- random_scale: on top of that margin, a random scale-up of up to ``scale`` percent;
- flip_left_right: half of the copies are mirrored;
- random_brightness: pixel values multiplied by a factor drawn from
  [1 - b%, 1 + b%] (not clipped, as in the classic script).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from .images import load_rgb_array, resize_bilinear_legacy


@dataclass(frozen=True)
class Distortion:
    flip_left_right: bool = False
    random_crop: float = 0.0
    random_scale: float = 0.0
    random_brightness: float = 0.0

    @property
    def active(self) -> bool:
        return self.flip_left_right or self.random_crop > 0 or self.random_scale > 0 or self.random_brightness > 0

    def variant(self, copy: int) -> str:
        """The cache variant of distorted copy number ``copy``."""
        return (f"distort-v1:flip={int(self.flip_left_right)},crop={self.random_crop:g},"
                f"scale={self.random_scale:g},brightness={self.random_brightness:g}:{copy}")

    def rng(self, digest: str, copy: int) -> np.random.Generator:
        """Random numbers for one image and copy: the same on every run, so the copy can be cached."""
        seed = hashlib.sha256(f"{digest}|{self.variant(copy)}".encode()).digest()
        return np.random.default_rng(int.from_bytes(seed[:8], "little"))

    def apply(self, pixels: np.ndarray, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
        """uint8/float [H, W, 3] pixels in 0..255 -> float32 [height, width, 3], nominally in [0, 1]."""
        margin = 1.0 + self.random_crop / 100.0
        scale = margin * rng.uniform(1.0, 1.0 + self.random_scale / 100.0) if self.random_scale else margin
        pre_h, pre_w = max(height, int(scale * height)), max(width, int(scale * width))
        image = resize_bilinear_legacy(np.asarray(pixels, np.float32), pre_h, pre_w)
        top = int(rng.integers(0, pre_h - height + 1))
        left = int(rng.integers(0, pre_w - width + 1))
        image = image[top : top + height, left : left + width]
        if self.flip_left_right and rng.random() < 0.5:
            image = image[:, ::-1]
        if self.random_brightness:
            b = self.random_brightness / 100.0
            image = image * np.float32(rng.uniform(1.0 - b, 1.0 + b))
        return np.ascontiguousarray(image, dtype=np.float32) / np.float32(255.0)

    def load(self, path, digest: str, copy: int, height: int, width: int) -> np.ndarray:
        """Decode ``path`` and return its distorted copy number ``copy``."""
        scale = (1.0 + self.random_crop / 100.0) * (1.0 + self.random_scale / 100.0)
        pixels = load_rgb_array(path, int(height * scale) + 1, int(width * scale) + 1)
        return self.apply(pixels, height, width, self.rng(digest, copy))
