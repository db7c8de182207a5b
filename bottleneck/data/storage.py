"""Files at a local path or at a URL of an object store: list, read, copy, write.

A URL is any path with a scheme (``gs://``, ``s3://``, ``hdfs://``), read and
written through Apache Beam's FileSystems where Beam's extras for it are
installed; Beam is imported only by the functions that reach it, so local work
never loads it.  Shards, the pipelines' inputs and outputs and their staged
models all go through here, so a path means the same thing everywhere.
"""
from __future__ import annotations

import fnmatch
import os
import shutil
import tempfile
from pathlib import Path

COPY_CHUNK = 1 << 20


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


def files_under(url: str) -> list[str]:
    """Every file below the URL ``url``, at any depth: an object store lists by prefix, it has no folders."""
    from apache_beam.io.filesystems import FileSystems

    return [meta.path for meta in FileSystems.match([url.rstrip("/") + "/**"])[0].metadata_list]


def open_binary(path):
    if is_url(path):
        from apache_beam.io.filesystems import FileSystems

        return FileSystems.open(path)
    return open(path, "rb")


def read_bytes(path) -> bytes:
    with open_binary(path) as f:
        return f.read()


def exists(path: str) -> bool:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


def write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` under a temporary name renamed at the end, so no reader sees half of it."""
    from apache_beam.io.filesystems import FileSystems

    temporary = path + ".part"
    with FileSystems.create(temporary) as out:
        out.write(data)
    FileSystems.rename([temporary], [path])


def copy_folder(local: Path, dest: str) -> None:
    """Copy every file under the local folder ``local`` to the folder ``dest`` (local or a URL)."""
    from apache_beam.io.filesystems import FileSystems

    for file in sorted(p for p in local.rglob("*") if p.is_file()):
        target = join(dest, file.relative_to(local).as_posix())
        if not is_url(target):
            Path(target).parent.mkdir(parents=True, exist_ok=True)
        with open(file, "rb") as src, FileSystems.create(target) as out:
            shutil.copyfileobj(src, out, COPY_CHUNK)


def local_folder(uri: str) -> str:
    """A local path holding the folder ``uri``: itself when local, else a copy in a new temporary folder."""
    if not is_url(uri):
        return uri
    local = Path(tempfile.mkdtemp(prefix="retrain-model-"))
    prefix = uri.rstrip("/") + "/"
    for path in files_under(uri):
        target = local / path[len(prefix):]
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_binary(path) as src, open(target, "wb") as out:
            shutil.copyfileobj(src, out, COPY_CHUNK)
    return str(local)


def local_file(uri: str) -> str:
    """A local path holding the file ``uri``: itself when local, else a copy in a new temporary folder."""
    if not is_url(uri):
        return uri
    target = Path(tempfile.mkdtemp(prefix="retrain-model-")) / uri.rstrip("/").rsplit("/", 1)[-1]
    with open_binary(uri) as src, open(target, "wb") as out:
        shutil.copyfileobj(src, out, COPY_CHUNK)
    return str(target)
