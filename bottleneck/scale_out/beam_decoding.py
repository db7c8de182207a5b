"""Decoding for the pipelines on the local runner: one pool of worker processes, shared by the runner's threads.

Which workers decode a pipeline's images depends on the runner:

* A cluster's runner decodes in many processes already: Dataflow starts one
  Python SDK process per vCPU of each worker machine, Flink and Spark as many
  as ``--sdk_worker_parallelism`` says, and each decodes its own elements.
  Decoding there scales with the processes the runner starts, and a pool
  inside each would only compete with the others for the same cores, so the
  pipelines decode each element where it is, as they always did.
* The local runner (no ``--runner``) runs every step on threads of this one
  process, so that one copy of the model is in memory; its decoding meets the
  GIL exactly as a thread pool does.  Where data/decoding.py would choose
  processes (cores enough, images enough), the pipelines gather their images
  into lists and decode each list through one DecodingPool of this process,
  which the runner's threads take turns on; everywhere else they decode per
  element on the runner's threads.

The pool is made on first use and closed by ``close_pools`` when the pipeline
has run (its workers also end by themselves when this process does).
"""
from __future__ import annotations

import threading

from ..data.decoding import AUTO, PROCESSES, DecodingPool, Workers, choose_workers

# Images per list that one of the runner's threads decodes at a time, per worker process: enough for every
# worker to have several while the list's last images are decoded.
IMAGES_PER_WORKER = 4

_lock = threading.Lock()
_pools: dict[tuple, tuple[DecodingPool, threading.Lock]] = {}


def local_workers(beam_args, images: int, kind: str = AUTO) -> Workers | None:
    """The worker processes that decode for a pipeline on the local runner; None where the pipeline's own
    workers decode each element (a cluster's runner, or threads chosen)."""
    if any(arg == "--runner" or arg.startswith("--runner=") for arg in beam_args):
        return None
    workers = choose_workers(kind, images)
    return workers if workers.kind == PROCESSES else None


def list_size(workers: Workers) -> int:
    """How many images a pipeline gathers into one list for the pool."""
    return IMAGES_PER_WORKER * workers.count


def decode_list(decoder, height: int, width: int, workers: Workers, tasks: list) -> list:
    """Each task's pixels (a copy, the pool's buffers being reused) or the reason it cannot be decoded, in order,
    through this process's pool for ``decoder``."""
    key = (decoder, height, width, workers)
    with _lock:
        if key not in _pools:
            batch = max(1, list_size(workers) // 4)
            _pools[key] = (DecodingPool(decoder, height, width, batch, workers), threading.Lock())
        pool, turn = _pools[key]
    outcome: list = [None] * len(tasks)
    with turn:  # one list at a time: the pool decodes it on every worker
        for batch in pool.batches(tasks):
            for row, position in enumerate(batch.decoded):
                outcome[position] = batch.pixels[row].copy()
            for position, reason in batch.failed:
                outcome[position] = reason
    return outcome


def close_pools() -> None:
    """End every pool this process made for a pipeline."""
    with _lock:
        pools = list(_pools.values())
        _pools.clear()
    for pool, _turn in pools:
        pool.close()
