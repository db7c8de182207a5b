"""The bottleneck cache: keyed by content, damage detected, classic text files imported."""
import sqlite3

import numpy as np
import pytest
from helpers import TINY_DIM, make_dataset, retrain_args, write_photo

from bottleneck.cache.store import DB_NAME, BottleneckCache, Entry
from bottleneck.cli.retrain import retrain_main
from bottleneck.model.modules import classic_module_name


def _to_compute(log: str) -> int:
    line = next(line for line in log.splitlines() if "to compute." in line)
    return int(line.split(" imported, ")[1].split(" to compute")[0])


def _run(tmp_path, images, module, caplog, *extra):
    caplog.clear()
    assert retrain_main(retrain_args(tmp_path, images, module, *extra, steps=10)) == 0
    return caplog.text


@pytest.fixture
def cached_run(tmp_path, tiny_module, caplog):
    caplog.set_level("INFO", logger="retrain")
    images = make_dataset(tmp_path / "images", 6)
    assert _to_compute(_run(tmp_path, images, tiny_module, caplog)) == 18
    return images


def _vectors(tmp_path):
    with sqlite3.connect(tmp_path / "out" / "bottlenecks" / DB_NAME) as db:
        return dict(((d, v), data) for d, v, data in db.execute("SELECT digest, variant, data FROM vectors"))


def test_renamed_and_moved_images_reuse_their_bottlenecks(tmp_path, tiny_module, caplog, cached_run):
    images = cached_run
    (images / "red" / "img_000.jpg").rename(images / "red" / "renamed.jpg")
    (images / "green" / "sub").mkdir()
    (images / "green" / "img_001.jpg").rename(images / "green" / "sub" / "moved.jpg")
    assert _to_compute(_run(tmp_path, images, tiny_module, caplog)) == 0


def test_an_edited_image_is_recomputed(tmp_path, tiny_module, caplog, cached_run):
    images = cached_run
    write_photo(images / "red" / "img_000.jpg", (10, 200, 10), seed=4242)  # same name, new content
    assert _to_compute(_run(tmp_path, images, tiny_module, caplog)) == 1


def test_a_damaged_entry_is_detected_and_recomputed(tmp_path, tiny_module, caplog, cached_run):
    images = cached_run
    before = _vectors(tmp_path)
    db_path = tmp_path / "out" / "bottlenecks" / DB_NAME
    with sqlite3.connect(db_path) as db:
        (digest,) = db.execute("SELECT digest FROM vectors LIMIT 1").fetchone()
        db.execute("UPDATE vectors SET data = substr(data, 1, 40) WHERE digest = ?", (digest,))  # truncated
        (other,) = db.execute("SELECT digest FROM vectors WHERE digest != ? LIMIT 1", (digest,)).fetchone()
        flipped = bytearray(before[(other, "")])
        flipped[5] ^= 0xFF  # same length, one corrupt byte: caught by the CRC
        db.execute("UPDATE vectors SET data = ? WHERE digest = ?", (bytes(flipped), other))
    log = _run(tmp_path, images, tiny_module, caplog)
    assert "2 damaged bottleneck cache entries will be recomputed" in log
    assert _to_compute(log) == 2
    after = _vectors(tmp_path)
    assert after.keys() == before.keys()
    for key in before:  # recomputed to the same values (to float rounding: batch size changes the sums' order)
        np.testing.assert_allclose(np.frombuffer(after[key], "<f4"), np.frombuffer(before[key], "<f4"), atol=1e-5)


def test_a_damaged_database_file_is_set_aside_and_rebuilt(tmp_path, tiny_module, caplog, cached_run):
    images = cached_run
    db_path = tmp_path / "out" / "bottlenecks" / DB_NAME
    for suffix in ("-wal", "-shm"):
        db_path.with_name(DB_NAME + suffix).unlink(missing_ok=True)
    db_path.write_bytes(b"this is not a database" * 100)
    log = _run(tmp_path, images, tiny_module, caplog)
    assert "was damaged" in log and _to_compute(log) == 18
    assert list(db_path.parent.glob(DB_NAME + ".damaged-*"))


def test_classic_text_bottlenecks_are_imported(tmp_path, tiny_module, caplog):
    """Users migrating from the classic script keep <bottleneck_dir>/<class>/<image>_<module>.txt."""
    caplog.set_level("INFO", logger="retrain")
    images = make_dataset(tmp_path / "images", 4)
    # Compute true vectors once, elsewhere, and write them the way the classic script did.
    elsewhere = tmp_path / "first"
    assert retrain_main(retrain_args(elsewhere, images, tiny_module, steps=5)) == 0
    truth = _vectors(elsewhere)
    bottleneck_dir = tmp_path / "out" / "bottlenecks"
    suffix = classic_module_name(str(tiny_module))
    from bottleneck.data.digest import file_digest

    for path in sorted(images.rglob("*.jpg"))[:7]:
        vector = np.frombuffer(truth[(file_digest(path), "")], dtype="<f4")
        text = bottleneck_dir / path.parent.name / f"{path.name}_{suffix}.txt"
        text.parent.mkdir(parents=True, exist_ok=True)
        text.write_text(",".join(str(float(v)) for v in vector))
    log = _run(tmp_path, images, tiny_module, caplog)
    assert "Imported 7 bottlenecks from the classic script's text files." in log
    assert _to_compute(log) == 12 - 7
    for key, data in _vectors(tmp_path).items():
        np.testing.assert_allclose(np.frombuffer(data, "<f4"), np.frombuffer(truth[key], "<f4"), rtol=1e-6)


def test_matrix_reads_everything_in_one_pass_and_handles_repeats(tmp_path):
    cache = BottleneckCache(tmp_path, "module-x", TINY_DIM)
    vectors = {f"d{i}": np.full(TINY_DIM, i, np.float32) for i in range(50)}
    cache.put([(Entry(d), v) for d, v in vectors.items()])
    wanted = [Entry("d3"), Entry("d7"), Entry("d3")]
    m = cache.matrix(wanted)
    assert m.shape == (3, TINY_DIM) and list(m[:, 0]) == [3, 7, 3]
    assert cache.matrix(wanted, dtype=np.float16).dtype == np.float16
    other = BottleneckCache(tmp_path, "module-y", TINY_DIM)  # another module's vectors never leak in
    assert other.present([Entry("d3")]) == set()
    with pytest.raises(RuntimeError, match="missing"):
        other.matrix([Entry("d3")])
