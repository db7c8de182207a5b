"""SHA-256 digests of files and folders, read in chunks so that large files never sit in memory whole."""
from __future__ import annotations

import hashlib
from pathlib import Path

CHUNK = 1 << 20


def file_digest(path) -> str:
    """The hex SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    _update(h, path)
    return h.hexdigest()


def folder_digest(path: Path) -> str:
    """The hex SHA-256 of every file under ``path`` with its relative name, in a fixed order."""
    h = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        h.update(file.relative_to(path).as_posix().encode())
        _update(h, file)
    return h.hexdigest()


def _update(h, path) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
