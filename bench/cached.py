"""The tool's own bottleneck cache, filled for a benchmark: every image's plain bottleneck of a feature module (one
block of the built-in network, or it at a precision), the missing ones computed as retrain.py computes them."""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass

from bottleneck.cache.store import BottleneckCache, Entry
from bottleneck.extraction.batches import Job, compute_missing
from bottleneck.model.modules import BUILTIN_MODULE, FeatureModule, load_module


@dataclass
class FilledCache:
    module: FeatureModule
    cache: BottleneckCache  # open while the ``with`` block lasts
    digest_of: dict  # path -> content digest
    computed: int  # bottlenecks that were missing and computed now
    seconds: float  # their computation


@contextlib.contextmanager
def filled_cache(module: FeatureModule, bottleneck_dir, paths, make_features=None):
    """Yield a FilledCache for ``module`` with every one of ``paths`` cached; closed after.  ``make_features``
    builds the function that computes the missing ones (a precision's runner, which may take a conversion to
    build, so only when one is missing); without it, the module's own."""
    cache = BottleneckCache(bottleneck_dir, module.identity, module.bottleneck_size)
    try:
        digest_of, unreadable = cache.digests(paths)
        assert not unreadable, unreadable
        present = cache.present([Entry(d) for d in digest_of.values()])
        jobs = [Job(Entry(d), path) for path, d in digest_of.items() if Entry(d) not in present]
        started = time.perf_counter()
        if jobs:
            compute_missing(module, jobs, cache, features=make_features() if make_features else None)
        yield FilledCache(module, cache, digest_of, len(jobs), time.perf_counter() - started)
    finally:
        cache.close()


def builtin_block(model_dir, top: str) -> FeatureModule:
    """The built-in network ending at ``top``."""
    return load_module(BUILTIN_MODULE, model_dir, top_block=top)
