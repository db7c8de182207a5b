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

import contextlib
import functools
import os
import sqlite3
import time
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..data.digest import file_digest
from ..data.names import utf8_text
from ..errors import EXIT_FAILURE, EXIT_USAGE, UserError

DB_NAME = "bottlenecks.sqlite3"
PLAIN = ""  # the variant of an undistorted image
# Imported vectors within this share of the held one's largest value are the same vector: the network's float
# rounding differs with batch size and threads, a different image or network differs by far more.
SAME_VECTOR_TOLERANCE = 1e-3
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

# Our tables and their columns: a database holding anything else is not a bottleneck cache.
_TABLES = {
    "vectors": ("module", "digest", "variant", "dim", "crc", "data"),
    "files": ("path", "size", "mtime_ns", "digest"),
    "imported_shards": ("module", "name", "size"),
}
# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_IOERR, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_CANTOPEN, _SQLITE_NOTADB = 10, 11, 13, 14, 26
_IMPORT_CHUNK = 500  # imported vectors looked up and stored at a time (SQLite allows 32,766 parameters)


def _code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def _is_damage(exc: sqlite3.Error) -> bool:
    """Only a malformed file is damage; a full disk, a read-only mount or a lock are not."""
    return _code(exc) in (_SQLITE_CORRUPT, _SQLITE_NOTADB)


def cache_error(exc: sqlite3.Error, path: Path) -> UserError:
    """One sentence for a cache that cannot be used right now; the file itself is never touched."""
    code, kept = _code(exc), "the cache was left as it was"
    folder = Path(path).parent
    if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return UserError(f"The bottleneck cache '{path}' stayed locked by another run.")
    if code == _SQLITE_FULL or (code in (_SQLITE_IOERR, _SQLITE_CANTOPEN) and _disk_full(folder)):
        return UserError(f"The disk holding the bottleneck cache '{path}' is full; free some space and run again "
                         f"({kept}).", exit_code=EXIT_FAILURE)
    if code in (_SQLITE_READONLY, _SQLITE_CANTOPEN, _SQLITE_PERM):
        why = "it is on a read-only file system" if _read_only(folder) else f"{exc}"
        return UserError(f"The bottleneck cache '{path}' cannot be opened for writing ({why}); point "
                         f"--bottleneck_dir at a writable folder ({kept}).", exit_code=EXIT_USAGE)
    if code == _SQLITE_CORRUPT or code == _SQLITE_NOTADB:
        return UserError(f"The bottleneck cache '{path}' was found damaged while in use ({exc}); the next run "
                         "moves it aside and rebuilds it.", exit_code=EXIT_FAILURE)
    return UserError(f"The bottleneck cache '{path}' could not be read or written ({exc}); {kept}.",
                     exit_code=EXIT_FAILURE)


