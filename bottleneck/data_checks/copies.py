"""Copies of one photo: images whose perceptual fingerprints agree (data/perceptual.py).

Bottleneck similarity (duplicates.py) answers "looks like the same kind of
thing", which finds near scenes; among a class of look-alike photos it cannot
tell a resized copy from a neighbour.  A fingerprint answers "is the same
photo": two images are copies when at most ``PHASH_MAX_BITS`` of their 64
DCT-hash bits and at most ``DHASH_MAX_BITS`` of their 64 difference-hash bits
differ.

Measured on flower_photos_dev (bench/near_duplicates.py, docs/data-report.md):
copies resized to 50-90 % and re-encoded at JPEG quality 60-90 stay well
within both limits, and every pair of the set's own photos that the rule
flags is one photograph twice (re-encoded, recoloured, greyed, cropped).

Fingerprints are kept by content digest (cache/fingerprints.py), so only new
images are decoded, on every core.  The search is faiss's exhaustive binary
index over the DCT hashes (a range search: every pair within the radius, by
popcount), then the difference-hash condition.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..cache.fingerprints import FingerprintStore
from ..data.decoding import usable_cores
from ..data.images import BadImage
from ..data.perceptual import fingerprint
from .all_images import AllImages

log = logging.getLogger("retrain")

PHASH_MAX_BITS = 8
DHASH_MAX_BITS = 12
_SEARCH_ROWS = 8192  # fingerprints searched at a time


def is_copy(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether two fingerprints are those of one photo (``(phash, dhash)`` each)."""
    return bin(a[0] ^ b[0]).count("1") <= PHASH_MAX_BITS and bin(a[1] ^ b[1]).count("1") <= DHASH_MAX_BITS


def fingerprints(images: AllImages, store_dir) -> dict[str, tuple[int, int]]:
    """The fingerprint of every distinct content of ``images`` (digest -> (phash, dhash)): from the store in
    ``store_dir``, or computed from the first file of that content and stored.  A file that can no longer be
    decoded has none; its images keep the bottleneck rule only."""
    path_of: dict[str, str] = {}
    for path, digest in zip(images.paths, images.digests):
        path_of.setdefault(digest, path)
    store = FingerprintStore(store_dir)
    try:
        found = store.get(path_of)
        missing = [digest for digest in path_of if digest not in found]
        if missing:
            started = time.perf_counter()
            with ThreadPoolExecutor(max_workers=usable_cores()) as pool:
                computed = dict(zip(missing, pool.map(lambda digest: _fingerprint_or_none(path_of[digest]),
                                                      missing)))
            computed = {digest: value for digest, value in computed.items() if value is not None}
            store.put(computed)
            found.update(computed)
            log.info("Fingerprinted %d images for the copy check (%.1f s).", len(computed),
                     time.perf_counter() - started)
    finally:
        store.close()
    return found


def _fingerprint_or_none(path):
    try:
        return fingerprint(path)
    except (BadImage, OSError):  # changed or gone since its bottleneck was made
        return None


def close_pairs(codes: np.ndarray) -> list[tuple[int, int]]:
    """Pairs (i < j) of rows of ``codes`` ([N, 2] unsigned 64-bit: phash, dhash) that are copies by ``is_copy``."""
    import faiss

    n = len(codes)
    if n < 2:
        return []
    codes = np.ascontiguousarray(codes, dtype=np.uint64)
    # faiss compares bytes: the big-endian bytes of each hash, so a byte's bits are the hash's bits.
    phash = codes[:, 0].astype(">u8").view(np.uint8).reshape(n, 8)
    dhash = codes[:, 1].astype(">u8").view(np.uint8).reshape(n, 8)
    index = faiss.IndexBinaryFlat(64)
    index.add(phash)
    pairs = []
    for start in range(0, n, _SEARCH_ROWS):
        limits, _distances, found = index.range_search(phash[start:start + _SEARCH_ROWS], PHASH_MAX_BITS + 1)
        rows = start + np.repeat(np.arange(len(limits) - 1), np.diff(limits).astype(np.int64))
        keep = rows < found
        rows, found = rows[keep], found[keep]
        bits = np.unpackbits(dhash[rows] ^ dhash[found], axis=1).sum(axis=1)
        keep = bits <= DHASH_MAX_BITS
        pairs += zip(rows[keep].tolist(), found[keep].tolist())
    return sorted(pairs)


def copy_rule() -> dict:
    """The rule as summary.json states it."""
    return {"phash_max_bits": PHASH_MAX_BITS, "dhash_max_bits": DHASH_MAX_BITS}
