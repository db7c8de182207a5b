"""Compute missing bottlenecks: images decoded on every core (data/decoding.py) while the network runs in batches."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache.store import BottleneckCache, Entry
from ..data.decoding import AUTO, DecodingPool, FileDecoder, FileTask, Workers, choose_workers
from ..model.modules import FeatureModule
from ..model.traced import network_fn


@dataclass(frozen=True)
class Skipped:
    path: Path
    reason: str


@dataclass(frozen=True)
class Job:
    entry: Entry
    path: Path
    copy: int | None = None  # a distorted copy's number; None for the image itself


def compute_missing(
    module: FeatureModule,
    jobs: list[Job],
    cache: BottleneckCache | list[BottleneckCache],
    batch_size: int = 32,
    progress=None,
    features=None,
    distortion=None,
    workers: Workers | str = AUTO,
) -> list[Skipped]:
    """Run every job's image through the module and store the vectors; returns the images skipped.

    With a list of caches, ``features`` returns one output per cache (the
    bottleneck and fine-tuning's activations come from one pass).

    Images are decoded ahead of the network by ``workers`` (a choice of
    data/decoding.py, or its name: auto, threads, processes) straight into
    batch buffers, so the network never waits for decoding while cores are
    free.  Every batch is committed to the cache as soon as it is computed, so
    an interrupted run keeps all finished batches.
    """
    if not jobs:
        return []
    features = features or network_fn(module)
    caches = cache if isinstance(cache, list) else [cache]
    if isinstance(workers, str):
        workers = choose_workers(workers, len(jobs))
    skipped: list[Skipped] = []
    # The file's digest goes with it: the very bytes decoded are checked against the key they are stored under.
    tasks = [FileTask(str(job.path), job.entry.digest, job.copy) for job in jobs]
    decoder = FileDecoder(module.height, module.width, distortion)
    with DecodingPool(decoder, module.height, module.width, batch_size, workers) as pool:
        for batch in pool.batches(tasks):
            skipped += [Skipped(jobs[position].path, reason) for position, reason in batch.failed]
            if batch.decoded:
                outputs = features(batch.pixels)
                outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                for store, output in zip(caches, outputs, strict=True):
                    # A TensorFlow tensor, or already NumPy (the int8 TFLite model).
                    vectors = np.asarray(output).reshape(len(batch.decoded), -1)
                    store.put([(jobs[position].entry, vectors[i]) for i, position in enumerate(batch.decoded)])
            if progress is not None:
                progress(len(batch.decoded) + len(batch.failed))
    return skipped
