"""retrain.py on image folders as people have them (tiny module, in-process runs).

Image-level decoding is covered by test_images.py; here the cases go through a
full run.  One "messy" folder holds nearly every case at once (a run costs a
few seconds), and each test below checks one aspect of that single run; the
bottleneck cache (one row per distinct image content) shows which files were
used.  Cases that need a folder of their own get a run each: one class name in
two Unicode forms, over-long image names, a class folder that is a link to
another, every JPEG extension and phone photos, files left out (counted by
reason), JPEGs whose data ends early, a thousand tiny classes (bounded
warnings, a proportionate summary.json), and the folders that stop a run
(--strict, input errors).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import resource
import sqlite3
import time
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from helpers import make_dataset, retrain_args, the_error, write_photo
from helpers import run_retrain as run
from PIL import Image

import bottleneck.pipeline as pipeline
from bottleneck.cache.classic import import_classic_text
from bottleneck.cache.store import BottleneckCache, Entry
from bottleneck.cli.retrain import retrain_main
from bottleneck.data import images as images_module
from bottleneck.data.images import BadImage, load_for_model, missing_rows
from bottleneck.data.names import one_line
from bottleneck.data.split import split_class
from bottleneck.data.walk import label_for_folder, list_images

STEPS = 10


# --------------------------------------------------------------------------- helpers




def counts_line(log: str) -> tuple[int, int, int]:
    """(cached, imported, to compute) from the run's bottleneck summary line."""
    match = re.search(r"(\d+) bottlenecks cached, (\d+) imported, (\d+) to compute", log)
    assert match, log
    return tuple(int(v) for v in match.groups())


def found_line(log: str) -> tuple[int, int]:
    match = re.search(r"Found (\d+) images in (\d+) classes", log)
    assert match, log
    return int(match.group(1)), int(match.group(2))


def vectors(out: Path) -> dict[str, np.ndarray]:
    """digest -> stored vector, for every row of the cache."""
    with sqlite3.connect(out / "bottlenecks" / "bottlenecks.sqlite3") as db:
        rows = db.execute("SELECT digest, data FROM vectors").fetchall()
    return {digest: np.frombuffer(data, "<f4") for digest, data in rows}


def stored_count(tmp_path) -> int:
    with sqlite3.connect(tmp_path / "out" / "bottlenecks" / "bottlenecks.sqlite3") as con:
        return con.execute("SELECT count(*) FROM vectors").fetchone()[0]


def sha256(path) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def skip_lines(log: str) -> list[str]:
    return [line for line in log.splitlines() if "Skipping " in line]


