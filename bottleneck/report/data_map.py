"""The data map: every image's bottleneck placed in 2-D, so classes that overlap, outliers and clusters show.

PCA first brings the bottlenecks to at most ``PCA_DIMENSIONS`` dimensions
(fast, and it drops the noise that slows t-SNE); scikit-learn's t-SNE then
places them in the plane so that neighbours stay neighbours.  Above
``MAP_LIMIT`` images the map shows the first ``MAP_LIMIT`` rows of
every_image's order: every flagged image that fits, then a seeded random sample
of the others.  report.html draws the points (page.js) from the JSON written
here; the thumbnails come from one sprite, so the page holds a single image
for all of them.

t-SNE costs seconds, so the placed points are kept in the report folder
(``MAP_FILE``) under a digest of what they were placed from (the images'
names and bottlenecks, and the method); a re-run over the same images reuses
them.
"""
from __future__ import annotations

import base64
import hashlib
import html
import io
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import write_bytes_atomic
from ..data.split import SETS
from .every_image import EveryImage
from .sprite import columns, encoded, sprite

MAP_LIMIT = 3000  # points on the map
PCA_DIMENSIONS = 50
TSNE_ITERATIONS = 500  # scikit-learn's least is 250; 500 settles maps of a few thousand points
TSNE_PERPLEXITY = 30.0
SPRITE_QUALITY = 70  # JPEG quality of the page's sprite
MAP_FILE = "data_map.npz"  # the last map's points and the digest of what they were placed from


@dataclass
class DataMap:
    points: np.ndarray  # [M, 2] in [0, 1]
    images: EveryImage  # the M images shown
    total: int  # images in the run
    method: str  # how the points were placed, in words
    seconds: float


def place(images: EveryImage, total: int, seed: int | None, report_dir=None) -> DataMap:
    """The 2-D map of ``images`` (already the sample; ``total`` images in the run), reusing the points kept in
    ``report_dir`` when they were placed from the same images."""
    started = time.perf_counter()
    # Placed in the order of their names, so that a new order of the same images (other flags) is the same map.
    order = np.argsort(np.array(images.paths, dtype=object), kind="stable").astype(np.int64)
    x = np.ascontiguousarray(images.x[order], dtype=np.float32)
    digest = hashlib.sha256(repr((sorted(images.paths), x.shape, seed, TSNE_ITERATIONS, TSNE_PERPLEXITY,
                                  PCA_DIMENSIONS)).encode("utf-8", "backslashreplace") + x.tobytes()).hexdigest()
    kept = _kept(report_dir, digest)
    if kept is not None:
        points, method = kept
    else:
        points, method = _placed(x, seed)
        if report_dir is not None:
            buffer = io.BytesIO()
            np.savez(buffer, digest=digest, points=points, method=method)
            write_bytes_atomic(Path(report_dir) / MAP_FILE, buffer.getvalue())
    placed = np.empty_like(points)
    placed[order] = points
    return DataMap(placed, images, total, method, time.perf_counter() - started)


def _kept(report_dir, digest: str):
    """The points and method kept in ``report_dir`` under ``digest``, or None."""
    try:
        with np.load(Path(report_dir) / MAP_FILE) as kept:
            if str(kept["digest"]) == digest:
                return kept["points"].astype(np.float32), str(kept["method"])
    except (OSError, KeyError, ValueError, TypeError):  # none yet, or not one of ours
        pass
    return None


def _placed(x: np.ndarray, seed: int | None) -> tuple[np.ndarray, str]:
    """Points in [0, 1]^2 for the rows of ``x``, and the method in words."""
    count = len(x)
    if count < 3:
        points, method = np.zeros((count, 2), np.float32), "too few images to place"
    else:
        from sklearn.decomposition import PCA

        dims = min(PCA_DIMENSIONS, x.shape[1], count - 1)
        reduced = PCA(dims, svd_solver="randomized" if dims < min(x.shape) // 2 else "full",
                      random_state=seed or 0).fit_transform(x)
        if count < 10 or dims < 2:
            points, method = reduced[:, :2], f"PCA of {count} images"
        else:
            from sklearn.manifold import TSNE
            from threadpoolctl import threadpool_limits

            perplexity = min(TSNE_PERPLEXITY, (count - 1) / 3)
            # One thread: each of its iterations is a few milliseconds of work, which threads that wait for
            # each other (or for the cores another job holds) make many times slower.
            with threadpool_limits(limits=1):
                points = TSNE(2, perplexity=perplexity, init="pca", learning_rate="auto", max_iter=TSNE_ITERATIONS,
                              random_state=seed or 0).fit_transform(reduced)
            method = f"t-SNE (perplexity {perplexity:.0f}) of the bottlenecks' first {dims} principal components"
    points = np.asarray(points, np.float64)
    if count:
        low, high = points.min(axis=0), points.max(axis=0)
        points = (points - low) / np.where(high > low, high - low, 1.0)
    return points.astype(np.float32), method


def section(data_map: DataMap, labels: list[str], squares: np.ndarray) -> str:
    """The page's map: a JSON island that page.js draws as an SVG scatter, and the sprite of its thumbnails."""
    images = data_map.images
    sheet = "data:image/jpeg;base64," + base64.b64encode(
        encoded(sprite(squares), "JPEG", quality=SPRITE_QUALITY, optimize=True)).decode("ascii")
    data = {
        "labels": labels,
        "sets": list(SETS),
        "tile": int(squares.shape[1]) if len(squares) else 0,
        "columns": columns(len(squares)),
        # x, y (thousandths of the plot), folder class, predicted class (-1: unknown), flag bits, set index
        "points": [[int(round(px * 1000)), int(round(py * 1000)), int(c), int(g), int(f), SETS.index(s)]
                   for (px, py), c, g, f, s in zip(data_map.points, images.y, images.predicted, images.flags,
                                                   images.sets)],
        "paths": images.paths,
        "hrefs": [_href(p) for p in images.paths],
    }
    shown = len(images)
    sample = ("" if shown == data_map.total else
              f" Showing {shown:,} of {data_map.total:,} images: every flagged image that fits, and a random sample "
              "of the others.")
    # No < at all in the island, so no name can end the script element early or open a comment in it.
    island = json.dumps(data, ensure_ascii=False, separators=(",", ":")).replace("<", "\\u003c")
    return (f'<p class="hint">Each dot is an image, placed by {html.escape(data_map.method)}: images the network '
            "sees alike lie close together. Colour: folder class. Ringed: misclassified (black), suspected label "
            "error (red), duplicate (dashed). Rest the pointer on a dot to see the image; click to open it."
            f"{html.escape(sample)}</p>"
            '<div id="data-map" class="data-map"><svg class="map-plot" role="img" aria-label="data map"></svg>'
            '<div class="map-legend"></div><div class="map-tip" hidden></div></div>'
            f'<script type="application/json" id="data-map-points">{island}</script>'
            f'<script type="application/json" id="data-map-sprite">{json.dumps(sheet)}</script>')


def _href(path: str) -> str:
    try:
        return Path(path).resolve().as_uri()
    except ValueError:
        return ""
