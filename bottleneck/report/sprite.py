"""Small square tiles of many images, and the sprite (one image of them all, in rows) that shows them.

TensorBoard's projector draws each point as its tile of a sprite; report.html's
data map shows a point's tile when the pointer rests on it.  One pass makes the
tiles for both: each image is decoded at a reduced JPEG scale and fitted,
upright and whole, into a square on white.
"""
from __future__ import annotations

import io
import math
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image

from ..data.images import BadImage, load_rgb_array

TILE = 64  # pixels, each side
UNREADABLE = 200  # grey level of the tile of an image that cannot be read


def tiles(paths: list[str], size: int = TILE) -> np.ndarray:
    """uint8 [N, size, size, 3]: each image fitted into a white square, on a few threads (PIL frees the GIL)."""
    with ThreadPoolExecutor(max_workers=min(4, max(1, os.cpu_count() or 1))) as pool:
        made = list(pool.map(lambda p: _tile(p, size), paths))
    return np.stack(made) if made else np.zeros((0, size, size, 3), np.uint8)


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
