"""Importing Beam's bottleneck shards into the cache: a vector the cache holds is never silently replaced by a
different one, two shards that disagree about one image are reported, and a shard of broken vectors is refused
for what is wrong with it.
"""
from __future__ import annotations

import numpy as np
import pytest

from bottleneck.cache.shards import import_shards
from bottleneck.cache.store import BottleneckCache, Entry
from bottleneck.errors import UserError

MODULE, DIM = "tiny-module", 4


def write_shard(path, rows):
    """A shard as the pipeline writes it: one row per (digest, vector)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.schema([("module", pa.string()), ("digest", pa.string()), ("vector", pa.list_(pa.float32()))])
    table = pa.table({"module": [MODULE] * len(rows), "digest": [d for d, _v in rows],
                      "vector": [np.asarray(v, np.float32).tolist() for _d, v in rows]}, schema=schema)
    pq.write_table(table, path)
    return path


def vector(value):
    return np.full(DIM, value, np.float32)


@pytest.fixture
def cache(tmp_path):
    cache = BottleneckCache(tmp_path / "cache", MODULE, DIM)
    yield cache
    cache.close()


def stored(cache, digest):
    return cache.matrix([Entry(digest)])[0]


def test_a_shard_never_silently_replaces_a_different_vector_that_the_cache_holds(cache, tmp_path):
    cache.put([(Entry("d-held"), vector(1.0)), (Entry("d-same"), vector(3.0))])
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "bottlenecks-1-00000-of-00001.parquet",
                [("d-held", vector(2.0)), ("d-same", vector(3.0)), ("d-new", vector(4.0))])
    lines = []

    count = import_shards(cache, shards, log=lines.append)

    assert count == 1  # only the new image's vector came in
    np.testing.assert_array_equal(stored(cache, "d-held"), vector(1.0))
    np.testing.assert_array_equal(stored(cache, "d-new"), vector(4.0))
    disagreeing = [line for line in lines if "d-held" in line]
    assert len(disagreeing) == 1 and "bottlenecks-1-00000-of-00001.parquet" in disagreeing[0]
    assert any(line.startswith("Kept 1 vector") for line in lines), lines
    assert not any("d-same" in line for line in lines)  # an equal vector is no conflict


def test_of_two_shards_that_disagree_about_one_image_the_first_is_kept_and_the_other_named(cache, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "bottlenecks-20260101T000000Z-aaaaaa-00000-of-00001.parquet", [("photo", vector(1.0))])
    write_shard(shards / "bottlenecks-20260102T000000Z-bbbbbb-00000-of-00001.parquet", [("photo", vector(5.0))])
    lines = []

    assert import_shards(cache, shards, log=lines.append) == 1

    np.testing.assert_array_equal(stored(cache, "photo"), vector(1.0))
    named = [line for line in lines if "photo" in line]
    assert len(named) == 1 and "bbbbbb" in named[0], lines


def test_a_shard_of_nan_vectors_is_refused_for_its_values_not_its_shape(cache, tmp_path):
    shards = tmp_path / "shards"
    shards.mkdir()
    write_shard(shards / "bottlenecks-1-00000-of-00001.parquet", [("good", vector(1.0)), ("bad", vector(np.nan))])

    with pytest.raises(UserError) as refused:
        import_shards(cache, shards, log=lambda _line: None)

    message = str(refused.value)
    assert "shape" not in message and "NaN" in message and "bottlenecks-1-00000-of-00001.parquet" in message
    assert cache.stored_digests() == set()  # nothing was imported
