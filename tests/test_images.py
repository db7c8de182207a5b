"""bottleneck.data.images: every input is built here, in tmp_path, with PIL and numpy."""
import io
import resource
import struct
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, JpegImagePlugin

from bottleneck.data import images
from bottleneck.data.images import BadImage, is_candidate, load_for_model, open_rgb

ROOT = Path(__file__).resolve().parents[1]

RED, GREEN, BLUE, WHITE = (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)


def _quadrants(w=40, h=30):
    """RGB image: red top-left, green top-right, blue bottom-left, white bottom-right."""
    a = np.zeros((h, w, 3), np.uint8)
    a[: h // 2, : w // 2] = RED
    a[: h // 2, w // 2 :] = GREEN
    a[h // 2 :, : w // 2] = BLUE
    a[h // 2 :, w // 2 :] = WHITE
    return Image.fromarray(a)


def _jpeg_bytes(img, **kw):
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def _png_header_only(w, h):
    """A PNG that declares w x h 1-bit pixels but is a few bytes long."""

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 1, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + chunk(b"IEND", b"")
    )


def _pixels(img):
    """Pixels of an RGB image as a list of (r, g, b) tuples, row by row."""
    return [tuple(int(v) for v in px) for px in np.asarray(img).reshape(-1, 3)]


def _stored(path, attr):
    """An attribute (mode, n_frames) of the file as PIL sees it, closing the file."""
    with Image.open(path) as im:
        return getattr(im, attr)


def _close(actual, expected, tol=0):
    return all(abs(int(a) - int(e)) <= tol for a, e in zip(actual, expected))


# --- is_candidate ---------------------------------------------------------


@pytest.mark.parametrize(
    "name, expected",
    [
        ("a.JPG", True),
        ("b.webp", True),
        ("c.jpeg", True),
        ("d.Png", True),
        ("e.tiff", True),
        ("f.TIF", True),
        ("g.bmp", True),
        ("h.gif", True),
        ("café 🌻.jpg", True),
        ("dir/sub/x.jpg", True),
        (".hidden.jpg", False),
        ("._a.jpg", False),
        ("dir/._a.jpg", False),
        ("notes.txt", False),
        ("Thumbs.db", False),
        (".DS_Store", False),
        ("jpg", False),
        ("a.jpg.txt", False),
        ("a.heic", True),  # phone photos, decoded by pillow-heif
        ("a.JFIF", True),
        ("a.jpe", True),
    ],
)
def test_is_candidate(name, expected):
    assert is_candidate(name) is expected


def test_constants():
    assert images.MAX_PIXELS == 100_000_000
    assert images.IMAGE_EXTENSIONS == {".jpg", ".jpeg", ".jpe", ".jfif", ".jfi", ".jif", ".png", ".gif", ".bmp",
                                       ".webp", ".tif", ".tiff", ".heic", ".heif", ".avif"}
    assert all(e == e.lower() and e.startswith(".") for e in images.IMAGE_EXTENSIONS)


# --- broken files ---------------------------------------------------------


def test_truncated_jpeg(tmp_path):
    data = _jpeg_bytes(Image.effect_noise((300, 200), 64).convert("RGB"))
    p = tmp_path / "half.jpg"
    p.write_bytes(data[: len(data) // 2])
    with pytest.raises(BadImage) as e:
        open_rgb(p)
    assert str(e.value) == "truncated JPEG data"
    with pytest.raises(BadImage, match="truncated"):
        load_for_model(p, 64, 64)


@pytest.mark.parametrize("keep, reason", [(10, "truncated JPEG data"), (20, "corrupt JPEG file (unreadable header)")])
def test_jpeg_cut_inside_header(tmp_path, keep, reason):
    p = tmp_path / "stub.jpg"
    p.write_bytes(_jpeg_bytes(_quadrants())[:keep])
    with pytest.raises(BadImage) as e:
        open_rgb(p)
    assert str(e.value) == reason


def test_truncated_png(tmp_path):
    buf = io.BytesIO()
    Image.effect_noise((300, 200), 64).convert("RGB").save(buf, "PNG")
    p = tmp_path / "half.png"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(BadImage, match="^truncated PNG data$"):
        open_rgb(p)


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jpg"
    p.write_bytes(b"")
    with pytest.raises(BadImage, match="^empty file$"):
        open_rgb(p)
    with pytest.raises(BadImage, match="empty"):
        open_rgb(b"")


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"shopping list:\n- milk\n- eggs\n", "not an image (looks like text)"),
        (b"BMW service notes 2019\n", "not an image (looks like text)"),
        (b"GIF89a-looking text file\n", "corrupt GIF file (unreadable header)"),
        ("Notizen: Grüße aus Köln ☕\n".encode(), "not an image (looks like text)"),
        (b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "not an image (looks like HTML)"),
        (b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg"/>', "unsupported format (SVG)"),
        (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n", "not an image (looks like PDF)"),
        (b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic", "corrupt HEIC/HEIF file"),  # a header, no image
        (bytes(range(256)) * 4, "not an image (unrecognised format)"),
    ],
)
def test_not_an_image(tmp_path, content, reason):
    p = tmp_path / "fake.jpg"
    p.write_bytes(content)
    with pytest.raises(BadImage) as e:
        open_rgb(p)
    assert str(e.value) == reason


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "GIF", "TIFF", "WEBP"])
def test_truncated_other_formats(tmp_path, fmt):
    buf = io.BytesIO()
    Image.effect_noise((200, 150), 64).convert("RGB").save(buf, fmt)
    p = tmp_path / "cut.jpg"
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) * 2 // 3])
    with pytest.raises(BadImage) as e:
        open_rgb(p)
    assert fmt in str(e.value) and ("truncated" in str(e.value) or "corrupt" in str(e.value))


def test_corrupt_png_header(tmp_path):
    p = tmp_path / "bad.png"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    with pytest.raises(BadImage, match="PNG"):
        open_rgb(p)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(BadImage, match="cannot read file"):
        open_rgb(tmp_path / "nope.jpg")
    with pytest.raises(BadImage, match="cannot read file"):
        open_rgb(tmp_path)


# --- too large ------------------------------------------------------------


def _maxrss_mib():
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def test_huge_image_refused_quickly_without_decoding(tmp_path):
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(20000, 20000))
    assert p.stat().st_size < 200
    rss_before = _maxrss_mib()
    start = time.perf_counter()
    with pytest.raises(BadImage) as e:
        open_rgb(p)
    with pytest.raises(BadImage):
        load_for_model(p, 299, 299)
    assert time.perf_counter() - start < 2.0
    # Decoding would need 400 MB (mode '1' is a byte per pixel in PIL), 1.2 GB as RGB.
    assert _maxrss_mib() - rss_before < 100
    reason = str(e.value)
    assert reason.startswith("image too large: ")
    assert "400,000,000 pixels" in reason and "(limit 100,000,000)" in reason


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_just_over_limit_reports_dimensions(tmp_path):
    # Below PIL's own hard limit, so it is our header check that refuses it.
    p = tmp_path / "big.png"
    p.write_bytes(_png_header_only(10001, 10000))
    with pytest.raises(BadImage) as e:
        open_rgb(p)
    assert str(e.value) == "image too large: 10001x10000 pixels (limit 100,000,000)"


def test_huge_image_refused_even_if_pil_limit_disabled(tmp_path, monkeypatch):
    # An application may switch PIL's own guard off; ours must still hold.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(20000, 20000))
    rss_before = _maxrss_mib()
    with pytest.raises(BadImage) as e:
        load_for_model(p, 299, 299)
    assert _maxrss_mib() - rss_before < 100
    assert str(e.value) == "image too large: 20000x20000 pixels (limit 100,000,000)"


@pytest.mark.filterwarnings("error::PIL.Image.DecompressionBombWarning")
def test_bomb_warning_as_error_is_still_bad_image(tmp_path):
    p = tmp_path / "big.png"
    p.write_bytes(_png_header_only(10001, 10000))
    with pytest.raises(BadImage, match="^image too large"):
        open_rgb(p)


def test_pil_global_limit_untouched(tmp_path):
    before = Image.MAX_IMAGE_PIXELS
    p = tmp_path / "bomb.png"
    p.write_bytes(_png_header_only(20000, 20000))
    with pytest.raises(BadImage):
        open_rgb(p)
    assert Image.MAX_IMAGE_PIXELS == before


# --- formats by content, whatever the extension -----------------------------


@pytest.mark.parametrize(
    "fmt, kw",
    [
        ("PNG", {}),
        ("GIF", {}),
        ("BMP", {}),
        ("WEBP", {"lossless": True}),
        ("TIFF", {}),
    ],
)
def test_format_under_jpg_name(tmp_path, fmt, kw):
    src = _quadrants()
    p = tmp_path / f"really_{fmt.lower()}.jpg"
    src.save(p, fmt, **kw)
    img = open_rgb(p)
    assert img.mode == "RGB" and img.size == (40, 30)
    np.testing.assert_array_equal(np.asarray(img), np.asarray(src))


def test_plain_jpeg(tmp_path):
    p = tmp_path / "q.jpeg"
    p.write_bytes(_jpeg_bytes(_quadrants(80, 60), quality=95))
    img = open_rgb(p)
    assert img.mode == "RGB" and img.size == (80, 60)
    assert _close(img.getpixel((5, 5)), RED, 8)
    assert _close(img.getpixel((75, 5)), GREEN, 8)
    assert _close(img.getpixel((5, 55)), BLUE, 8)
    assert _close(img.getpixel((75, 55)), WHITE, 8)


def test_bytes_input(tmp_path):
    buf = io.BytesIO()
    _quadrants().save(buf, "PNG")
    for src in (buf.getvalue(), bytearray(buf.getvalue()), memoryview(buf.getvalue())):
        np.testing.assert_array_equal(np.asarray(open_rgb(src)), np.asarray(_quadrants()))


def test_animated_gif_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 12), c) for c in (RED, GREEN, BLUE)]
    p = tmp_path / "anim.jpg"
    frames[0].save(p, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert _stored(p, "n_frames") == 3
    img = open_rgb(p)
    assert img.size == (16, 12)
    assert set(_pixels(img)) == {RED}


def test_animated_webp_gives_first_frame(tmp_path):
    frames = [Image.new("RGB", (16, 12), c) for c in (GREEN, RED, BLUE)]
    p = tmp_path / "anim.webp"
    frames[0].save(p, "WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    assert _stored(p, "n_frames") == 3
    assert set(_pixels(open_rgb(p))) == {GREEN}


# --- colour modes -------------------------------------------------------------


def test_grayscale(tmp_path):
    p = tmp_path / "gray.png"
    Image.fromarray(np.array([[0, 100], [200, 255]], np.uint8), "L").save(p)
    a = np.asarray(open_rgb(p))
    assert a.shape == (2, 2, 3)
    np.testing.assert_array_equal(a[..., 0], [[0, 100], [200, 255]])
    assert (a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all()


def test_one_bit(tmp_path):
    p = tmp_path / "bw.png"
    Image.fromarray(np.array([[True, False]])).save(p)
    assert _pixels(open_rgb(p)) == [WHITE, (0, 0, 0)]


def test_palette(tmp_path):
    p = tmp_path / "pal.png"
    _quadrants().convert("P", palette=Image.Palette.ADAPTIVE, colors=4).save(p)
    assert _stored(p, "mode") == "P"
    np.testing.assert_array_equal(np.asarray(open_rgb(p)), np.asarray(_quadrants()))


def test_palette_with_transparency_goes_onto_white(tmp_path):
    pal = Image.new("P", (4, 1))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.putdata([0, 1, 0, 1])
    p = tmp_path / "trans.gif"
    pal.save(p, transparency=0)
    assert _pixels(open_rgb(p)) == [WHITE, RED, WHITE, RED]
    p2 = tmp_path / "trans.png"
    pal.save(p2, transparency=0)
    assert _pixels(open_rgb(p2)) == [WHITE, RED, WHITE, RED]


def test_rgb_colour_key_transparency_goes_onto_white(tmp_path):
    p = tmp_path / "key.png"
    Image.fromarray(np.array([[[0, 0, 0], [0, 0, 255]]], np.uint8)).save(p, transparency=(0, 0, 0))
    assert _pixels(open_rgb(p)) == [WHITE, BLUE]


@pytest.mark.parametrize("fmt", ["TIFF", "JPEG"])
def test_cmyk(tmp_path, fmt):
    p = tmp_path / f"cmyk.{fmt.lower()}"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(p, fmt)
    assert _stored(p, "mode") == "CMYK"
    img = open_rgb(p)
    assert img.mode == "RGB"
    tol = 0 if fmt == "TIFF" else 6
    assert all(_close(px, RED, tol) for px in _pixels(img))


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    p = tmp_path / "deep.png"
    Image.fromarray(np.array([[65535, 32768, 0, 257, 1000]], np.uint16)).save(p)
    assert _stored(p, "mode").startswith("I")
    a = np.asarray(open_rgb(p))
    np.testing.assert_array_equal(a[0, :, 0], [255, 128, 0, 1, 4])
    assert (a[..., 0] == a[..., 2]).all()


def test_32bit_int_tiff_treated_as_16bit(tmp_path):
    p = tmp_path / "deep.tif"
    Image.fromarray(np.array([[65535, 32768, 0, 70000, -3]], np.int32)).save(p)
    assert _stored(p, "mode") == "I"
    np.testing.assert_array_equal(np.asarray(open_rgb(p))[0, :, 1], [255, 128, 0, 255, 0])


def test_rgba_composited_onto_white(tmp_path):
    p = tmp_path / "alpha.png"
    a = np.array([[[255, 0, 0, 0], [255, 0, 0, 255], [255, 0, 0, 128], [0, 0, 0, 0]]], np.uint8)
    Image.fromarray(a, "RGBA").save(p)
    px = _pixels(open_rgb(p))
    assert px[0] == WHITE  # fully transparent: the hidden red is not shown
    assert px[1] == RED
    assert _close(px[2], (255, 127, 127), 1)  # half-way between red and white
    assert px[3] == WHITE  # transparent black (the usual hidden colour) is white too


def test_la_composited_onto_white(tmp_path):
    p = tmp_path / "la.png"
    a = np.array([[[0, 0], [0, 255], [100, 255]]], np.uint8)
    Image.fromarray(a, "LA").save(p)
    assert _pixels(open_rgb(p)) == [WHITE, (0, 0, 0), (100, 100, 100)]


# --- EXIF orientation ---------------------------------------------------------


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif.tobytes()


def test_exif_orientation_6_rotates(tmp_path):
    # Stored 80 wide x 40 high, red top-left; orientation 6 means "rotate 90° clockwise to view".
    p = tmp_path / "rotated.jpg"
    p.write_bytes(_jpeg_bytes(_quadrants(80, 40), quality=95, exif=_exif(6)))
    img = open_rgb(p)
    assert img.size == (40, 80)
    assert _close(img.getpixel((35, 5)), RED, 8)  # stored top-left -> viewed top-right
    assert _close(img.getpixel((5, 5)), BLUE, 8)  # stored bottom-left -> viewed top-left
    assert _close(img.getpixel((35, 75)), GREEN, 8)
    assert _close(img.getpixel((5, 75)), WHITE, 8)
    a = load_for_model(p, 8, 4)
    assert a.shape == (8, 4, 3)
    np.testing.assert_allclose(a[0, 3], np.array(RED) / 255, atol=0.05)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data")
def test_broken_exif_is_ignored(tmp_path):
    p = tmp_path / "badexif.jpg"
    p.write_bytes(_jpeg_bytes(_quadrants(), quality=95, exif=b"Exif\x00\x00MM\x00*garbage"))
    assert open_rgb(p).size == (40, 30)


# --- file names -----------------------------------------------------------------


@pytest.mark.parametrize("name", ["my holiday photo.jpg", "café crème é.png", "🌻 sunflower 🌞.jpeg", "日本語.JPG"])
def test_unusual_file_names(tmp_path, name):
    p = tmp_path / name
    _quadrants().save(p, "PNG")
    assert is_candidate(p.name)
    assert open_rgb(p).size == (40, 30)
    assert open_rgb(str(p)).size == (40, 30)
    assert load_for_model(p, 5, 7).shape == (5, 7, 3)


# --- load_for_model ---------------------------------------------------------------


@pytest.mark.parametrize("height, width", [(299, 299), (10, 20), (31, 7), (30, 40)])
def test_load_for_model_shape_dtype_range(tmp_path, height, width):
    p = tmp_path / "q.png"
    _quadrants().save(p)
    a = load_for_model(p, height, width)
    assert a.shape == (height, width, 3)
    assert a.dtype == np.float32
    assert a.min() >= 0.0 and a.max() <= 1.0


def test_load_for_model_values(tmp_path):
    p = tmp_path / "solid.png"
    Image.new("RGB", (50, 30), (255, 0, 128)).save(p)
    a = load_for_model(p, 11, 13)
    np.testing.assert_allclose(a, np.broadcast_to(np.float32([1.0, 0.0, 128 / 255]), (11, 13, 3)), atol=1e-7)
    same_size = load_for_model(p, 30, 50)
    assert same_size.max() == 1.0 and same_size.min() == 0.0


def test_load_for_model_rejects_bad_size(tmp_path):
    p = tmp_path / "q.png"
    _quadrants().save(p)
    with pytest.raises(ValueError):
        load_for_model(p, 0, 10)


def _big_photo(w=3000, h=2000):
    """A smooth synthetic 'photo' with some texture, the kind draft() is for."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 127 + 120 * np.sin(x / 170.0)
    g = 127 + 120 * np.cos(y / 130.0)
    b = 127 + 120 * np.sin((x + y) / 260.0)
    noise = np.random.default_rng(7).normal(0, 6, (h, w, 1))
    return Image.fromarray(np.clip(np.stack([r, g, b], -1) + noise, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def big_jpeg(tmp_path_factory):
    p = tmp_path_factory.mktemp("big") / "big photo.jpg"
    p.write_bytes(_jpeg_bytes(_big_photo(), quality=90))
    return p


def test_big_jpeg_uses_draft_and_matches_full_decode(big_jpeg, monkeypatch):
    seen = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        out = real_draft(self, mode, size)
        seen.append((size, self.size))
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    t0 = time.perf_counter()
    fast = load_for_model(big_jpeg, 299, 299)
    t_draft = time.perf_counter() - t0
    monkeypatch.undo()

    # Decoded at 1/4 scale: min(3000 // 299, 2000 // 299) = 6 -> largest DCT scale <= 6 is 4.
    assert seen == [((299, 299), (750, 500))]

    t0 = time.perf_counter()
    full = open_rgb(big_jpeg)
    assert full.size == (3000, 2000)
    slow = np.asarray(full.resize((299, 299), Image.Resampling.BILINEAR), np.float32) / 255
    t_full = time.perf_counter() - t0

    assert fast.shape == slow.shape == (299, 299, 3)
    assert np.abs(fast - slow).mean() < 0.05
    # Informational only; timing is too noisy on shared machines to assert.
    print(f"draft {t_draft * 1000:.0f} ms vs full {t_full * 1000:.0f} ms")


def test_draft_size_follows_exif_orientation(tmp_path, monkeypatch):
    # Stored 1600x400, viewed 400x1600. Asking for 390 wide x 100 high must ask the
    # decoder for (100, 390) in stored terms, else it would shrink to 400x100 stored,
    # i.e. 100 wide when viewed, and upscale.
    p = tmp_path / "tall.jpg"
    p.write_bytes(_jpeg_bytes(_big_photo(1600, 400), quality=90, exif=_exif(6)))
    seen = []
    real_draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        out = real_draft(self, mode, size)
        seen.append((size, self.size))
        return out

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    a = load_for_model(p, 100, 390)
    assert a.shape == (100, 390, 3)
    (requested, decoded), = seen
    assert requested == (100, 390)
    assert decoded[0] >= 100 and decoded[1] >= 390


def test_load_for_model_deterministic(big_jpeg, tmp_path):
    a = load_for_model(big_jpeg, 299, 299)
    b = load_for_model(big_jpeg, 299, 299)
    c = load_for_model(big_jpeg.read_bytes(), 299, 299)
    assert a.tobytes() == b.tobytes() == c.tobytes()
    p = tmp_path / "alpha.png"
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (60, 90, 4), dtype=np.uint8), "RGBA").save(p)
    assert load_for_model(p, 37, 41).tobytes() == load_for_model(p, 37, 41).tobytes()


def test_threads_give_identical_results(big_jpeg):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: load_for_model(big_jpeg, 224, 224).tobytes(), range(16)))
    assert len(set(results)) == 1


def test_no_tensorflow_import():
    import subprocess

    code = "import sys, bottleneck.data.images; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "GIF", "BMP", "WEBP", "TIFF"])
def test_damaged_files_give_array_or_bad_image(fmt):
    """Seeded byte flips and cuts: the only exception a caller ever sees is BadImage."""
    import random

    buf = io.BytesIO()
    Image.effect_noise((48, 32), 64).convert("RGB").save(buf, fmt)
    data = buf.getvalue()
    rng = random.Random(fmt)
    for i in range(60):
        damaged = bytearray(data[: rng.randrange(1, len(data) + 1)] if i % 3 == 0 else data)
        for _ in range(rng.randint(1, 6)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        try:
            a = load_for_model(bytes(damaged), 8, 8)
        except BadImage as e:
            assert str(e) and "\n" not in str(e)
        else:
            assert a.shape == (8, 8, 3) and a.dtype == np.float32


def test_resize_matches_tensorflows_legacy_resize_bilinear():
    """The original Inception graph resized with TF's legacy bilinear; ours must be its twin."""
    import tensorflow as tf

    from bottleneck.data.images import resize_bilinear_legacy

    rng = np.random.default_rng(3)
    for shape, (h, w) in [((333, 500, 3), (299, 299)), ((120, 90, 3), (299, 299)), ((640, 480, 3), (224, 160))]:
        pixels = rng.integers(0, 256, size=shape).astype(np.float32)
        ours = resize_bilinear_legacy(pixels, h, w)
        theirs = tf.compat.v1.image.resize_bilinear(pixels[None], [h, w], align_corners=False,
                                                    half_pixel_centers=False)[0].numpy()
        np.testing.assert_allclose(ours, theirs, atol=1e-3)


def test_resize_gives_bit_for_bit_the_direct_formula_for_any_input():
    """Cached bottlenecks keyed on the preprocessing stay valid only if every resized value is unchanged."""
    from bottleneck.data.images import resize_bilinear_legacy

    def direct(pixels, height, width):  # the formula as TensorFlow's kernel writes it
        def axis(out_size, in_size):
            source = np.arange(out_size, dtype=np.float32) * np.float32(in_size / out_size)
            low = np.floor(source).astype(np.int64)
            return low, np.minimum(low + 1, in_size - 1), (source - low).astype(np.float32)

        y0, y1, fy = axis(height, pixels.shape[0])
        x0, x1, fx = axis(width, pixels.shape[1])
        fx = fx[None, :, None]
        top = pixels[y0][:, x0] + (pixels[y0][:, x1] - pixels[y0][:, x0]) * fx
        bottom = pixels[y1][:, x0] + (pixels[y1][:, x1] - pixels[y1][:, x0]) * fx
        return top + (bottom - top) * fy[:, None, None]

    rng = np.random.default_rng(11)
    for shape in [(240, 320, 3), (333, 500, 3), (1200, 90, 3), (17, 640, 3)]:  # up, down, tall, wide
        pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
        expected = direct(pixels.astype(np.float32), 299, 299)
        for given in (pixels, pixels.astype(np.float32)):
            ours = resize_bilinear_legacy(given, 299, 299)
            assert ours.dtype == np.float32 and np.array_equal(ours, expected)
