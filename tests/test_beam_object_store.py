"""The Beam pipelines against an object store: URLs in, URLs out, as with gs:// or s3://.

The store is a Beam FileSystem of our own, ``fakestore://``, kept in a local
folder but behaving like an object store: no folders, listing by prefix.  Beam
finds it by its scheme, as it finds its GCS or S3 file systems.
"""
from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from apache_beam.io.filesystem import CompressionTypes, FileMetadata, FileSystem
from apache_beam.io.localfilesystem import LocalFileSystem
from helpers import make_dataset, retrain_args

from bottleneck.cache.shards import SHARD_PATTERN, import_shards
from bottleneck.cache.store import BottleneckCache, Entry
from bottleneck.cli.label_image import label_image_main
from bottleneck.cli.retrain import retrain_main
from bottleneck.data.storage import list_files
from bottleneck.model.modules import load_module
from bottleneck.scale_out.beam_bottlenecks import create_bottlenecks, read_skipped

SCHEME = "fakestore"


class FakeStore(FileSystem):
    root = ""  # the local folder that holds the store, set by the fixture

    @classmethod
    def scheme(cls):
        return SCHEME

    def __init__(self, pipeline_options=None):
        super().__init__(pipeline_options)
        self._disk = LocalFileSystem(pipeline_options)

    def _local(self, url: str) -> str:
        return os.path.join(FakeStore.root, url[len(SCHEME) + 3:])

    def join(self, basepath, *paths):
        return "/".join([basepath.rstrip("/"), *(p.strip("/") for p in paths)])

    def split(self, path):
        head, _, tail = path.rstrip("/").rpartition("/")
        return head, tail

    def mkdirs(self, path):
        pass  # an object store has no folders

    def has_dirs(self):
        return False

    def _list(self, prefix):
        for dirpath, _dirs, files in os.walk(FakeStore.root):
            for name in files:
                local = os.path.join(dirpath, name)
                url = f"{SCHEME}://" + os.path.relpath(local, FakeStore.root)
                if url.startswith(prefix):
                    yield FileMetadata(url, os.path.getsize(local), os.path.getmtime(local))

    def create(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        os.makedirs(os.path.dirname(self._local(path)), exist_ok=True)
        return self._disk.create(self._local(path), mime_type, compression_type)

    def open(self, path, mime_type="application/octet-stream", compression_type=CompressionTypes.AUTO):
        return self._disk.open(self._local(path), mime_type, compression_type)

    def copy(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            os.makedirs(os.path.dirname(self._local(destination)), exist_ok=True)
            shutil.copyfile(self._local(source), self._local(destination))

    def rename(self, source_file_names, destination_file_names):
        for source, destination in zip(source_file_names, destination_file_names):
            os.makedirs(os.path.dirname(self._local(destination)), exist_ok=True)
            os.replace(self._local(source), self._local(destination))

    def exists(self, path):
        return os.path.isfile(self._local(path))

    def size(self, path):
        return os.path.getsize(self._local(path))

    def last_updated(self, path):
        return os.path.getmtime(self._local(path))

    def checksum(self, path):
        return str(self.size(path))

    def metadata(self, path):
        return FileMetadata(path, self.size(path), self.last_updated(path))

    def delete(self, paths):
        for path in paths:
            local = self._local(path)
            if os.path.isdir(local):
                shutil.rmtree(local)
            elif os.path.exists(local):
                os.remove(local)


@pytest.fixture
def store(tmp_path):
    FakeStore.root = str(tmp_path / "store")
    os.makedirs(FakeStore.root)
    yield tmp_path / "store"
    FakeStore.root = ""


def test_bottlenecks_and_classification_from_and_into_an_object_store(store, tiny_module, tmp_path, caplog, capsys):
    images = make_dataset(store / "photos", {"red": 4, "green": 4, "blue": 4})
    (images / "red" / ".hidden.jpg").write_bytes(b"hidden files are not images")
    (images / "loose.jpg").write_bytes((images / "red" / "img_000.jpg").read_bytes())  # not in a class folder
    (images / "blue" / "notes.jpg").write_bytes(b"plain text")
    module = load_module(str(tiny_module), None)

    outcome = create_bottlenecks(f"{SCHEME}://photos", f"{SCHEME}://shards", module, batch_size=4, log=print)
    assert (outcome.listed, outcome.computed, outcome.skipped) == (13, 12, 1)
    assert [r["path"] for r in read_skipped(f"{SCHEME}://shards")] == [f"{SCHEME}://photos/blue/notes.jpg"]
    assert list_files(f"{SCHEME}://shards", SHARD_PATTERN)

    # The same vectors as from the same images on a local disk.
    local = create_bottlenecks(images, tmp_path / "local-shards", module, batch_size=4, log=print)
    assert local.computed == 12
    vectors = {}
    for name, folder in (("store", f"{SCHEME}://shards"), ("disk", tmp_path / "local-shards")):
        cache = BottleneckCache(tmp_path / f"cache-{name}", module.identity, module.bottleneck_size)
        assert import_shards(cache, folder, log=print) == 12
        digests = sorted(cache.stored_digests())
        vectors[name] = (digests, cache.matrix([Entry(d) for d in digests]))
        cache.close()
    assert vectors["store"][0] == vectors["disk"][0]
    assert np.abs(vectors["store"][1] - vectors["disk"][1]).max() <= 1e-5

    # retrain.py reads the shards from the store by URL.
    flags = retrain_args(tmp_path / "train", images, tiny_module, f"--bottleneck_shards={SCHEME}://shards",
                         "--precision=float32", steps=20)
    with caplog.at_level("INFO", logger="retrain"):
        assert retrain_main(flags) == 0
    assert "Imported 12 bottlenecks from" in caplog.text

    # label_image.py classifies the store's images into shards on the store, as it does local files.
    out = tmp_path / "train" / "out"
    flags = [f"--graph={out / 'graph.pb'}", f"--labels={out / 'labels.txt'}", "--output_format=csv", "--top_k=1"]
    capsys.readouterr()
    assert label_image_main([*flags, str(images / "red"), str(images / "blue")]) == 2  # notes.jpg is not an image
    local = sorted(capsys.readouterr().out.splitlines()[1:])
    assert label_image_main([*flags, f"--beam_output={SCHEME}://rows", f"{SCHEME}://photos/red",
                             f"{SCHEME}://photos/blue"]) == 2
    rows = [line for path, _size in list_files(f"{SCHEME}://rows", "predictions-*.csv")
            for line in (store / path[len(SCHEME) + 3:]).read_text().splitlines()[1:]]
    as_local = sorted(row.replace(f"{SCHEME}://photos", str(images)) for row in rows)
    assert [row.split(",")[0] for row in as_local] == [row.split(",")[0] for row in local]
    assert [row.split(",")[1] for row in as_local] == [row.split(",")[1] for row in local]  # the same labels
