"""Why the model decides: the heatmaps, the data map and TensorBoard's projector, made for one report.

``build_views`` runs after the page's data is known and before the page is
written; each view is timed (summary.json's ``timings_s``) and bounded: the
heatmaps by the galleries' caps, the thumbnails and the projector by
``PROJECTOR_LIMIT`` images, the map by ``MAP_LIMIT``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..model.modules import FeatureModule
from ..model.precision import choose
from ..training.layer import TrainedLayer
from .data_map import MAP_LIMIT, DataMap, place
from .every_image import every_image
from .heatmaps import Heatmaps, gallery_heatmaps, skipped
from .page import PageData, gallery_targets
from .projector import PROJECTOR_LIMIT, write_projector
from .sprite import tiles


@dataclass
class ViewInputs:
    """What the views need beyond the page's data."""

    module: FeatureModule  # the network as the run ends (fine-tuned, if it was)
    layer: TrainedLayer  # the new layer as exported
    sets: dict  # set -> SplitData: every image's plain bottleneck, as the cache holds it
    summaries_dir: Path
    precision: str = "auto"  # --precision
    fine_tuned: bool = False  # then the layer reads the tuned network's bottlenecks, not the cached ones
    heatmaps: bool = True  # False with --skip_heatmaps
    seed: int | None = None
    cache_dir: Path | None = None  # --bottleneck_dir, where the heatmaps' grids and the thumbnails are kept


@dataclass
class Views:
    heatmaps: Heatmaps
    data_map: DataMap | None
    squares: np.ndarray  # thumbnails of the map's images, in its order
    projector: dict | None
    timings: dict[str, float] = field(default_factory=dict)

    def summary(self) -> dict:
        """What summary.json says of the views."""
        data_map = self.data_map
        return {
            "heatmaps": {"images": len(self.heatmaps.maps), "note": self.heatmaps.note},
            "data_map": None if data_map is None else {"points": len(data_map.images), "images": data_map.total,
                                                       "method": data_map.method},
            "projector": self.projector,
        }


def build_views(inputs: ViewInputs, page: PageData, labels: list[str], report_dir=None) -> Views:
    """Every view, each timed; ``report_dir`` keeps the data map's points for the next run."""
    timings = {}
    started = time.perf_counter()
    if inputs.heatmaps:
        heatmaps = gallery_heatmaps(gallery_targets(page, labels), inputs.module, inputs.layer,
                                    choose(inputs.precision), inputs.cache_dir)
    else:
        heatmaps = skipped()
    timings["heatmaps"] = time.perf_counter() - started

    shown, total = every_image(inputs.sets, None if inputs.fine_tuned else inputs.layer,
                               {"validation": (page.validation.names, page.validation.probabilities),
                                "testing": (page.test.names, page.test.probabilities)}, page.findings, inputs.seed,
                               limit=PROJECTOR_LIMIT)
    if not total:
        return Views(heatmaps, None, np.zeros((0, 0, 0, 3), np.uint8), None, timings)
    started = time.perf_counter()
    squares = tiles(shown.paths, cache_dir=inputs.cache_dir)
    timings["thumbnails"] = time.perf_counter() - started

    mapped = min(len(shown), MAP_LIMIT)
    data_map = place(shown.take(np.arange(mapped)), total, inputs.seed, report_dir)
    timings["data_map"] = data_map.seconds

    started = time.perf_counter()
    projector = write_projector(inputs.summaries_dir, shown, labels, squares, total)
    timings["projector"] = time.perf_counter() - started
    return Views(heatmaps, data_map, squares[:mapped], projector, timings)
