"""Names and images under hostile input: one class name in two Unicode forms, over-long image names, a class
folder that is a link to another, every JPEG extension and phone photos, files left out (counted by reason),
JPEGs whose data ends early, and a thousand tiny classes (bounded warnings, a proportionate summary.json)."""
from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import time
import unicodedata

import numpy as np
import pytest
from helpers import make_dataset, the_error, write_photo
from helpers import run_retrain as run
from PIL import Image

from bottleneck.cache.classic import import_classic_text
from bottleneck.cache.store import BottleneckCache, Entry
from bottleneck.data import images as images_module
from bottleneck.data.images import BadImage, load_for_model, missing_rows
from bottleneck.data.walk import label_for_folder

STEPS = 10




def stored_count(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "out" / "bottlenecks" / "bottlenecks.sqlite3") as con:
        return con.execute("SELECT count(*) FROM vectors").fetchone()[0]


def found(log: str) -> tuple[int, int]:
    match = re.search(r"Found (\d+) images in (\d+) classes", log)
    assert match, log
    return int(match.group(1)), int(match.group(2))


# --------------------------------------------------------------------------- Unicode forms


def test_an_accented_name_gives_one_label_in_nfc_and_nfd():
    nfc, nfd = unicodedata.normalize("NFC", "Café Crème"), unicodedata.normalize("NFD", "Café Crème")
    assert nfc != nfd
    assert label_for_folder(nfc) == label_for_folder(nfd) == "café crème"


def test_the_same_class_name_in_nfc_and_nfd_is_a_reported_collision(tmp_path, tiny_module, caplog, capsys):
    root = tmp_path / "images"
    make_dataset(root, {"red": 4})
    for form, colour in (("NFC", (40, 200, 60)), ("NFD", (40, 60, 220))):
        for i in range(4):
            write_photo(root / unicodedata.normalize(form, "café") / f"{i}.jpg", colour, seed=50 + i)
    code, log, err = run(tmp_path, root, tiny_module, caplog, capsys)
    assert code == 2
    line = the_error(err)
    assert "two Unicode forms" in line and "'café'" in line
    assert "Found " not in log


# --------------------------------------------------------------------------- over-long names


def test_classic_text_import_survives_names_longer_than_the_file_system_allows(tmp_path):
    cache = BottleneckCache(tmp_path / "bn", "m", 4, log=lambda _m: None)
    try:
        long_name = "x" * 245 + ".jpg"  # + "_inception_v3.txt" passes 255 bytes: ENAMETOOLONG
        candidates = [(Entry("d" * 64), [tmp_path / "bn" / "red" / f"{long_name}_inception_v3.txt"])]
        assert import_classic_text(cache, candidates) == 0
    finally:
        cache.close()


def test_an_image_name_of_250_bytes_is_used(tmp_path, tiny_module, caplog, capsys):
    root = make_dataset(tmp_path / "images", {"red": 5, "green": 5})
    write_photo(root / "red" / ("é" * 123 + ".jpg"), (220, 40, 40), seed=99)  # 250 bytes in UTF-8
    code, log, err = run(tmp_path, root, tiny_module, caplog, capsys)
    assert code == 0, err
    assert found(log) == (11, 2) and stored_count(tmp_path) == 11


# --------------------------------------------------------------------------- a class folder that is a link


def test_a_class_folder_linking_to_another_class_is_left_out_and_reported(tmp_path, tiny_module, caplog, capsys):
    root = make_dataset(tmp_path / "images", {"red": 5, "green": 5})
    os.symlink(root / "red", root / "also red")  # sorts before "red": the real folder still wins
    os.symlink(root / "green", root / "red" / "greens")  # a link inside one class to another class
    code, log, err = run(tmp_path, root, tiny_module, caplog, capsys)
    assert code == 0, err
    assert found(log) == (10, 2)  # no third class of identical images, no green photo in red
    assert "Class folder 'also red' is a link to the class folder 'red'" in log
    assert "red/greens' is a link to the class folder 'green'" in log
    assert "same image is in several classes" not in log


# --------------------------------------------------------------------------- formats and ignored files


def test_every_jpeg_extension_and_phone_photos_are_used(tmp_path, tiny_module, caplog, capsys):
    import pillow_heif  # noqa: F401  (requirements.txt: HEIC/HEIF support)

    root = make_dataset(tmp_path / "images", {"red": 3, "green": 3})
    for i, ext in enumerate((".jfif", ".jpe", ".JPE", ".jif", ".jfi")):
        write_photo(root / "red" / f"extra{i}{ext}", (220, 40, 40), seed=200 + i)
    for i, (ext, fmt) in enumerate(((".heic", "HEIF"), (".HEIF", "HEIF"), (".avif", "AVIF"))):
        write_photo(root / "green" / f"phone{i}{ext}", (40, 200, 60), seed=300 + i, fmt=fmt)
    code, log, err = run(tmp_path, root, tiny_module, caplog, capsys)
    assert code == 0, err
    assert found(log) == (14, 2) and stored_count(tmp_path) == 14
    assert "Skipping" not in log


