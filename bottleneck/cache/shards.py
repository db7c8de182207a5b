"""Bottleneck shards: the Parquet files that the Beam pipeline writes, and their import into the cache.

Each row holds one image's content key and vector: ``module`` (the module's
identity), ``digest`` (the SHA-256 of the image file) and ``vector`` (float32),
exactly the key and value of the SQLite cache, so a shard written on a cluster
and the local tool agree on what is cached.  Shards are written whole by Beam's
file sinks (temporary files renamed on success), so a shard file that exists is
complete; the import streams them into the cache in ONE transaction and
remembers each imported file by name and size, so importing again is free and
a failure leaves the cache as it was.

An imported vector never replaces a different one: where the cache already
holds an image's vector, or an earlier shard gave it one, that vector stays,
and each shard that disagrees is named with the image's digest in a warning.
A shard with vectors of the wrong length or with NaN or infinite values is
refused, naming the shard and what is wrong with it.

Beside the shards, the pipeline's skipped records (``skipped-*.jsonl``) give
the digest of every content it could not decode; ``undecodable`` reads them,
so that a run skips that content instead of trying it again.

Paths may be local or any URL that data/storage.py reads (``gs://``, ``s3://``,
``hdfs://`` where Beam's extras are installed).
"""
from __future__ import annotations

import json

import numpy as np

from ..console.notes import bounded
from ..data.storage import join, list_files, open_binary, read_bytes
from ..errors import UserError, first_line

SHARD_PATTERN = "bottlenecks-*.parquet"
SKIPPED_PATTERN = "skipped-*.jsonl"
UNDECODABLE_DIGEST = "undecodable_digest"  # a skipped record's field: the digest of content that cannot be decoded
SHARDS_SUBFOLDER = "shards"  # where retrain.py looks under --bottleneck_dir when no shard folder is named
_READ_ROWS = 1024  # rows decoded at a time while streaming a shard


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
        digests = batch.column("digest").to_pylist()
        broken = np.flatnonzero(~np.isfinite(values).all(axis=1))
        if len(broken):
            raise UserError(f"The bottleneck shard '{path}' holds {len(broken)} vector(s) with NaN or infinite "
                            f"values (the first for image content {digests[broken[0]]}); nothing was imported: "
                            "delete the shard and run beam-bottlenecks again.")
        yield from zip(digests, values)


def undecodable(folder) -> dict[str, str]:
    """The content digests that the pipeline's skipped records in ``folder`` found undecodable -> the reason."""
    found = {}
    for path, _size in list_files(folder, SKIPPED_PATTERN):
        try:
            lines = read_bytes(path).decode("utf-8", "replace").splitlines()
        except OSError:
            continue  # a record that cannot be read only means that its images are tried again
        for line in lines:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get(UNDECODABLE_DIGEST), str):
                found[record[UNDECODABLE_DIGEST]] = str(record.get("reason", "it cannot be decoded"))
    return found


def default_folder(bottleneck_dir) -> str:
    return join(bottleneck_dir, SHARDS_SUBFOLDER)


def import_shards(cache, folder, log=print, required: bool = False, warn=None) -> int:
    """Import every shard in ``folder`` not imported before into ``cache``; returns how many vectors came in.

    ``required``: the user named the folder, so finding no shard in it is an error.  ``warn`` (``log`` when not
    given) names each shard whose vector for an image differs from the one the cache kept.
    """
    warn = warn or log
    files = list_files(folder, SHARD_PATTERN)
    if required and not files:
        raise UserError(f"--bottleneck_shards '{folder}' holds no bottleneck shards ({SHARD_PATTERN}).")
    done = cache.imported_shards()
    new = [(name, size) for name, size in files if done.get(name) != size]
    if not new:
        return 0

    seen = 0

    def vectors():
        nonlocal seen
        for name, _size in new:
            for digest, vector in shard_vectors(name, cache.module, cache.dim):
                seen += 1
                yield digest, vector, name

    try:
        count, conflicts = cache.import_shards(vectors(), new)
    except UserError:
        raise
    except Exception as exc:  # pyarrow and the file systems raise many types for an unreadable file
        raise UserError(f"Could not import the bottleneck shards in '{folder}' (nothing was imported): "
                        f"{first_line(exc)}.", exit_code=1) from None
    lines = [f"The shard '{name}' holds another vector for the image content {digest} than the cache; the "
             "cache's vector was kept." for digest, name in conflicts]
    for line in bounded(lines, "shards' vectors that differ from the cache's"):
        warn(line)
    if conflicts:
        warn(f"Kept {len(conflicts)} vector(s) that the cache already held where shards gave different ones "
             "(computed with other settings, or damaged); delete those shards if the cache is right.")
    if seen:
        held = seen - count - len(conflicts)
        log(f"Imported {count} bottlenecks from {len(new)} shard file(s) in {folder}"
            + (f" ({held} the cache held already)." if held else "."))
    else:
        log(f"The {len(new)} new shard file(s) in {folder} hold no bottlenecks of this module; they were written "
            "for another module, --bottleneck_layer or --precision (the pipeline's --precision must be the one "
            "this run uses).")
    return count
