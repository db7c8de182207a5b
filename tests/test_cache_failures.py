"""The bottleneck cache under a hostile machine: a full disk, a read-only cache, a database that is not ours,
and an image that changes while it is read.

Only real corruption may move a cache aside; every other condition is one sentence, and the cache keeps every
good entry.  A full disk and a read-only file system are produced by SQLite itself: the connection the tool
opens is given a page limit (what a full disk looks like to SQLite: SQLITE_FULL), or is opened read-only (what
a read-only mount gives it: SQLITE_CANTOPEN or SQLITE_READONLY).
"""
from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

import pytest
from helpers import make_dataset, the_error, write_photo
from helpers import run_retrain as run

import bottleneck.cache.store as cache_module
import bottleneck.extraction.bottlenecks as bottlenecks_module
from bottleneck.cache.store import DB_NAME, BottleneckCache, cache_error
from bottleneck.errors import EXIT_FAILURE, EXIT_USAGE, UserError

STEPS = 10


def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "out" / "bottlenecks"


def stored(tmp_path: Path) -> dict[tuple, bytes]:
    with sqlite3.connect(cache_dir(tmp_path) / DB_NAME) as con:
        return {(m, d, v): data for m, d, v, _dim, _crc, data in con.execute("SELECT * FROM vectors")}


def files_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def to_compute(log: str) -> tuple[int, int]:
    match = re.search(r"(\d+) bottlenecks cached, \d+ imported, (\d+) to compute", log)
    assert match, log
    return int(match.group(1)), int(match.group(2))


@pytest.fixture
def warm(tmp_path, tiny_module, caplog, capsys):
    """A finished run: its cache is warm and its tool has closed it (no -wal or -shm left)."""
    images = make_dataset(tmp_path / "images", {"red": 6, "green": 6})
    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys)
    assert code == 0, err
    return images


def _connect_with(monkeypatch, setup):
    """Make every connection the tool opens go through ``setup(path, connect_kwargs) -> connection``."""
    real = sqlite3.connect

    def connect(path, *args, **kwargs):
        return setup(real, path, *args, **kwargs)

    monkeypatch.setattr(cache_module.sqlite3, "connect", connect)


def test_a_full_disk_keeps_every_good_entry_and_is_not_damage(tmp_path, tiny_module, caplog, capsys, monkeypatch, warm):
    before = stored(tmp_path)
    for i in range(6):  # new images: their digests and vectors need space the disk no longer has
        write_photo(warm / "blue" / f"new_{i}.jpg", (40, 60, 220), seed=900 + i)

    def full(real, path, *args, **kwargs):
        db = real(path, *args, **kwargs)
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {max(pages, 1)}")  # not one page more: SQLITE_FULL on growth
        return db

    _connect_with(monkeypatch, full)
    code, log, err = run(tmp_path, warm, tiny_module, caplog, capsys)

    assert code == EXIT_FAILURE
    line = the_error(err)
    assert "is full" in line and "left as it was" in line
    assert "damaged" not in log + err
    assert sorted(p.name for p in cache_dir(tmp_path).iterdir() if "damaged" in p.name) == []
    assert stored(tmp_path) == before  # every good entry, byte for byte

    monkeypatch.undo()  # space again: the next run reuses every entry
    code, log, err = run(tmp_path, warm, tiny_module, caplog, capsys)
    assert code == 0, err
    assert to_compute(log) == (len(before), 6)


def _read_only_file_system(monkeypatch):
    """What a read-only mount does to SQLite: the ordinary open fails with SQLITE_CANTOPEN (it cannot create the
    -shm file), statvfs says read-only, and only a read-only, immutable open works."""
    def read_only(real, path, *args, **kwargs):
        if kwargs.get("uri"):
            return real(path, *args, **kwargs)
        return real("file:/no/such/folder/x?mode=ro", uri=True)  # a genuine SQLITE_CANTOPEN

    _connect_with(monkeypatch, read_only)
    monkeypatch.setattr(cache_module, "_read_only", lambda folder: True)


def test_a_warm_cache_on_a_read_only_file_system_is_used_as_it_is(tmp_path, tiny_module, caplog, capsys,
                                                                   monkeypatch, warm):
    before = files_of(cache_dir(tmp_path))
    _read_only_file_system(monkeypatch)

    code, log, err = run(tmp_path, warm, tiny_module, caplog, capsys)

    assert code == 0, err
    assert "read-only file system" in log and to_compute(log) == (12, 0)
    assert files_of(cache_dir(tmp_path)) == before


def test_a_read_only_cache_that_lacks_bottlenecks_is_one_sentence_and_stays_byte_identical(
    tmp_path, tiny_module, caplog, capsys, monkeypatch, warm
):
    write_photo(warm / "red" / "new.jpg", (220, 40, 40), seed=777)
    before = files_of(cache_dir(tmp_path))
    _read_only_file_system(monkeypatch)

    code, log, err = run(tmp_path, warm, tiny_module, caplog, capsys)

    assert code == EXIT_USAGE
    line = the_error(err)
    assert "read-only file system" in line and "--bottleneck_dir" in line
    assert files_of(cache_dir(tmp_path)) == before  # nothing moved aside, nothing added
    assert "damaged" not in log + err