def _disk_full(folder: Path) -> bool:
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _read_only(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _missing_tables(db: sqlite3.Connection, path: Path) -> bool:
    """True when our tables still need creating; UserError for a database of another schema."""
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    foreign = sorted(t for t in tables if t not in _TABLES and not t.startswith("sqlite_"))
    wrong = sorted(t for t in tables & _TABLES.keys()
                   if tuple(row[1] for row in db.execute(f"PRAGMA table_info({t})")) != _TABLES[t])
    if foreign or wrong:
        shown = ", ".join(foreign + wrong)
        raise UserError(f"'{path}' is an SQLite database of another program (tables {shown}), not a bottleneck "
                        "cache; it was left untouched: point --bottleneck_dir at another folder.")
    return tables != _TABLES.keys()


def _connect(path: Path) -> sqlite3.Connection:
    """A read-write connection to the cache file, its tables created where missing.

    A database of another program raises UserError before anything is written to it.  WAL lets several
    runs share the file (writers take turns); WAL + NORMAL: a crash loses at most the last commit, never
    corrupts.  The closing read finds a damaged vectors table now rather than halfway through a run.
    """
    db = sqlite3.connect(path, timeout=600, isolation_level=None)
    try:
        missing = _missing_tables(db, path)  # reads only: a foreign database stays untouched
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if missing:
            db.executescript(_SCHEMA)
        db.execute("SELECT count(*) FROM vectors LIMIT 1").fetchone()
    except BaseException:
        db.close()
        raise
    return db


def _reporting(method):
    """SQLite errors of a cache operation become one sentence (the transaction is rolled back)."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except sqlite3.Error as exc:
            raise cache_error(exc, self.path) from None

    return wrapper


@dataclass(frozen=True)
class Entry:
    digest: str
    variant: str = PLAIN


def is_sound(vector: np.ndarray, dim: int) -> bool:
    """A vector fit to store: ``dim`` values, every one finite."""
    return vector.shape == (dim,) and bool(np.all(np.isfinite(vector)))


def unsound_reason(vector: np.ndarray, dim: int) -> str:
    """Why ``vector`` is not fit to store (``is_sound`` is false): its shape, or values that are not numbers."""
    if vector.shape != (dim,):
        return f"shape {vector.shape} where {dim} values belong"
    return f"{int(np.sum(~np.isfinite(vector)))} of its values are NaN or infinite"


def same_vector(held: np.ndarray, other: np.ndarray) -> bool:
    """Two vectors of one image, equal but for float rounding (another batch size or thread count)."""
    return bool(np.max(np.abs(held - other)) <= SAME_VECTOR_TOLERANCE * max(1.0, float(np.max(np.abs(held)))))


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
        self.read_only = False
        self._db = self._open()

    def _open(self) -> sqlite3.Connection:
        """Connect, refusing a database that is not ours and moving aside only one that is really damaged.

        A full disk, a read-only file system or a lock are conditions of the machine, not damage: they
        are reported in one sentence and the file is left exactly as it was.
        """
        try:
            return _connect(self.path)
        except sqlite3.Error as exc:
            cannot_write = _code(exc) in (_SQLITE_READONLY, _SQLITE_CANTOPEN)
            if cannot_write and self.path.is_file() and _read_only(self.directory):
                return self._open_read_only(exc)
            if not _is_damage(exc):
                raise cache_error(exc, self.path) from None
            damage = exc
        # A damaged database file: keep it for inspection, start a new one.
        aside = self.path.with_name(f"{DB_NAME}.damaged-{int(time.time())}")
        try:
            os.replace(self.path, aside)
        except OSError as exc:
            raise UserError(
                f"The bottleneck cache '{self.path}' is damaged ({damage}) and cannot be moved aside "
                f"({exc.strerror}); move or delete it, then run again.", exit_code=EXIT_FAILURE,
            ) from None
        for suffix in ("-wal", "-shm"):  # the damaged file's journal must not be replayed into the new one
            with contextlib.suppress(OSError):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        self.log(f"The bottleneck cache {self.path} was damaged ({damage}); moved to {aside.name} and rebuilt.")
        try:
            return _connect(self.path)
        except sqlite3.Error as exc:
            raise cache_error(exc, self.path) from None

    def _open_read_only(self, why: sqlite3.Error) -> sqlite3.Connection:
        """A cache on a read-only file system is used as it is: a warm one serves every vector it holds.

        ``immutable`` is what lets SQLite read a WAL database without creating its -shm file; nobody can
        write the file while its file system is read-only.  Writing is refused later, in one sentence.
        """
        try:
            db = sqlite3.connect(f"{self.path.absolute().as_uri()}?mode=ro&immutable=1", uri=True,
                                 isolation_level=None)
            if _missing_tables(db, self.path):
                db.close()
                raise cache_error(why, self.path)
            db.execute("SELECT count(*) FROM vectors LIMIT 1").fetchone()
        except sqlite3.Error as exc:
            raise cache_error(exc, self.path) from None
        self.read_only = True
        self.log(f"The bottleneck cache {self.path} is on a read-only file system: it is only read, so every "
                 "bottleneck this run needs must be in it already.")
        return db

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------ digests

    @_reporting
    def digests(self, paths: list[Path]) -> tuple[dict[Path, str], dict[Path, str]]:
        """Content digests of ``paths`` (and why some could not be read).

        Only files whose size or modification time changed since the last run are re-hashed.
        """
        known = {}
        for path, size, mtime, digest in self._db.execute("SELECT path, size, mtime_ns, digest FROM files"):
            known[path] = (size, mtime, digest)
        digests, errors, fresh = {}, {}, []
        for path in paths:
            key = utf8_text(os.path.abspath(path))  # SQLite text: bytes that are not UTF-8 as \xNN escapes
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
        if fresh and not self.read_only:  # the memo only saves hashing time: a read-only cache goes without
            with self._transaction():
                self._db.executemany("INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?)", fresh)
        return digests, errors

    # ------------------------------------------------------------ vectors

    @_reporting
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
        if damaged and not self.read_only:
            self.log(f"{len(damaged)} damaged bottleneck cache entries will be recomputed.")
            with self._transaction():
                self._db.executemany(
                    "DELETE FROM vectors WHERE module = ? AND digest = ? AND variant = ?",
                    [(self.module, e.digest, e.variant) for e in damaged],
                )
        return found

    @_reporting
    def put(self, items: list[tuple[Entry, np.ndarray]]) -> None:
        """Store vectors in one transaction: all of them land, or none."""
        if self.read_only:
            raise UserError(f"The bottleneck cache '{self.path}' is on a read-only file system and lacks bottlenecks "
                            "this run needs; point --bottleneck_dir at a writable folder (the cache was left as it "
                            "was).")
        rows = [self._row(entry, entry.digest, entry.variant, vector) for entry, vector in items]
        with self._transaction():
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?, ?)", rows)

    def _row(self, what, digest: str, variant: str, vector: np.ndarray) -> tuple:
        """The table row of one vector; ValueError (naming ``what``) for a vector this cache must not hold."""
        if not is_sound(vector, self.dim):
            raise ValueError(f"bad bottleneck for {what}: {unsound_reason(vector, self.dim)}")
        return (self.module, digest, variant, *encode_vector(vector, self.dtype))

    def stored_digests(self) -> set[str]:
        """The digests of every image with a stored plain (undistorted) vector."""
        rows = self._db.execute("SELECT digest FROM vectors WHERE module = ? AND variant = ?", (self.module, PLAIN))
        return {digest for (digest,) in rows}

    def imported_shards(self) -> dict[str, int]:
        """Shard files already imported for this module: name -> size."""
        rows = self._db.execute("SELECT name, size FROM imported_shards WHERE module = ?", (self.module,))
        return dict(rows)

    def import_shards(self, vectors, shards: list[tuple[str, int]]) -> tuple[int, list[tuple[str, str]]]:
        """Store an iterable of (digest, vector, source) and record ``shards`` as imported, in ONE transaction.

        The vectors are streamed into the database a chunk at a time, so the import needs little memory; a
        bad vector or a failed read rolls everything back, leaving the cache as it was.  A vector the cache
        already holds is never replaced: an equal one (``same_vector``) changes nothing, and a different one
        is not stored but returned as a conflict, (digest, source), so that the caller says so.  Of two
        imported vectors for one digest the first stays, the same way.  Returns (vectors stored, conflicts).
        """
        count, conflicts = 0, []

        def store(chunk):
            nonlocal count
            held = self._held_vectors([digest for digest, _vector, _source in chunk])
            rows = []
            for digest, vector, source in chunk:
                row = self._row(digest, digest, PLAIN, vector)
                if digest in held:
                    if not same_vector(held[digest], vector):
                        conflicts.append((digest, source))
                    continue
                held[digest] = vector
                rows.append(row)
            self._db.executemany("INSERT OR REPLACE INTO vectors VALUES (?, ?, ?, ?, ?, ?)", rows)
            count += len(rows)

        with self._transaction():
            chunk = []
            for item in vectors:
                chunk.append(item)
                if len(chunk) == _IMPORT_CHUNK:
                    store(chunk)
                    chunk = []
            store(chunk)
            self._db.executemany("INSERT OR REPLACE INTO imported_shards VALUES (?, ?, ?)",
                                 [(self.module, name, size) for name, size in shards])
        return count, conflicts

    def _held_vectors(self, digests: list[str]) -> dict[str, np.ndarray]:
        """The sound plain vectors the cache holds for ``digests`` (a damaged entry may be replaced)."""
        held = {}
        unique = sorted(set(digests))
        for start in range(0, len(unique), _IMPORT_CHUNK):
            part = unique[start:start + _IMPORT_CHUNK]
            rows = self._db.execute(
                f"SELECT digest, dim, crc, data FROM vectors WHERE module = ? AND variant = ? AND digest IN "
                f"({', '.join('?' * len(part))})", (self.module, PLAIN, *part))
            for digest, dim, crc, data in rows:
                vector = decode_vector(dim, crc, data, self.dim, self.dtype)
                if vector is not None:
                    held[digest] = vector
        return held

    def matrix(self, entries: list[Entry], dtype=np.float32) -> np.ndarray:
        """Vectors for ``entries`` as one [len(entries), dim] array, read in a single pass."""
        return self.matrices([(entries, dtype)])[0]

    @_reporting
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

    @_reporting
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
        if exc_type is None:
            self.db.execute("COMMIT")
        elif self.db.in_transaction:  # SQLite may have rolled back already (a full disk does)
            with contextlib.suppress(sqlite3.Error):
                self.db.execute("ROLLBACK")
        return False

