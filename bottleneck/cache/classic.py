"""Vectors left by the classic retrain.py: its ``<image>_<module>.txt`` files, imported into the cache.

The classic script kept one text file of comma-separated values per image and
module.  Where such a file is found for an image the cache lacks, its vector is
used instead of running the network again; a file that cannot be read or holds
the wrong number of values is ignored, as the classic script would have
recomputed it too.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .store import BottleneckCache, Entry, is_sound


def import_classic_text(cache: BottleneckCache, candidates: list[tuple[Entry, list[Path]]]) -> int:
    """Import vectors from the classic script's ``<image>_<module>.txt`` files where they exist.

    ``candidates`` pairs each missing entry with the text-file paths the classic
    script would have used for it.  Returns how many entries were imported.
    """
    imported = []
    for entry, paths in candidates:
        for path in paths:
            try:
                # A long image name plus the module suffix can pass the file system's name limit (ENAMETOOLONG):
                # the classic script could not have written such a file, so there is nothing to import.
                if not path.is_file():
                    continue
            except OSError:
                continue
            try:
                values = np.array([float(v) for v in path.read_text().strip().split(",")], dtype=np.float32)
            except (ValueError, OSError, UnicodeDecodeError):
                continue  # the classic script would have recomputed a bad file too
            if is_sound(values, cache.dim):
                imported.append((entry, values))
                break
    if imported:
        cache.put(imported)
    return len(imported)

