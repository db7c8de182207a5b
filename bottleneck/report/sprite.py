"""Small square tiles of many images, and the sprite (one image of them all, in rows) that shows them.

TensorBoard's projector draws each point as its tile of a sprite; report.html's
data map shows a point's tile when the pointer rests on it.  One pass makes the
tiles for both: each image is decoded at a reduced JPEG scale and fitted,
upright and whole, into a square on white.  The tiles of the last run are kept
in ``--bottleneck_dir`` (``TILES_FILE``), each under its file's name, size and
time, so a re-run decodes only the images that are new or changed.
"""
from __future__ import annotations

import hashlib
import io
import logging
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from ..atomic import write_bytes_atomic
from ..data.images import BadImage, load_rgb_array

log = logging.getLogger("retrain")

TILE = 64  # pixels, each side
UNREADABLE = 200  # grey level of the tile of an image that cannot be read
TILES_FILE = "thumbnail_tiles.npz"


def tiles(paths: list[str], size: int = TILE, cache_dir=None) -> np.ndarray:
    """uint8 [N, size, size, 3]: each image fitted into a white square, on a few threads (PIL frees the GIL);
    the tiles kept in ``cache_dir`` are reused, and this run's are kept there."""
    keys = [_key(path, size) for path in paths]
    kept = _kept(cache_dir)
    missing = [i for i, key in enumerate(keys) if key not in kept]
    with ThreadPoolExecutor(max_workers=min(4, max(1, os.cpu_count() or 1))) as pool:
        made = dict(zip(missing, pool.map(lambda i: _tile(paths[i], size), missing)))
    squares = np.stack([made[i] if i in made else kept[key] for i, key in enumerate(keys)]) if paths else \
        np.zeros((0, size, size, 3), np.uint8)
    if cache_dir is not None and (missing or len(kept) != len(set(keys))):
        buffer = io.BytesIO()
        np.savez(buffer, keys=np.array(keys), tiles=squares)
        try:
            write_bytes_atomic(os.path.join(cache_dir, TILES_FILE), buffer.getvalue())
        except OSError as exc:  # a cache that cannot be written costs the next run time, not this run its report
            log.warning("Could not keep the thumbnails in %s: %s.", cache_dir, exc.strerror or exc)
    return squares


def _key(path: str, size: int) -> str:
    try:
        stat = os.stat(path)
        file = f"{os.fsencode(path)!r}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        file = f"{os.fsencode(path)!r}|unreadable"
    return hashlib.sha256(f"{size}|{file}".encode()).hexdigest()[:32]


def _kept(cache_dir) -> dict[str, np.ndarray]:
    if cache_dir is None:
        return {}
    try:
        with np.load(os.path.join(cache_dir, TILES_FILE)) as kept:
            return dict(zip(kept["keys"].tolist(), kept["tiles"]))
    except (OSError, ValueError, KeyError, EOFError):  # none yet, or damaged: decoded again
        return {}


def _tile(path: str, size: int) -> np.ndarray:
    square = np.full((size, size, 3), 255, np.uint8)
    try:
        img = Image.fromarray(load_rgb_array(path, size, size))
    except (BadImage, OSError):
        square[:] = UNREADABLE
        return square
    img.thumbnail((size, size), Image.Resampling.BILINEAR)
    top, left = (size - img.height) // 2, (size - img.width) // 2
    square[top:top + img.height, left:left + img.width] = np.asarray(img)
    return square


def columns(count: int) -> int:
    """Tiles per row of the sprite: a square sheet, as the projector expects."""
    return max(1, math.ceil(math.sqrt(count)))


def sprite(squares: np.ndarray) -> Image.Image:
    """The tiles in rows of ``columns(N)``, left to right, top to bottom, on white."""
    count, size = len(squares), squares.shape[1]
    per_row = columns(count)
    rows = max(1, math.ceil(count / per_row))
    sheet = np.full((rows * size, per_row * size, 3), 255, np.uint8)
    for i, square in enumerate(squares):
        r, c = divmod(i, per_row)
        sheet[r * size:(r + 1) * size, c * size:(c + 1) * size] = square
    return Image.fromarray(sheet)


def encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