def noisy(size=(40, 32), seed=0, mode="RGB", colour=(200, 60, 60)) -> Image.Image:
    rng = np.random.default_rng(seed)
    pixels = np.clip(np.array(colour) + rng.normal(0, 30, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    img = Image.fromarray(pixels)
    return img if mode == "RGB" else img.convert(mode)


def encoded(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def png_bomb(width=20_000, height=20_000) -> bytes:
    """A real, complete 1-bit PNG of width x height pixels: some 50 KB on disk, 1.2 GB as RGB."""

    def chunk(kind, data):
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    row = b"\x00" * (1 + (width + 7) // 8)
    z = zlib.compressobj(9)
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


# --------------------------------------------------------------------------- the messy folder


@dataclass
class Messy:
    root: Path  # --image_dir
    out: Path
    code: int
    log: str  # everything the run wrote to stderr
    result: object  # pipeline.RunResult
    bad: dict  # path -> words its skip reason must contain
    formats: dict  # name -> path, in the 'mixed' class
    held_out_bad: list  # the 'held out' class's validation and test images, all made unreadable
    expected_labels: list
    expected_found: int
    expected_jobs: int
    grown_mib: float


def _build_messy(root: Path, elsewhere: Path) -> dict:
    info: dict = {"bad": {}, "formats": {}}
    bad = info["bad"]
    colour = iter(range(1, 10_000))

    def photo(path, fmt="JPEG", size=(48, 40)):
        c = next(colour)
        return write_photo(path, ((c * 37) % 256, (c * 91) % 256, (c * 53) % 256), seed=c, size=size, fmt=fmt)

    # red: good photos, broken files, nesting, links of every kind, hidden things and non-images.
    red = root / "red"
    for i in range(6):
        photo(red / f"img_{i:03d}.jpg")
    whole = (red / "img_000.jpg").read_bytes()
    (red / "truncated.jpg").write_bytes(whole[: len(whole) // 2])
    bad[red / "truncated.jpg"] = "truncated"
    (red / "zero bytes.jpg").write_bytes(b"")
    bad[red / "zero bytes.jpg"] = "empty file"
    (red / "bomb.png").write_bytes(png_bomb())  # 20,000 x 20,000 pixels
    bad[red / "bomb.png"] = "too large"
    os.symlink("/proc/self/mem", red / "unreadable.jpg")  # a regular file whose read fails (EIO), even for root
    bad[red / "unreadable.jpg"] = "Input/output error"
    photo(red / "2019" / "summer" / "deep 0.jpg")  # nested folders belong to the class
    photo(red / "2019" / "deep 1.jpg")
    os.symlink(red, red / "loop")  # a folder that contains itself
    (red / "2019" / "summer" / "up").symlink_to("../..")  # a relative link back up: a loop too
    os.symlink(red / "img_000.jpg", red / "again.jpg")  # the same file twice in a class: counts once
    os.symlink(elsewhere / "gone.jpg", red / "dangling.jpg")  # ignored
    more = elsewhere / "more"
    photo(more / "m0.jpg")
    photo(more / "m1.jpg")
    os.symlink(more, red / "linked folder")  # followed
    (red / ".hidden.jpg").write_bytes(b"hidden: ignored, never decoded")
    (red / "._img_000.jpg").write_bytes(b"\x00\x05\x16\x07AppleDouble resource fork")
    (red / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    photo(red / ".thumbnails" / "t.jpg")  # a hidden folder: ignored
    (red / "notes.txt").write_text("not an image file name: ignored")
    red_images = 6 + 4 + 2 + 2  # good, bad, nested, linked folder
    red_jobs = 6 + 3 + 2 + 2  # the unreadable one never gets hashed

    # green: 20 good (no "fewer than 20" warning), a text file named .jpg, a second empty file,
    # a copy of a red photo, and non-image files.
    green = root / "green"
    for i in range(20):
        photo(green / f"img_{i:03d}.jpg")
    (green / "notes.jpg").write_bytes(b"Shopping list:\n- milk\n- eggs\n")
    bad[green / "notes.jpg"] = "not an image"
    (green / "empty two.jpg").write_bytes(b"")  # the same (empty) content as red/zero bytes.jpg
    bad[green / "empty two.jpg"] = "empty file"
    (green / "copy of a red one.jpg").write_bytes((red / "img_002.jpg").read_bytes())
    for name, data in {"._img_001.jpg": b"\x00\x05\x16\x07", "Thumbs.db": b"\xd0\xcf\x11\xe0",
                       "clip.mp4": b"\x00\x00\x00\x18ftypmp42", "README": b"hello"}.items():
        (green / name).write_bytes(data)
    green_images, green_jobs = 23, 21

    # mixed: every format under any image extension, every colour mode.
    mixed = root / "mixed"
    mixed.mkdir()
    formats = info["formats"]

    def put(name, data):
        (mixed / name).write_bytes(data)
        formats[name] = mixed / name

    put("png named.jpg", encoded(noisy(seed=1), "PNG"))
    first, second = noisy(seed=2, colour=(30, 200, 30)), noisy(seed=3, colour=(30, 30, 200))
    put("animated.jpeg", encoded(first.quantize(64), "GIF", save_all=True, append_images=[second.quantize(64)],
                                 duration=100, loop=0))
    with Image.open(formats["animated.jpeg"]) as g:
        assert g.n_frames == 2
        put("gif frame 0.png", encoded(g.convert("RGB"), "PNG"))
    put("bmp named.png", encoded(noisy(seed=4), "BMP"))
    put("webp named.jpg", encoded(noisy(seed=5), "WEBP", lossless=True))
    put("tiff named.gif", encoded(noisy(seed=6), "TIFF"))
    put("grey.jpg", encoded(noisy(seed=7, mode="L"), "JPEG"))
    put("palette.png", encoded(noisy(seed=8).quantize(16), "PNG"))
    put("cmyk.jpg", encoded(noisy(seed=9, mode="CMYK"), "JPEG"))
    deep = (np.random.default_rng(10).random((32, 40)) * 65535).astype(np.uint16)
    put("grey16.png", encoded(Image.fromarray(deep), "PNG"))
    put("grey16.tif", encoded(Image.fromarray(deep), "TIFF"))
    put("alpha.png", encoded(noisy(seed=11, mode="RGBA"), "PNG"))
    put("grey alpha.png", encoded(noisy(seed=12, mode="LA"), "PNG"))
    # EXIF orientation 6: stored turned a quarter left, to be shown turned right (a phone held upright).
    upright = noisy(size=(48, 24), seed=13)
    upright.paste((255, 255, 255), (0, 0, 24, 12))  # a white corner, so that the orientation shows
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = upright.transpose(Image.Transpose.ROTATE_90)
    put("exif rotated.png", encoded(stored, "PNG", exif=exif.tobytes()))
    put("upright.png", encoded(upright, "PNG"))
    put("stored as is.png", encoded(stored, "PNG"))
    put("exif rotated photo.jpg", encoded(stored, "JPEG", quality=95, exif=exif.tobytes()))
    n_mixed = len(formats)

    # Names: accents, emoji, other scripts, spaces; and names that are not UTF-8 at all (an old Latin-1 zip).
    unicode_files = {
        "Café Crème": ["photo 1.jpg", "über café.jpg", "naïve—test.jpeg"],
        "🌸 Flowers": ["🌸.jpg", "fleur 🌺 rose.png", "  leading spaces.jpg"],
        "日本の花": ["桜 さくら.jpg", "梅.JPG", "Ωmega.jpg"],
    }
    for folder, names in unicode_files.items():
        for name in names:
            photo(root / folder / name, fmt="PNG" if name.endswith(".png") else "JPEG")
    latin = os.fsencode(root) + b"/r\xe9sum\xe9"
    os.mkdir(latin)
    for i in range(3):
        with open(latin + b"/caf\xe9 %d.jpg" % i, "wb") as f:
            f.write(photo(elsewhere / "latin.jpg").read_bytes())
    with open(latin + b"/\xe9t\xe9 broken.jpg", "wb") as f:
        f.write(b"not an image either")
    bad[Path(os.fsdecode(latin + b"/\xe9t\xe9 broken.jpg"))] = "not an image"

    # Class folders with nothing usable, hidden ones, and a loose file in --image_dir.
    (root / "empty").mkdir()
    (root / "only notes").mkdir()
    (root / "only notes" / "readme.txt").write_text("no images here")
    (root / "__MACOSX" / "red").mkdir(parents=True)  # zip residue: nothing but ._ files
    (root / "__MACOSX" / "red" / "._img_000.jpg").write_bytes(b"\x00\x05\x16\x07")
    photo(root / ".trash" / "x.jpg")
    (root / "stray file.jpg").write_bytes(b"a file straight in --image_dir is no class")

    # Small classes.
    for name, n in (("one", 1), ("two", 2), ("three", 3)):
        for i in range(n):
            photo(root / name / f"{name}_{i}.jpg")

    # A class folder that is a link (to the same photos red links to: "the same photo in two classes").
    os.symlink(more, root / "linked class")

    # A class whose held-out (validation and test) images all turn out unreadable.
    held = root / "held out"
    for i in range(12):
        photo(held / f"h_{i:02d}.jpg")
    split, _note = split_class(next(c for c in list_images(root).classes if c.label == "held out"), 10, 10)
    info["held_out_bad"] = [im.path for im in split.validation + split.testing]
    for i, path in enumerate(info["held_out_bad"]):
        path.write_bytes(b"broken %d" % i)
        bad[path] = "not an image"

    info["expected_labels"] = sorted([
        "red", "green", "mixed", "café crème", " flowers", "日本の花", "r sum ", "one", "two", "three",
        "linked class", "held out",
    ])
    info["expected_found"] = red_images + green_images + n_mixed + 9 + 4 + 6 + 2 + 12
    info["expected_jobs"] = red_jobs + green_jobs + n_mixed + 9 + 4 + 6 + 0 + 12
    return info


@pytest.fixture(scope="module")
def messy(tiny_module, tmp_path_factory) -> Messy:
    tmp = tmp_path_factory.mktemp("messy")
    info = _build_messy(tmp / "images", tmp / "elsewhere")
    results = []

    def keep_result(config):
        results.append(original(config))
        return results[-1]

    original = pipeline.retrain
    stderr = io.StringIO()
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stderr(stderr):
        mp.setattr(pipeline, "retrain", keep_result)
        code = retrain_main(retrain_args(tmp, tmp / "images", tiny_module, "--print_misclassified_test_images",
                                         steps=STEPS))
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - peak_before) / 1024
    return Messy(root=tmp / "images", out=tmp / "out", code=code, log=stderr.getvalue(),
                 result=results[0] if results else None, grown_mib=grown, **info)


def test_the_messy_run_succeeds_and_writes_its_outputs(messy):
    assert messy.code == 0, messy.log[-3000:]
    assert "Traceback" not in messy.log
    assert (messy.out / "graph.pb").stat().st_size > 0
    labels = (messy.out / "labels.txt").read_text(encoding="utf-8").splitlines()
    assert labels == messy.expected_labels


def test_unreadable_files_are_skipped_with_path_and_reason(messy):
    lines = skip_lines(messy.log)
    decoded_bad = {p: why for p, why in messy.bad.items() if why not in ("empty file", "Input/output error")}
    for path, reason in decoded_bad.items():
        assert any(f"Skipping {one_line(path)}: " in line and reason in line for line in lines), (path, lines)
    # Two files share the empty content: it is decoded once, and that file's line says why.
    assert any("empty file" in line and ("zero bytes.jpg" in line or "empty two.jpg" in line) for line in lines)


def test_the_summary_counts_every_skipped_file(messy):
    assert f"Skipped {len(messy.bad)} unreadable image(s)" in messy.log
    assert len(messy.result.skipped) == len(messy.bad)
    assert {s.path for s in messy.result.skipped} == set(messy.bad)


def test_every_skipped_file_gets_its_own_line(messy):
    lines = skip_lines(messy.log)
    for path, reason in messy.bad.items():
        assert any(f"Skipping {one_line(path)}: " in line and reason in line for line in lines), (path, lines)
    assert len(lines) == len(messy.bad)


def test_a_20000_pixel_square_image_is_refused_without_using_the_memory(messy):
    assert any("bomb.png" in line and "too large" in line for line in skip_lines(messy.log))
    # Decoded, it would take 1.2 GB as RGB; it was refused from its header.
    assert messy.grown_mib < 600, f"peak memory grew by {messy.grown_mib:.0f} MiB during the run"


def test_every_file_found_is_tried_once_per_content_and_only_good_ones_are_stored(messy):
    assert found_line(messy.log) == (messy.expected_found, len(messy.expected_labels))
    assert counts_line(messy.log) == (0, 0, messy.expected_jobs)
    bad_contents = {sha256(p) for p in messy.bad if "Input/output" not in messy.bad[p]}
    assert len(vectors(messy.out)) == messy.expected_jobs - len(bad_contents)


def test_every_format_and_colour_mode_is_used_whatever_the_extension(messy):
    stored = vectors(messy.out)
    for name, path in messy.formats.items():
        assert sha256(path) in stored, name
        assert not any(name in line for line in skip_lines(messy.log)), name


def test_a_gif_is_its_first_frame_and_exif_rotation_is_applied(messy):
    stored = vectors(messy.out)

    def vec(name):
        return stored[sha256(messy.formats[name])]

    np.testing.assert_allclose(vec("animated.jpeg"), vec("gif frame 0.png"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(vec("exif rotated.png"), vec("upright.png"), rtol=1e-5, atol=1e-6)
    assert not np.allclose(vec("stored as is.png"), vec("upright.png"), atol=1e-3)  # the orientation does matter


def test_hidden_resource_fork_and_non_image_files_are_ignored(messy):
    names = {c.label: {i.name for i in c.images} for c in list_images(messy.root).classes}
    for label, images in names.items():
        assert not any(part.startswith(".") for name in images for part in name.split("/")), label
    assert "notes.txt" not in names["red"] and "README" not in names["green"]
    assert "No images found in class folder '__MACOSX'; it is left out." in messy.log
    for hidden in (".hidden.jpg", "._img_000.jpg", ".thumbnails", ".trash", "stray file.jpg"):
        assert hidden not in messy.log


def test_symbolic_links_loops_and_dangling_links(messy):
    names = {c.label: sorted(i.name for i in c.images) for c in list_images(messy.root).classes}
    assert names["red"] == sorted([
        "img_000.jpg", "img_001.jpg", "img_002.jpg", "img_003.jpg", "img_004.jpg", "img_005.jpg",
        "truncated.jpg", "zero bytes.jpg", "bomb.png", "unreadable.jpg", "2019/summer/deep 0.jpg",
        "2019/deep 1.jpg", "linked folder/m0.jpg", "linked folder/m1.jpg",
    ])  # no loop/..., no again.jpg (the file itself is listed), no dangling.jpg
    assert names["linked class"] == ["m0.jpg", "m1.jpg"]


def test_nested_folders_belong_to_their_class(messy):
    labels = {c.label for c in list_images(messy.root).classes}
    assert "2019" not in labels and "summer" not in labels
    red = next(c for c in list_images(messy.root).classes if c.label == "red")
    assert "2019/summer/deep 0.jpg" in {i.name for i in red.images}


def test_the_same_photo_in_two_classes_is_warned_about(messy):
    warnings = [line for line in messy.log.splitlines() if "same image is in several classes" in line]
    copy = [line for line in warnings if "copy of a red one.jpg" in line]
    assert len(copy) == 1 and "(green, red)" in copy[0]
    assert str(messy.root / "red" / "img_002.jpg") in copy[0]
    assert str(messy.root / "green" / "copy of a red one.jpg") in copy[0]
    assert sum("(linked class, red)" in line for line in warnings) == 2  # m0.jpg and m1.jpg


def test_names_with_accents_emoji_other_scripts_or_no_valid_utf8(messy):
    # Labels follow the classic rule (lower case, runs of non-letters/digits -> one space) for any script;
    # bytes that are not UTF-8 count as such runs.
    assert {" flowers", "café crème", "日本の花", "r sum "} <= set(messy.result.labels)
    assert label_for_folder(os.fsdecode(b"r\xe9sum\xe9")) == "r sum "
    stored = vectors(messy.out)
    for folder in ("Café Crème", "🌸 Flowers", "日本の花"):
        for path in (messy.root / folder).iterdir():
            assert sha256(path) in stored, path
    latin = os.fsencode(messy.root) + b"/r\xe9sum\xe9"
    assert sha256(latin + b"/caf\xe9 0.jpg") in stored


def test_empty_class_folders_are_left_out_with_a_warning(messy):
    assert "No images found in class folder 'empty'; it is left out." in messy.log
    assert "No images found in class folder 'only notes'; it is left out." in messy.log
    assert "empty" not in messy.result.labels and "only notes" not in messy.result.labels


def test_classes_of_one_and_two_images_train_and_the_run_says_so(messy):
    for label, n in (("one", 1), ("two", 2)):
        assert (f"Class '{label}' has only {n} image(s): all are used for training and none for validation "
                "or testing.") in messy.log
        assert messy.result.counts[label] == {"training": n, "validation": 0, "testing": 0}


def test_fewer_than_20_images_is_warned_about_as_the_classic_script_did(messy):
    assert "WARNING:retrain:Folder 'red' has less than 20 images, which may cause issues." in messy.log
    assert "WARNING:retrain:Folder 'one' has less than 20 images, which may cause issues." in messy.log
    assert "Folder 'green' has less than" not in messy.log  # 20 good photos (and 3 more files)


def test_a_class_of_three_keeps_one_validation_and_one_test_image_and_says_what_moved(messy):
    assert messy.result.counts["three"] == {"training": 1, "validation": 1, "testing": 1}
    assert re.search(r"Class 'three' has only 3 images: moved .+ to (validation|testing)", messy.log)


def test_the_split_guarantee_holds_after_unreadable_images_are_skipped(messy):
    counts = messy.result.counts["held out"]
    assert sum(counts.values()) == 12 - len(messy.held_out_bad)
    assert counts["validation"] >= 1 and counts["testing"] >= 1, counts


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
    assert found_line(log) == (11, 2) and stored_count(tmp_path) == 11


# --------------------------------------------------------------------------- a class folder that is a link


def test_a_class_folder_linking_to_another_class_is_left_out_and_reported(tmp_path, tiny_module, caplog, capsys):
    root = make_dataset(tmp_path / "images", {"red": 5, "green": 5})
    os.symlink(root / "red", root / "also red")  # sorts before "red": the real folder still wins
    os.symlink(root / "green", root / "red" / "greens")  # a link inside one class to another class
    code, log, err = run(tmp_path, root, tiny_module, caplog, capsys)
    assert code == 0, err
    assert found_line(log) == (10, 2)  # no third class of identical images, no green photo in red
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
    assert found_line(log) == (14, 2) and stored_count(tmp_path) == 14
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


# --------------------------------------------------------------------------- runs that stop


def test_strict_makes_a_skipped_image_an_error(tmp_path, tiny_module, caplog, capsys):
    images = make_dataset(tmp_path / "images", {"red": 4, "green": 4})
    (images / "green" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")

    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys, "--strict")

    assert code == 2
    line = the_error(err)
    assert "--strict" in line and str(images / "green" / "broken.jpg") in line
    assert not (tmp_path / "out" / "graph.pb").exists()


def test_a_class_whose_images_are_all_unreadable_is_an_error(tmp_path, tiny_module, caplog, capsys):
    # Training on the other classes alone would silently drop a label, so the run stops and says which.
    images = make_dataset(tmp_path / "images", {"red": 4, "green": 4})
    (images / "broken").mkdir()
    for i in range(3):
        (images / "broken" / f"b{i}.jpg").write_bytes(b"garbage %d" % i)

    code, _log, err = run(tmp_path, images, tiny_module, caplog, capsys)

    assert code == 2
    assert "broken" in the_error(err)
    assert not (tmp_path / "out" / "graph.pb").exists()


def _single_class(root):
    make_dataset(root, {"red": 5})


def _one_class_after_empty_ones(root):
    make_dataset(root, {"red": 5})
    (root / "empty").mkdir()
    (root / ".hidden").mkdir()
    write_photo(root / ".hidden" / "a.jpg", (1, 2, 3), 1)


def _no_classes(root):
    root.mkdir()
    write_photo(root / "loose.jpg", (1, 2, 3), 1)


def _nothing_at_all(root):
    root.mkdir()


def _only_empty_classes(root):
    (root / "empty").mkdir(parents=True)
    (root / "notes").mkdir()
    (root / "notes" / "a.txt").write_text("x")


def _not_a_folder(root):
    root.write_bytes(b"a file, not a folder")


def _missing(root):
    pass


@pytest.mark.parametrize(
    "setup, message",
    [
        (_single_class, "Only one valid folder of images found"),
        (_one_class_after_empty_ones, "Only one valid folder of images found"),
        (_no_classes, "No class sub-folders found"),
        (_nothing_at_all, "No class sub-folders found"),
        (_only_empty_classes, "No images found in any class folder"),
        (_not_a_folder, "is a file; it must be a folder"),
        (_missing, "not found"),
    ],
)
def test_image_dir_errors_exit_2_with_one_sentence(tmp_path, tiny_module, caplog, capsys, setup, message):
    root = tmp_path / "images"
    setup(root)

    code, _log, err = run(tmp_path, root, tiny_module, caplog, capsys)

    assert code == 2
    assert message in the_error(err)
    assert not (tmp_path / "out" / "graph.pb").exists()
