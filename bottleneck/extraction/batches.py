"""Compute missing bottlenecks: decode images in threads while the network runs in batches."""
from __future__ import annotations

import hashlib
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cache.store import BottleneckCache, Entry
from ..data.images import BadImage, load_for_model
from ..model.modules import FeatureModule
from ..model.traced import network_fn

CHANGED_WHILE_READ = "the file changed while it was being read; it will be used on the next run"


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
) -> list[Skipped]:
    """Run every job's image through the module and store the vectors; returns the images skipped.

    With a list of caches, ``features`` returns one output per cache (the
    bottleneck and fine-tuning's activations come from one pass).

    Decoding happens on a thread pool ahead of the network (PIL and TensorFlow
    both release the GIL), so the cores never wait for JPEG decoding.  Every
    batch is committed to the cache as soon as it is computed, so an
    interrupted run keeps all finished batches.
    """
    if not jobs:
        return []
    features = features or network_fn(module)
    caches = cache if isinstance(cache, list) else [cache]
    skipped: list[Skipped] = []
    workers = max(2, os.cpu_count() or 2)

    def decode(job: Job):
        try:
            # Hash the very bytes that are decoded: a file replaced since it was hashed must not store the new
            # content's vector under the old content's key.
            with open(job.path, "rb") as f:
                data = f.read()
            if hashlib.sha256(data).hexdigest() != job.entry.digest:
                return BadImage(CHANGED_WHILE_READ)
            if job.copy is not None:
                return distortion.load(data, job.entry.digest, job.copy, module.height, module.width)
            return load_for_model(data, module.height, module.width)
        except BadImage as exc:
            return exc
        except OSError as exc:  # vanished or unreadable file
            return BadImage(exc.strerror or str(exc))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode") as pool:
        pending: deque = deque()
        queue = iter(jobs)
        ahead = batch_size * 3  # enough decoded images to keep the network busy, bounded memory

        def refill():
            while len(pending) < ahead:
                job = next(queue, None)
                if job is None:
                    return
                pending.append((job, pool.submit(decode, job)))

        refill()
        stacked = None
        while pending:
            batch_jobs, batch_pixels, batch_skipped = [], [], 0
            while pending and len(batch_jobs) < batch_size:
                job, future = pending.popleft()
                result = future.result()
                if isinstance(result, BadImage):
                    skipped.append(Skipped(job.path, str(result)))
                    batch_skipped += 1
                else:
                    batch_jobs.append(job)
                    batch_pixels.append(result)
                refill()
            if batch_jobs:
                # One batch buffer for the whole run: stacking into memory already touched is cheaper, and while
                # the network runs it is the only thing this thread does.
                if stacked is None:
                    stacked = np.empty((batch_size, *batch_pixels[0].shape), np.float32)
                outputs = features(np.stack(batch_pixels, out=stacked[:len(batch_pixels)]))
                outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
                for store, output in zip(caches, outputs, strict=True):
                    # A TensorFlow tensor, or already NumPy (the int8 TFLite model).
                    vectors = np.asarray(output).reshape(len(batch_jobs), -1)
                    store.put([(job.entry, vectors[i]) for i, job in enumerate(batch_jobs)])
            if progress is not None:
                progress(len(batch_jobs) + batch_skipped)
    return skipped

