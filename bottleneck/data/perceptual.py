"""Perceptual fingerprints of images: what a resized or re-encoded copy of a photo keeps.

A fingerprint is two 64-bit perceptual hashes of the upright photo, computed by
the ``imagehash`` package: the DCT hash (``phash``: the signs of the lowest
frequencies of a 32 x 32 grey thumbnail) and the difference hash (``dhash``:
whether each of a 9 x 8 grey thumbnail's pixels is brighter than its right-hand
neighbour).  Resizing and JPEG re-encoding move only the finest detail, which
neither hash looks at, so a copy's hashes stay within a few bits of its
original's; two different photos are tens of bits apart.  Each hash alone has
rare look-alikes; asking both to agree keeps the rule (data_checks/copies.py)
tight on large sets.

The photo is decoded like every other image (data/images.py: its checks,
EXIF orientation), at JPEG's reduced decode scale where the photo is large:
the thumbnails the hashes need are tiny.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from .images import load_rgb_array

HASH_BITS = 64  # each of the two hashes
_DECODE_AT_LEAST = 64  # pixels a side: the hashes' thumbnails are 32 x 32 and 9 x 8


def fingerprint(path_or_bytes) -> tuple[int, int]:
    """(phash, dhash) of an image file or its bytes, each an unsigned 64-bit integer; BadImage if unusable."""
    import imagehash

    grey = Image.fromarray(load_rgb_array(path_or_bytes, _DECODE_AT_LEAST, _DECODE_AT_LEAST)).convert("L")
    return _as_int(imagehash.phash(grey)), _as_int(imagehash.dhash(grey))


def _as_int(image_hash) -> int:
    """An ImageHash's bits as one integer, first bit highest."""
    return int("".join("1" if bit else "0" for bit in np.asarray(image_hash.hash).ravel()), 2)
