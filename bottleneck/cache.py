"""The bottleneck cache: one SQLite file in --bottleneck_dir.

Why SQLite: each batch of vectors is committed in one transaction, so a run
killed at any moment (even SIGKILL) leaves only complete entries; several runs
may share the directory at once (WAL mode, writers take turns); and training
reads every vector it needs in one query instead of one file open per image.

Entries are keyed by the SHA-256 of the image *content* plus the module's
identity (weights and preprocessing), so an edited image is recomputed while a
renamed or moved one is reused.  Each vector carries its length and a CRC32:
a damaged entry is detected on read, dropped and recomputed.  Hashing every
file on every run would be slow for big folders, so a second table remembers
each path's digest together with its size and modification time.
"""
from __future__ import annotations

import os
import sqlite3
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .digest import file_digest
from .errors import UserError

DB_NAME = "bottlenecks.sqlite3"
PLAIN = ""  # the variant of an undistorted image
_SCHEMA = """
CREATE TABLE IF NOT EXISTS vectors (
    module TEXT NOT NULL, digest TEXT NOT NULL, variant TEXT NOT NULL,
    dim INTEGER NOT NULL, crc INTEGER NOT NULL, data BLOB NOT NULL,
    PRIMARY KEY (module, digest, variant)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL, digest TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS imported_shards (
    module TEXT NOT NULL, name TEXT NOT NULL, size INTEGER NOT NULL, PRIMARY KEY (module, name)
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Entry:
    digest: str
    variant: str = PLAIN


def _path_key(path) -> str:
    """The absolute path as SQLite text; bytes that are not UTF-8 are written as \\xNN escapes."""
    return os.fsencode(os.path.abspath(path)).decode("utf-8", "backslashreplace")


def encode_vector(vector: np.ndarray, dtype: str = "<f4") -> tuple[int, int, bytes]:
    data = np.ascontiguousarray(vector, dtype=dtype).tobytes()
    return len(vector), zlib.crc32(data), data


def decode_vector(dim: int, crc: int, data: bytes, expected_dim: int, dtype: str = "<f4") -> np.ndarray | None:
    """The stored vector, or None when the entry is damaged in any way."""
    if dim != expected_dim or len(data) != np.dtype(dtype).itemsize * expected_dim or zlib.crc32(data) != crc:
        return None
    return np.frombuffer(data, dtype=dtype)


class BottleneckCache:
    """Cached bottleneck vectors of one module, in ``<bottleneck_dir>/bottlenecks.sqlite3``.

    ``dtype`` is how vectors are stored: float32 for bottlenecks; fine-tuning's
    much larger activation grids are kept as float16 (the identity names it).
    """

    def __init__(self, directory, module_identity: str, dim: int, log=print, dtype: str = "<f4"):
        self.directory = Path(directory)
        self.module = module_identity
        self.dim = dim
        self.dtype = dtype
        self.log = log
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise UserError(f"Cannot create --bottleneck_dir '{self.directory}': {exc.strerror}.") from None
        self.path = self.directory / DB_NAME
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        try:
            db = self._connect()
            db.execute("SELECT count(*) FROM vectors LIMIT 1").fetchone()
            return db
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
                raise UserError(f"The bottleneck cache '{self.path}' stayed locked by another run.") from None
            # A damaged database file: keep it for inspection, start a new one.
            aside = self.path.with_name(f"{DB_NAME}.damaged-{int(time.time())}")
            os.replace(self.path, aside)
            self.log(f"The bottleneck cache {self.path} was damaged ({exc}); moved to {aside.name} and rebuilt.")
            return self._connect()

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=600, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: a crash loses at most the last commit, never corrupts
        db.executescript(_SCHEMA)
        return db

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ digests

    def digests(self, paths: list[Path]) -> tuple[dict[Path, str], dict[Path, str]]:
        """Content digests of ``paths`` (and why some could not be read).

        Only files whose size or modification time changed since the last run are re-hashed.
        """
        known = {}
        for path, size, mtime, digest in self._db.execute("SELECT path, size, mtime_ns, digest FROM files"):
            known[path] = (size, mtime, digest)
        digests, errors, fresh = {}, {}, []
        for path in paths:
            key = _path_key(path)
            try:
                st = os.stat(path)
                hit = known.get(key)
                if hit and hit[0] == st.st_size and hit[1] == st.st_mtime_ns:
                    digests[path] = hit[2]
                    continue
                digest = file_digest(path)
            except OSError as exc:  # vanished, unreadable, or a device that cannot be read
                errors[path] = exc.strerror or str(exc)
                continue
            digests[path] = digest
            fresh.append((key, st.st_size, st.st_mtime_ns, digest))
        if fresh:
            with self._transaction():
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", fresh)
        return digests, errors

    # ------------------------------------------------------------ vectors

    def present(self, entries: list[Entry]) -> set[Entry]:
        """Which entries have a sound stored vector (damaged ones are dropped here)."""
        wanted = set(entries)
        found, damaged = set(), []
        rows = self._db.execute("SELECT digest, variant, dim, crc, data FROM vectors WHERE module = ?", (self.module,))
        for digest, variant, dim, crc, data in rows:
            entry = Entry(digest, variant)
            if entry not in wanted:
                continue
            if decode_vector(dim, crc, data, self.dim, self.dtype) is None:
                damaged.append(entry)
            else:
                found.add(entry)
        if damaged:
            self.log(f"{len(damaged)} damaged bottleneck cache entries will be recomputed.")
            with self._transaction():
                self._db.executemany(
                    "DELETE FROM vectors WHERE module = ? AND digest = ? AND variant = ?",
                    [(self.module, e.digest, e.variant) for e in damaged],
                )
        return found

    def put(self, items: list[tuple[Entry, np.ndarray]]) -> None:
        """Store vectors in one transaction: all of them land, or none."""
        rows = []
        for entry, vector in items:
            if vector.shape != (self.dim,) or not np.all(np.isfinite(vector)):
                raise ValueError(f"bad bottleneck for {entry}: shape {vector.shape}")
            rows.append((self.module, entry.digest, entry.variant, *encode_vector(vector, self.dtype)))
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?, ?)", rows)

    def stored_digests(self) -> set[str]:
        """The digests of every image with a stored plain (undistorted) vector."""
        rows = self._db.execute("SELECT digest FROM vectors WHERE module = ? AND variant = ?", (self.module, PLAIN))
        return {digest for (digest,) in rows}

    def imported_shards(self) -> dict[str, int]:
        """Shard files already imported for this module: name -> size."""
        rows = self._db.execute("SELECT name, size FROM imported_shards WHERE module = ?", (self.module,))
        return dict(rows)

    def import_shards(self, vectors, shards: list[tuple[str, int]]) -> int:
        """Store an iterable of (digest, vector) and record ``shards`` as imported, in ONE transaction.

        The vectors are streamed into the database, so the import needs no memory for them; a bad
        vector or a failed read rolls everything back, leaving the cache as it was.  Returns how many
        vectors were stored (a key stored twice is replaced, so a repeated import changes nothing).
        """
        count = 0

        def rows():
            nonlocal count
            for digest, vector in vectors:
                if vector.shape != (self.dim,) or not np.all(np.isfinite(vector)):
                    raise ValueError(f"bad bottleneck for {digest}: shape {vector.shape}")
                count += 1
                yield (self.module, digest, PLAIN, *encode_vector(vector, self.dtype))

        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?, ?)", rows())
            self._db.executemany("INSERT OR REPLACE INTO imported_shards VALUES (?, ?, ?)",
                                 [(self.module, name, size) for name, size in shards])
        return count

    def matrix(self, entries: list[Entry], dtype=np.float32) -> np.ndarray:
        """Vectors for ``entries`` as one [len(entries), dim] array, read in a single pass."""
        return self.matrices([(entries, dtype)])[0]

    def matrices(self, requests: list[tuple[list[Entry], type]], outs=None) -> list[np.ndarray]:
        """One [len(entries), dim] array per (entries, dtype) request, all filled in a single pass over the cache.

        ``outs`` are arrays to fill instead of new ones (anything that takes ``out[i] = vector``).
        """
        rows_of: dict[Entry, list[tuple[int, int]]] = {}
        for r, (entries, _dtype) in enumerate(requests):
            for i, entry in enumerate(entries):
                rows_of.setdefault(entry, []).append((r, i))
        if outs is None:
            outs = [np.empty((len(entries), self.dim), dtype=dtype) for entries, dtype in requests]
        filled = [np.zeros(len(entries), dtype=bool) for entries, _dtype in requests]
        cursor = self._db.execute("SELECT digest, variant, dim, crc, data FROM vectors WHERE module = ?",
                                  (self.module,))
        for digest, variant, dim, crc, data in cursor:
            places = rows_of.get(Entry(digest, variant))
            if places is None:
                continue
            vector = decode_vector(dim, crc, data, self.dim, self.dtype)
            if vector is None:
                continue
            for r, i in places:
                outs[r][i] = vector
                filled[r][i] = True
        missing = [entries[i] for (entries, _d), f in zip(requests, filled) for i in np.flatnonzero(~f)]
        if missing:
            raise RuntimeError(f"{len(missing)} bottlenecks are missing from the cache, e.g. {missing[:3]}")
        return outs

    def fetch(self, entries: list[Entry], dtype=np.float32) -> np.ndarray:
        """Vectors for a few ``entries`` by key: for reading a batch at a time when the whole set is too big."""
        out = np.empty((len(entries), self.dim), dtype=dtype)
        query = "SELECT dim, crc, data FROM vectors WHERE module = ? AND digest = ? AND variant = ?"
        for i, entry in enumerate(entries):
            row = self._db.execute(query, (self.module, entry.digest, entry.variant)).fetchone()
            vector = None if row is None else decode_vector(*row, self.dim, self.dtype)
            if vector is None:
                raise RuntimeError(f"{entry} is missing from the cache or was damaged while in use")
            out[i] = vector
        return out

    def _transaction(self):
        return _Transaction(self._db)


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on error; waits its turn behind other writers."""

    def __init__(self, db):
        self.db = db

    def __enter__(self):
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, exc_type, *_):
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        return False


def import_classic_text(cache: BottleneckCache, candidates: list[tuple[Entry, list[Path]]]) -> int:
    """Import vectors from the classic script's ``<image>_<module>.txt`` files where they exist.

    ``candidates`` pairs each missing entry with the text-file paths the classic
    script would have used for it.  Returns how many entries were imported.
    """
    imported = []
    for entry, paths in candidates:
        for path in paths:
            if not path.is_file():
                continue
            try:
                values = np.array([float(v) for v in path.read_text().strip().split(",")], dtype=np.float32)
            except (ValueError, OSError, UnicodeDecodeError):
                continue  # the classic script would have recomputed a bad file too
            if values.shape == (cache.dim,) and np.all(np.isfinite(values)):
                imported.append((entry, values))
                break
    if imported:
        cache.put(imported)
    return len(imported)

