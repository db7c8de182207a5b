"""Bottleneck shards: the Parquet files that the Beam pipeline writes, and their import into the cache.

Each row holds one image's content key and vector: ``module`` (the module's
identity), ``digest`` (the SHA-256 of the image file) and ``vector`` (float32),
exactly the key and value of the SQLite cache, so a shard written on a cluster
and the local tool agree on what is cached.  Shards are written whole by Beam's
file sinks (temporary files renamed on success), so a shard file that exists is
complete; the import streams them into the cache in ONE transaction and
remembers each imported file by name and size, so importing again is free and
a failure leaves the cache as it was.

Paths may be local or any URL that Apache Beam's FileSystems reads (``gs://``,
``s3://``, ``hdfs://`` where Beam's extras are installed); Beam is imported only
for those.
"""
from __future__ import annotations

import fnmatch
import os
from pathlib import Path

import numpy as np

from ..errors import UserError

SHARD_PATTERN = "bottlenecks-*.parquet"
SKIPPED_PATTERN = "skipped-*.jsonl"
SHARDS_SUBFOLDER = "shards"  # where retrain.py looks under --bottleneck_dir when no shard folder is named
_READ_ROWS = 1024  # rows decoded at a time while streaming a shard


def is_url(path) -> bool:
    return "://" in str(path)


def join(folder, name: str) -> str:
    folder = str(folder)
    return f"{folder.rstrip('/')}/{name}" if is_url(folder) else os.path.join(folder, name)


def list_files(folder, pattern: str) -> list[tuple[str, int]]:
    """(path, size) of the files directly in ``folder`` whose names match ``pattern``, sorted by name."""
    if is_url(folder):
        from apache_beam.io.filesystems import FileSystems

        try:
            found = FileSystems.match([join(folder, pattern)])[0].metadata_list
        except Exception:  # Beam raises its own error types for a missing folder or bucket
            return []
        return sorted((m.path, m.size_in_bytes) for m in found)
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted((str(p), p.stat().st_size) for p in folder.iterdir()
                  if p.is_file() and fnmatch.fnmatch(p.name, pattern))


def open_binary(path):
    if is_url(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.open(path)
    return open(path, "rb")


def read_shard(path, module: str | None = None, columns=("module", "digest", "vector")):
    """Yield pyarrow record batches of a shard, with only the rows of ``module`` when it is given."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with open_binary(path) as f:
        for batch in pq.ParquetFile(f).iter_batches(batch_size=_READ_ROWS, columns=list(columns)):
            if module is not None:
                batch = batch.filter(pc.equal(batch.column("module"), module))
            if batch.num_rows:
                yield batch


def shard_digests(path, module: str) -> list[str]:
    """The content digests of ``module`` held in one shard."""
    return [d for batch in read_shard(path, module, ("module", "digest")) for d in batch.column("digest").to_pylist()]


def shard_vectors(path, module: str, dim: int):
    """Yield (digest, float32 vector) for every row of ``module`` in one shard."""
    for batch in read_shard(path, module):
        vectors = batch.column("vector")
        lengths = np.diff(vectors.offsets.to_numpy())
        if np.any(lengths != dim):
            raise UserError(f"The bottleneck shard '{path}' holds vectors of {int(lengths[lengths != dim][0])} "
                            f"values where the module gives {dim}; it was written for another module.")
        values = vectors.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False).reshape(-1, dim)
        yield from zip(batch.column("digest").to_pylist(), values)


def default_folder(bottleneck_dir) -> str:
    return join(bottleneck_dir, SHARDS_SUBFOLDER)


def import_shards(cache, folder, log=print, required: bool = False) -> int:
    """Import every shard in ``folder`` not imported before into ``cache``; returns how many vectors came in.

    ``required``: the user named the folder, so finding no shard in it is an error.
    """
    files = list_files(folder, SHARD_PATTERN)
    if required and not files:
        raise UserError(f"--bottleneck_shards '{folder}' holds no bottleneck shards ({SHARD_PATTERN}).")
    done = cache.imported_shards()
    new = [(name, size) for name, size in files if done.get(name) != size]
    if not new:
        return 0

    def vectors():
        for name, _size in new:
            yield from shard_vectors(name, cache.module, cache.dim)

    try:
        count = cache.import_shards(vectors(), new)
    except UserError:
        raise
    except Exception as exc:  # pyarrow and the file systems raise many types for an unreadable file
        raise UserError(f"Could not import the bottleneck shards in '{folder}' (nothing was imported): "
                        f"{str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__}.",
                        exit_code=1) from None
    if count:
        log(f"Imported {count} bottlenecks from {len(new)} shard file(s) in {folder}.")
    else:
        log(f"The {len(new)} new shard file(s) in {folder} hold no bottlenecks of this module; they were written "
            "for another module, --bottleneck_layer or --precision (the pipeline's --precision must be the one "
            "this run uses).")
    return count
