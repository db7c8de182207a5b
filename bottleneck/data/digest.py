"""SHA-256 digests of files and folders, read in chunks so that large files never sit in memory whole."""
from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def file_digest(path) -> str:
    """The hex SHA-256 of a file's bytes."""
    with open(path, "rb") as f:
        return stream_digest(f)


def stream_digest(stream) -> str:
    """The hex SHA-256 of everything left in a binary file object (a local file or one on an object store)."""
    h = hashlib.sha256()
    _update(h, stream)
    return h.hexdigest()


def named_files_digest(named_files) -> str:
    """The hex SHA-256 of each (name, path) pair's name followed by the file's bytes, in the order given."""
    h = hashlib.sha256()
    for name, path in named_files:
        h.update(name.encode())
        with open(path, "rb") as f:
            _update(h, f)
    return h.hexdigest()


def folder_digest(path: Path) -> str:
    """The hex SHA-256 of every file under ``path`` with its relative name, in a fixed order."""
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return named_files_digest((file.relative_to(path).as_posix(), file) for file in files)


def _update(h, stream) -> None:
    while chunk := stream.read(CHUNK):
        h.update(chunk)
