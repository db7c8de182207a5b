"""Perceptual fingerprints of image contents, kept by content digest in ``<bottleneck_dir>/fingerprints.sqlite3``.

A fingerprint (data/perceptual.py) depends on the image's content alone, not on
the network, its precision or its layer, so one table serves every run over the
same images, and a second run fingerprints only the images that are new.  It
lives in a file of its own beside the bottleneck cache, whose schema stays as
it is.  The store only saves time: a folder that cannot hold it (read-only,
missing, locked by another run for long) means the fingerprints are computed
again, never that the run fails.
"""
from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

DB_NAME = "fingerprints.sqlite3"
KIND = "phash64+dhash64"  # what a row holds: another kind of fingerprint would be stored beside it, never mixed
_SCHEMA = """
CREATE TABLE IF NOT EXISTS fingerprints (
    kind TEXT NOT NULL, digest TEXT NOT NULL, phash INTEGER NOT NULL, dhash INTEGER NOT NULL,
    PRIMARY KEY (kind, digest)
) WITHOUT ROWID;
"""
_WAIT_S = 30  # for another run's write; then this run goes on without the store
_CHUNK = 500  # digests looked up at a time


def _signed(value: int) -> int:
    """SQLite's integers are signed 64-bit: an unsigned hash is stored as the signed number of the same bits."""
    return value - (1 << 64) if value >= 1 << 63 else value


def _unsigned(value: int) -> int:
    return value + (1 << 64) if value < 0 else value


class FingerprintStore:
    """Fingerprints by content digest; every method does nothing (or finds nothing) when the store cannot be used."""

    def __init__(self, directory):
        self._db = None
        if directory is None or not Path(directory).is_dir():
            return
        try:
            db = sqlite3.connect(Path(directory) / DB_NAME, timeout=_WAIT_S, isolation_level=None)
            try:
                db.execute("PRAGMA journal_mode=WAL")
                db.executescript(_SCHEMA)
            except sqlite3.Error:
                db.close()
                raise
        except sqlite3.Error:
            return
        self._db = db

    def get(self, digests) -> dict[str, tuple[int, int]]:
        """The stored fingerprints of ``digests``."""
        found: dict[str, tuple[int, int]] = {}
        if self._db is None:
            return found
        wanted = sorted(set(digests))
        try:
            for start in range(0, len(wanted), _CHUNK):
                part = wanted[start:start + _CHUNK]
                rows = self._db.execute(
                    f"SELECT digest, phash, dhash FROM fingerprints WHERE kind = ? AND digest IN "
                    f"({', '.join('?' * len(part))})", (KIND, *part))
                found.update((digest, (_unsigned(p), _unsigned(d))) for digest, p, d in rows)
        except sqlite3.Error:
            return {}
        return found

    def put(self, fingerprints: dict[str, tuple[int, int]]) -> None:
        """Store ``fingerprints`` (digest -> (phash, dhash)) in one transaction, or not at all."""
        if self._db is None or not fingerprints:
            return
        rows = [(KIND, digest, _signed(p), _signed(d)) for digest, (p, d) in fingerprints.items()]
        try:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany("INSERT OR REPLACE INTO fingerprints VALUES (?, ?, ?, ?)", rows)
            self._db.execute("COMMIT")
        except sqlite3.Error:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
