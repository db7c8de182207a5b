"""The images the data checks look at: every readable image of every set, with its plain bottleneck."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..data.split import SETS


@dataclass
class AllImages:
    """One row per readable image of every set, with its plain (undistorted) bottleneck."""

    x: np.ndarray  # [N, D]
    y: np.ndarray  # [N] class index of the folder
    paths: list[str]
    sets: list[str]  # "training", "validation" or "testing"
    digests: list[str]

    @classmethod
    def from_sets(cls, sets: dict, digest_of: dict) -> AllImages:
        """From each set's plain (undistorted) SplitData and the content digest of each path."""
        by_name = {str(path): digest for path, digest in digest_of.items()}
        xs, ys, paths, set_names = [], [], [], []
        for name in SETS:
            data = sets[name]
            xs.append(data.x)
            ys.append(data.y)
            paths += list(data.names)
            set_names += [name] * len(data.y)
        x = np.concatenate(xs) if xs else np.zeros((0, 0), np.float32)
        return cls(x, np.concatenate(ys).astype(np.int64), paths, set_names, [by_name[p] for p in paths])
