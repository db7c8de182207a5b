"""The tool's own bottleneck cache, filled for a benchmark: every image's plain bottleneck of one block of the
built-in network, the missing ones computed as retrain.py computes them."""
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
def filled_cache(model_dir, bottleneck_dir, top: str, paths):
    """Yield a FilledCache for the network ending at ``top`` with every one of ``paths`` cached; closed after."""
    module = load_module(BUILTIN_MODULE, model_dir, top_block=top)
    cache = BottleneckCache(bottleneck_dir, module.identity, module.bottleneck_size)
    try:
        digest_of, unreadable = cache.digests(paths)
        assert not unreadable, unreadable
        present = cache.present([Entry(d) for d in digest_of.values()])
        jobs = [Job(Entry(d), path) for path, d in digest_of.items() if Entry(d) not in present]
        started = time.perf_counter()
        compute_missing(module, jobs, cache)
        yield FilledCache(module, cache, digest_of, len(jobs), time.perf_counter() - started)
    finally:
        cache.close()
