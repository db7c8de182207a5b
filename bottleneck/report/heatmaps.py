"""Heatmaps of the report's gallery images: for each, where the network saw the class it was taken for and its
folder's class.

Only the images that report.html shows with a disputed class get them (misclassified test and validation
images, suspected label errors, within the galleries' caps), so the cost is bounded by those caps whatever the
data set.  The maps themselves (model/heatmaps.py) are small grids, 8x8 for Inception-v3; the page carries them
as bytes and page.js draws them over the thumbnails, so they add little to the page.
"""
from __future__ import annotations

import base64
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..data.images import BadImage, load_for_model
from ..model.heatmaps import cut_network, grad_cam
from ..model.modules import FeatureModule
from ..model.precision import Precision
from ..training.layer import TrainedLayer

log = logging.getLogger("retrain")

BATCH = 16  # images through the network at once


@dataclass(frozen=True)
class Target:
    """One gallery image and the two classes whose heatmaps it gets."""

    path: str
    taken_for: int  # the class the model (or the cross-validated layer) took it for
    folder: int  # its folder's class


@dataclass
class Heatmaps:
    """target -> (map of the class it was taken for, map of its folder's class), each uint8 [h, w]."""

    maps: dict[Target, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    note: str = ""  # what the maps show, or why there are none
    seconds: float = 0.0

    def attributes(self, target: Target) -> str:
        """The figure's data- attributes that page.js draws the two maps from ("" without maps)."""
        if target not in self.maps:
            return ""
        taken, folder = self.maps[target]
        encode = lambda grid: base64.b64encode(grid.tobytes()).decode("ascii")  # noqa: E731
        return (f' data-heat-size="{taken.shape[0]},{taken.shape[1]}" data-heat-taken="{encode(taken)}"'
                f' data-heat-folder="{encode(folder)}"')


def skipped() -> Heatmaps:
    return Heatmaps(note="Heatmaps were not computed (--skip_heatmaps).")


def gallery_heatmaps(targets: list[Target], module: FeatureModule, layer: TrainedLayer,
                     precision: Precision) -> Heatmaps:
    """The two heatmaps of every target, computed ``BATCH`` images at a time at the run's precision."""
    started = time.perf_counter()
    unique = list(dict.fromkeys(targets))
    if not unique:
        return Heatmaps(note="No image in the galleries needs a heatmap.", seconds=time.perf_counter() - started)
    network, why_not = cut_network(module)
    if network is None:
        log.info("No heatmaps on report.html: %s (docs/views.md#heatmaps).", why_not)
        return Heatmaps(note=f"No heatmaps: {why_not}.", seconds=time.perf_counter() - started)
    heatmaps = Heatmaps(note=f"Grad-CAM on {network.where}, computed in "
                             f"{'float32' if precision.name == 'int8' else precision.name}.")
    with ThreadPoolExecutor(max_workers=min(4, max(1, os.cpu_count() or 1))) as pool:
        for start in range(0, len(unique), BATCH):
            batch = unique[start:start + BATCH]
            pixels = list(pool.map(lambda t: _pixels(t.path, module), batch))
            readable = [(t, p) for t, p in zip(batch, pixels) if p is not None]
            if not readable:
                continue
            images = np.stack([p for _t, p in readable])
            targets_of = np.array([[t.taken_for for t, _p in readable], [t.folder for t, _p in readable]])
            maps = grad_cam(network, images, layer.weights, layer.biases, targets_of, precision)
            for k, (t, _p) in enumerate(readable):
                heatmaps.maps[t] = (_as_bytes(maps[0, k]), _as_bytes(maps[1, k]))
    heatmaps.seconds = time.perf_counter() - started
    return heatmaps


def _pixels(path: str, module: FeatureModule) -> np.ndarray | None:
    try:
        return load_for_model(path, module.height, module.width)
    except (BadImage, OSError):
        return None


def _as_bytes(grid: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(grid * 255), 0, 255).astype(np.uint8)
