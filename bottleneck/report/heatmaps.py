"""Heatmaps of the report's gallery images: for each, where the network saw the class it was taken for and its
folder's class.

Only the images that report.html shows with a disputed class get them (misclassified test and validation
images, suspected label errors, within the galleries' caps), so the cost is bounded by those caps whatever the
data set.  The maps themselves (model/heatmaps.py) are small grids, 8x8 for Inception-v3; the page carries them
as bytes and page.js draws them over the thumbnails, so they add little to the page.

The network's grids of those images are kept in ``--bottleneck_dir`` (``GRIDS_FILE``, float16, only the last
run's), each under the network's identity and the file's name, size and time, so a re-run that shows the same
images makes their heatmaps with its own new layer and without running the network.
"""
from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..atomic import write_bytes_atomic
from ..data.images import BadImage, load_for_model
from ..model.heatmaps import cut_network, feature_grids, grad_cam
from ..model.modules import FeatureModule
from ..model.precision import Precision
from ..training.layer import TrainedLayer

log = logging.getLogger("retrain")

BATCH = 16  # images through the network at once
GRIDS_FILE = "heatmap_grids.npz"


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


def gallery_heatmaps(targets: list[Target], module: FeatureModule, layer: TrainedLayer, precision: Precision,
                     cache_dir=None) -> Heatmaps:
    """The two heatmaps of every target: the grids from ``cache_dir`` where kept there, else from the network,
    ``BATCH`` images at a time at the run's precision."""
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
    keys = {t.path: _grid_key(module, t.path) for t in unique}
    kept = _kept_grids(cache_dir, set(keys.values()))
    grids = {path: kept[key] for path, key in keys.items() if key in kept}
    missing = [path for path in keys if path not in grids]
    with ThreadPoolExecutor(max_workers=min(4, max(1, os.cpu_count() or 1))) as pool:
        for start in range(0, len(missing), BATCH):
            batch = missing[start:start + BATCH]
            pixels = list(pool.map(lambda path: _pixels(path, module), batch))
            readable = [(path, p) for path, p in zip(batch, pixels) if p is not None]
            if readable:
                made = feature_grids(network, np.stack([p for _path, p in readable]), precision)
                grids.update((path, grid.astype(np.float16)) for (path, _p), grid in zip(readable, made))
    shown = [t for t in unique if t.path in grids]
    for start in range(0, len(shown), 4 * BATCH):
        batch = shown[start:start + 4 * BATCH]
        targets_of = np.array([[t.taken_for for t in batch], [t.folder for t in batch]])
        maps = grad_cam(network, np.stack([grids[t.path] for t in batch]), layer.weights, layer.biases, targets_of)
        for k, t in enumerate(batch):
            heatmaps.maps[t] = (_as_bytes(maps[0, k]), _as_bytes(maps[1, k]))
    if cache_dir is not None and set(kept) != {keys[p] for p in grids}:
        _keep_grids(cache_dir, {keys[p]: grid for p, grid in grids.items()})
    heatmaps.seconds = time.perf_counter() - started
    return heatmaps


def _grid_key(module: FeatureModule, path: str) -> str:
    """Names one image's grid: the network (weights, preprocessing, precision) and the file as it is now."""
    try:
        stat = os.stat(path)
        file = f"{os.fsencode(path)!r}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        file = f"{os.fsencode(path)!r}|unreadable"
    return "g" + hashlib.sha256(f"{module.identity}|{file}".encode()).hexdigest()[:32]


def _kept_grids(cache_dir, wanted: set[str]) -> dict[str, np.ndarray]:
    """The grids kept in ``cache_dir`` whose keys are ``wanted`` (the file is read only for those)."""
    if cache_dir is None:
        return {}
    try:
        with np.load(os.path.join(cache_dir, GRIDS_FILE)) as kept:
            return {key: kept[key] for key in kept.files if key in wanted}
    except (OSError, ValueError, KeyError, EOFError):  # none yet, or damaged: the network makes them again
        return {}


def _keep_grids(cache_dir, grids: dict[str, np.ndarray]) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **grids)
    try:
        write_bytes_atomic(os.path.join(cache_dir, GRIDS_FILE), buffer.getvalue())
    except OSError as exc:  # a cache that cannot be written costs the next run time, not this run its report
        log.warning("Could not keep the heatmaps' grids in %s: %s.", cache_dir, exc.strerror or exc)


def _pixels(path: str, module: FeatureModule) -> np.ndarray | None:
    try:
        return load_for_model(path, module.height, module.width)
    except (BadImage, OSError):
        return None


def _as_bytes(grid: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(grid * 255), 0, 255).astype(np.uint8)