def test_files_left_out_are_counted_by_reason(tmp_path, tiny_module, caplog, capsys):
    root = make_dataset(tmp_path / "images", {"red": 4, "green": 4})
    (root / "red" / "notes.txt").write_text("x")
    (root / "red" / "more notes.TXT").write_text("x")
    (root / "green" / "clip.mov").write_bytes(b"x")
    (root / "green" / "README").write_text("x")
    (root / "green" / ".DS_Store").write_bytes(b"x")
    os.symlink(root / "nowhere.jpg", root / "green" / "gone.jpg")
    code, log, err = run(tmp_path, root, tiny_module, caplog, capsys)
    assert code == 0, err
    assert ("Ignored 6 file(s) that are not images by their name: 2 .txt, 1 .mov, 1 broken link, 1 hidden, "
            "1 without extension.") in log


# --------------------------------------------------------------------------- truncated JPEGs


def _jpeg_claiming_rows(rows_claimed: int, size=(400, 300)) -> bytes:
    """A real JPEG of ``size`` whose header says it has ``rows_claimed`` rows."""
    rng = np.random.default_rng(0)
    pixels = np.clip(rng.normal(120, 60, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    data = buffer.getvalue()
    sof = data.index(b"\xff\xc0")
    return data[: sof + 5] + rows_claimed.to_bytes(2, "big") + data[sof + 7:]


def test_a_jpeg_whose_data_ends_before_its_rows_is_refused_beyond_five_percent():
    assert images_module.MAX_MISSING_ROWS == 0.05
    with pytest.raises(BadImage, match=r"truncated JPEG data \(\d+% of the image is missing\)"):
        load_for_model(_jpeg_claiming_rows(1200), 32, 32)  # three quarters of it would be grey
    with pytest.raises(BadImage, match="truncated JPEG data"):
        load_for_model(_jpeg_claiming_rows(340), 299, 299)  # 12% missing, at full decode scale
    assert load_for_model(_jpeg_claiming_rows(304), 32, 32).shape == (32, 32, 3)  # a row or two: used
    assert missing_rows(Image.open(io.BytesIO(_jpeg_claiming_rows(300)))) == 0.0


def test_a_truncated_jpeg_is_skipped_in_a_run_with_its_reason(tmp_path, tiny_module, caplog, capsys):
    root = make_dataset(tmp_path / "images", {"red": 5, "green": 5})
    (root / "red" / "grey.jpg").write_bytes(_jpeg_claiming_rows(1200))
    code, log, err = run(tmp_path, root, tiny_module, caplog, capsys)
    assert code == 0, err
    assert re.search(r"Skipping .*grey\.jpg: truncated JPEG data \(\d+% of the image is missing\)", log)
    assert stored_count(tmp_path) == 10


# --------------------------------------------------------------------------- a thousand tiny classes


def test_a_thousand_classes_of_two_images_give_bounded_warnings_and_a_proportionate_summary(
    tmp_path, tiny_module, caplog, capsys
):
    root = tmp_path / "images"
    rng = np.random.default_rng(5)
    for c in range(1000):
        colour = tuple(int(v) for v in rng.integers(0, 255, 3))
        for i in range(2):
            write_photo(root / f"class {c:04d}" / f"{i}.jpg", colour, seed=c * 10 + i, size=(16, 16))
    started = time.perf_counter()
    code, log, err = run(tmp_path, root, tiny_module, caplog, capsys, "--testing_percentage=50", steps=5)
    seconds = time.perf_counter() - started
    assert code == 0, err[-3000:]
    warnings = [line for line in err.splitlines() if line.startswith("WARNING")]
    assert len(warnings) <= 30, "\n".join(warnings[:40])
    assert any("1000 class folders have less than 20 images" in line for line in warnings)
    summary_path = tmp_path / "out" / "graph_report" / "summary.json"
    summary = json.loads(summary_path.read_text())
    assert summary_path.stat().st_size < 2_000_000, summary_path.stat().st_size
    assert "cells" in summary["confusion_matrix"] and len(summary["labels"]) == 1000
    cells = summary["confusion_matrix"]["cells"]
    assert sum(count for _t, _p, count in cells) == summary["accuracy"]["test_count"]
    print(f"1000 classes: {seconds:.0f} s, summary.json {summary_path.stat().st_size} bytes")
