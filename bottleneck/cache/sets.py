"""Assemble the training, validation and test sets from the cache: one matrix of bottlenecks per set.

Rows come in one fixed order (class by class, image by image as the split
lists them), so that a seeded run samples the same batches every time.  With
distortions, the training set has one row per distorted copy of each image;
validation and test images are never distorted.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.split import SETS, ClassSplit
from .rowstore import DiskRows
from .store import PLAIN, BottleneckCache, Entry

# Above this many bytes of float32 training vectors, hold them as float16 to bound memory.
FLOAT16_ABOVE_BYTES = 1 << 30
# Above this many bytes of vectors in all sets, keep them in a temporary file beside the cache and read
# each batch from it (the same values, so the same training).
IN_MEMORY_BYTES = 2 << 30


@dataclass
class SplitData:
    """Bottlenecks of one set, with the class index and source of each row."""

    x: np.ndarray  # [N, D], float32 (float16 for very large sets, to bound memory)
    y: np.ndarray  # [N] int32
    names: list[str]  # image paths, for reports


def set_entries(splits: list[ClassSplit], digest_of, distortion=None, copies: int = 0):
    """set name -> (cache entries, class indices, image paths), in one fixed order.

    With a ``distortion`` and ``copies`` > 0, training images stand for their distorted copies.
    """
    sets = {}
    for set_name in SETS:
        entries, ys, paths = [], [], []
        for index, split in enumerate(splits):
            for image in split.of(set_name):
                digest = digest_of[image.path]
                distorted = distortion is not None and copies > 0 and set_name == "training"
                variants = [distortion.variant(c) for c in range(copies)] if distorted else [PLAIN]
                entries += [Entry(digest, v) for v in variants]
                ys += [index] * len(variants)
                paths += [str(image.path)] * len(variants)
        sets[set_name] = (entries, np.asarray(ys, dtype=np.int32), paths)
    return sets


def load_sets(cache: BottleneckCache, splits: list[ClassSplit], digest_of, dim: int,
              distortion=None, copies: int = 0) -> dict[str, SplitData]:
    """The bottlenecks of every set, read in one pass over the cache."""
    return _read(cache, set_entries(splits, digest_of, distortion, copies), dim)


def load_trained_and_plain(cache: BottleneckCache, splits: list[ClassSplit], digest_of, dim: int,
                           distortion=None, copies: int = 0) -> tuple[dict[str, SplitData], dict[str, SplitData]]:
    """The sets as trained on (training images as their distorted copies) and every image as it is, in one
    pass over the cache: validation and test images are never distorted, so both share those matrices."""
    plain = set_entries(splits, digest_of)
    if not copies:
        sets = _read(cache, plain, dim)
        return sets, sets
    sets = _read(cache, {**plain, "distorted": set_entries(splits, digest_of, distortion, copies)["training"]}, dim)
    distorted = sets.pop("distorted")
    return {**sets, "training": distorted}, sets


def _read(cache: BottleneckCache, sets: dict, dim: int) -> dict[str, SplitData]:
    requests = [(entries, np.float16 if len(entries) * dim * 4 > FLOAT16_ABOVE_BYTES else np.float32)
                for entries, _ys, _paths in sets.values()]
    outs = None
    if sum(len(entries) * dim * np.dtype(dtype).itemsize for entries, dtype in requests) > IN_MEMORY_BYTES:
        outs = [DiskRows(len(entries), dim, dtype, cache.directory) for entries, dtype in requests]
    matrices = cache.matrices(requests, outs)
    return {s: SplitData(x=m, y=sets[s][1], names=sets[s][2]) for s, m in zip(sets, matrices)}