@pytest.mark.parametrize("schema", [
    "CREATE TABLE photos (id INTEGER PRIMARY KEY, name TEXT)",  # another program's database
    "CREATE TABLE vectors (id INTEGER PRIMARY KEY, blob BLOB)",  # our table's name, not our columns
])
def test_a_database_of_another_schema_is_refused_and_left_untouched(tmp_path, tiny_module, caplog, capsys, schema):
    images = make_dataset(tmp_path / "images", {"red": 6, "green": 6})
    folder = cache_dir(tmp_path)
    folder.mkdir(parents=True)
    with sqlite3.connect(folder / DB_NAME) as con:
        con.execute(schema)
        con.execute("INSERT INTO " + schema.split()[2] + " VALUES (1, 'theirs')")
    con.close()
    before = files_of(folder)

    code, log, err = run(tmp_path, images, tiny_module, caplog, capsys)

    assert code == EXIT_USAGE
    line = the_error(err)
    assert "another program" in line and "left untouched" in line
    assert files_of(folder) == before


def test_only_a_malformed_file_is_damage(tmp_path):
    """The classification behind the sentences above, on errors SQLite really raises."""
    path = tmp_path / "c.sqlite3"
    cache = BottleneckCache(tmp_path, "m", 4, log=lambda _m: None)
    cache.close()
    errors = {}
    db = sqlite3.connect(path)
    db.execute("PRAGMA max_page_count = 1")
    with pytest.raises(sqlite3.Error) as exc:
        db.execute("CREATE TABLE grow (x)")
    errors["full"] = exc.value
    db.close()
    ro = sqlite3.connect(f"file:{tmp_path / DB_NAME}?mode=ro", uri=True)
    with pytest.raises(sqlite3.Error) as exc:
        ro.execute("INSERT INTO files VALUES ('p', 1, 1, 'd')")
    errors["read-only"] = exc.value
    ro.close()
    (tmp_path / "junk").write_bytes(b"not a database at all" * 100)
    with pytest.raises(sqlite3.Error) as exc:
        sqlite3.connect(tmp_path / "junk").execute("SELECT * FROM sqlite_master").fetchall()
    errors["junk"] = exc.value

    assert not cache_module._is_damage(errors["full"]) and not cache_module._is_damage(errors["read-only"])
    assert cache_module._is_damage(errors["junk"])
    assert cache_error(errors["full"], path).exit_code == EXIT_FAILURE
    assert cache_error(errors["read-only"], path).exit_code == EXIT_USAGE
    for error in errors.values():
        sentence = str(cache_error(error, path))
        assert sentence.endswith(".") and "\n" not in sentence and str(path) in sentence


def test_a_foreign_database_is_refused_before_anything_is_written(tmp_path):
    path = tmp_path / DB_NAME
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE notes (body TEXT)")
    con.close()
    before = path.read_bytes()
    with pytest.raises(UserError):
        BottleneckCache(tmp_path, "m", 4, log=lambda _m: None)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == [DB_NAME]


# --------------------------------------------------------------------------- a file that changes while it is read


def test_an_image_replaced_between_hashing_and_decoding_is_never_stored_under_its_old_digest(
    tmp_path, tiny_module, caplog, capsys, monkeypatch
):
    images = make_dataset(tmp_path / "images", {"red": 6, "green": 6})
    victim = images / "red" / "img_002.jpg"
    old_digest = hashlib.sha256(victim.read_bytes()).hexdigest()
    real = bottlenecks_module.compute_missing

    def replace_then_compute(*args, **kwargs):  # after hashing, before decoding: another program rewrites it
        write_photo(victim, (40, 200, 60), seed=4242)
        return real(*args, **kwargs)

    monkeypatch.setattr(bottlenecks_module, "compute_missing", replace_then_compute)
    code, log, err = run(tmp_path, images, tiny_module, caplog, capsys)

    assert code == 0, err
    assert "changed while it was being read" in log
    digests = {d for _m, d, _v in stored(tmp_path)}
    assert old_digest not in digests  # the new content's vector is not stored under the old content's key
    assert len(digests) == 11

    monkeypatch.undo()
    new_digest = hashlib.sha256(victim.read_bytes()).hexdigest()
    code, log, err = run(tmp_path, images, tiny_module, caplog, capsys)
    assert code == 0, err
    assert to_compute(log) == (11, 1)  # the next run hashes the new content and stores it under its own key
    digests = {d for _m, d, _v in stored(tmp_path)}
    assert new_digest in digests and old_digest not in digests


def test_a_disk_too_full_to_open_the_cache_is_reported_as_full(tmp_path, monkeypatch):
    """On a full disk SQLite may fail to create the -shm or -wal file (SQLITE_CANTOPEN or SQLITE_IOERR)."""
    with pytest.raises(sqlite3.Error) as exc:
        sqlite3.connect("file:/no/such/folder/x?mode=ro", uri=True)
    monkeypatch.setattr(cache_module, "_disk_full", lambda folder: True)
    error = cache_error(exc.value, tmp_path / DB_NAME)
    assert error.exit_code == EXIT_FAILURE and "is full" in str(error)
