"""Turn an image file into RGB pixels for the model, whatever a messy folder holds.

Files are recognised by their content, not their extension: a PNG saved as
``photo.jpg`` is decoded as a PNG. Anything that cannot be used raises
``BadImage`` with a short reason, so callers can skip the file and say why.

Transparency is composited onto WHITE. Images with an alpha channel are
mostly logos, product shots and screenshots, which are meant to be seen on a
white page; the colour hidden under fully transparent pixels is arbitrary
(often black), and keeping it would add edges the viewer never saw.

PIL and numpy only: no TensorFlow here, so this module is cheap to import and
safe to call from worker threads (it changes no global state).
"""
from __future__ import annotations

import contextlib
import io
import os
import re
import struct

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

# Every extension a JPEG goes by, the other formats Pillow reads, and phone photos (HEIC/HEIF via the
# pillow-heif plugin, AVIF by Pillow itself).
JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg", ".jpe", ".jfif", ".jfi", ".jif"})
IMAGE_EXTENSIONS = JPEG_EXTENSIONS | frozenset({".png", ".gif", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".heif",
                                                ".avif"})

try:  # decodes HEIC/HEIF (iPhone photos) through Image.open; registering is idempotent and thread-safe
    from pillow_heif import register_heif_opener

    register_heif_opener()
    HEIF_SUPPORTED = True
except ImportError:  # requirements.txt installs it; without it HEIC files are skipped with a reason
    HEIF_SUPPORTED = False

# A JPEG whose data ends before its last rows decodes them as flat grey (libjpeg fills what is missing
# and only warns).  Above this share of the rows missing, the file is refused as truncated: the
# features would describe a grey band, not the photo.  A few missing rows at the bottom are tolerated.
MAX_MISSING_ROWS = 0.05

# Larger images are refused from the header alone: a 20000x20000 "bomb" would
# need 1.2 GB as RGB before we could even resize it.
MAX_PIXELS = 100_000_000

# Magic numbers of the formats we expect, to name the format in a reason
# even when PIL could not get far enough to tell us.
_SIGNATURES = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)

# Things that end up in photo folders but are not images we can decode.
_NOT_IMAGES = (
    (b"%PDF", "looks like PDF"),
    (b"PK\x03\x04", "looks like a ZIP archive"),
)

# PIL's format parsers raise all of these on malformed files, not just OSError.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError,
                  ZeroDivisionError)
_BOMB_ERRORS = (Image.DecompressionBombError, Image.DecompressionBombWarning)

_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
_16BIT_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_ORIENTATION = ExifTags.Base.Orientation


class BadImage(Exception):
    """An image that cannot be used; ``str(exc)`` is a short human reason."""


def is_candidate(name) -> bool:
    """True for a visible file name with an image extension (any case)."""
    base = os.path.basename(os.fspath(name))
    # '.'-prefixed covers hidden files and macOS '._*' resource forks, which
    # carry an image extension but hold metadata, not pixels.
    if base.startswith("."):
        return False
    return os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def open_rgb(path_or_bytes) -> Image.Image:
    """Fully decoded, upright RGB image; raises BadImage if unusable."""
    return _open(path_or_bytes)


def load_for_model(path_or_bytes, height: int, width: int) -> np.ndarray:
    """float32 [height, width, 3] in [0, 1], resized as the original Inception graph resized.

    The 2015 Inception-v3 graph (and the classic retrain.py) resized with
    TensorFlow's legacy ResizeBilinear: no antialiasing, no half-pixel
    centres.  Reproducing it keeps our bottlenecks those of the classic tool,
    and it measured better than an antialiased resize (docs/model.md).
    """
    if height <= 0 or width <= 0:
        raise ValueError(f"height and width must be positive, got {height}x{width}")
    img = _open(path_or_bytes, draft_size=(width, height))
    pixels = np.asarray(img)
    if img.size != (width, height):
        pixels = resize_bilinear_legacy(pixels, height, width)
    else:
        pixels = pixels.astype(np.float32)
    pixels /= np.float32(255.0)
    return pixels


def load_rgb_array(path_or_bytes, min_height: int, min_width: int) -> np.ndarray:
    """uint8 [H, W, 3] RGB at full size, or at a reduced JPEG decode scale that stays >= the minimum."""
    return np.asarray(_open(path_or_bytes, draft_size=(min_width, min_height)), dtype=np.uint8)


def resize_bilinear_legacy(pixels: np.ndarray, height: int, width: int) -> np.ndarray:
    """NumPy twin of tf.compat.v1.image.resize_bilinear(align_corners=False, half_pixel_centers=False).

    Returns float32 whatever the input's type (uint8 pixels are converted
    first, which gives the same values).  Each output value is computed as
    ``top + (bottom - top) * fy`` with ``top`` and ``bottom`` interpolated along
    x first, as TensorFlow does, so the result is bit-identical to the direct
    formula.  Decoding has to keep up with a fast network on the same cores, so
    the work is arranged for NumPy: every needed row is interpolated once and
    rows are picked afterwards, and each row is handled as one flat run of
    float32 values (a gather of 4-byte values, not of 3-byte pixels).
    """
    in_height, in_width, channels = pixels.shape
    y0, y1, fy = _source_axis(height, in_height)
    x0, x1, fx = _source_axis(width, in_width)
    columns0, columns1 = _flat_columns(x0, channels), _flat_columns(x1, channels)
    fx_flat = np.repeat(fx, channels)

    def along_x(rows: np.ndarray) -> np.ndarray:  # [n, in_width, channels] -> [n, width * channels]
        flat = rows.reshape(len(rows), in_width * channels).astype(np.float32, copy=False)
        left, right = np.take(flat, columns0, axis=1), np.take(flat, columns1, axis=1)
        right -= left
        right *= fx_flat
        right += left
        return right

    if in_height <= 2 * height:  # interpolate every input row once, then pick rows
        rows = along_x(pixels)
        top, bottom = np.take(rows, y0, axis=0), np.take(rows, y1, axis=0)
    else:  # a tall input: only the rows that are used
        top, bottom = along_x(np.take(pixels, y0, axis=0)), along_x(np.take(pixels, y1, axis=0))
    bottom -= top
    bottom *= fy[:, None]
    bottom += top
    return bottom.reshape(height, width, channels)


def _source_axis(out_size: int, in_size: int):
    """For each output index along one axis: the two source indices and the weight of the second."""
    source = np.arange(out_size, dtype=np.float32) * np.float32(in_size / out_size)
    low = np.floor(source).astype(np.int64)
    high = np.minimum(low + 1, in_size - 1)
    return low, high, (source - low).astype(np.float32)


def _flat_columns(x: np.ndarray, channels: int) -> np.ndarray:
    """Indices into a row flattened as [width * channels] for the pixels at ``x``, channel by channel."""
    return (x[:, None] * channels + np.arange(channels)).ravel()


def _open(source, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Open, size-check, optionally draft, decode and convert to RGB."""
    with _binary_stream(source) as fp:
        try:
            prefix = fp.read(512)
            fp.seek(0)
        except OSError as e:
            raise BadImage(_io_reason(e)) from e
        if not prefix:
            raise BadImage("empty file")

        fmt = _sniff_format(prefix)
        try:
            img = Image.open(fp)
        except _BOMB_ERRORS as e:
            # PIL's own guard (the warning only raises when warnings are errors).
            raise BadImage(_bomb_reason(e)) from e
        except UnidentifiedImageError as e:
            raise BadImage(_unidentified_reason(prefix, fmt)) from e
        except _DECODE_ERRORS as e:
            # A plugin with a loose signature check (BMP: just 'BM') may have
            # claimed a text file; say what the file most likely is.
            if fmt == "image" and _looks_like_text(prefix):
                raise BadImage("not an image (looks like text)") from e
            raise BadImage(_decode_reason(e, fmt)) from e

        # The header size is known now and no pixels are decoded yet.
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise BadImage(f"image too large: {w}x{h} pixels (limit {MAX_PIXELS:,})")

        fmt = img.format or fmt
        if draft_size is not None:
            # JPEG can decode at 1/2, 1/4 or 1/8 scale straight from the DCT,
            # which is several times faster for big photos; draft never goes
            # below the requested size. Other formats ignore it.
            img.draft("RGB", _stored_size(img, draft_size))
        try:
            img.load()
        except _BOMB_ERRORS as e:
            raise BadImage(_bomb_reason(e)) from e
        except _DECODE_ERRORS as e:
            raise BadImage(_decode_reason(e, fmt)) from e
        except MemoryError as e:
            raise BadImage(f"out of memory decoding {w}x{h} {fmt} image") from e
        if fmt == "JPEG":
            missing = missing_rows(img)
            if missing > MAX_MISSING_ROWS:
                raise BadImage(f"truncated JPEG data ({missing:.0%} of the image is missing)")

    return _to_rgb(_upright(img))


def missing_rows(img: Image.Image) -> float:
    """The share of a decoded JPEG's rows, counted from the bottom, that are the decoder's flat fill.

    libjpeg fills the rows its data did not reach with mid-grey (128 in every channel, exactly), so a
    file whose header promises more rows than its data holds ends in such rows.  A real photo almost
    never holds a whole row of exactly 128.
    """
    if img.mode not in ("RGB", "L") or img.height == 0:
        return 0.0
    pixels = np.asarray(img)
    if not (pixels[-1] == 128).all():  # the common case, in one row
        return 0.0
    flat = (pixels.reshape(img.height, -1) == 128).all(axis=1)
    filled = int(np.argmin(flat[::-1])) if not flat.all() else img.height
    return filled / img.height


@contextlib.contextmanager
def _binary_stream(source):
    """A seekable binary file for a path or bytes, closed afterwards."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        fp = io.BytesIO(bytes(source))
    else:
        try:
            fp = open(os.fspath(source), "rb")
        except OSError as e:
            raise BadImage(_io_reason(e)) from e
    with fp:
        yield fp


def _stored_size(img: Image.Image, size: tuple[int, int]) -> tuple[int, int]:
    """Requested (w, h) in the file's stored orientation, for draft()."""
    # EXIF orientations 5-8 rotate by 90 degrees, so the stored width becomes
    # the output height; without the swap one side could drop below target.
    if _orientation(img) in (5, 6, 7, 8):
        return size[1], size[0]
    return size


def _orientation(img: Image.Image) -> int:
    try:
        return int(img.getexif().get(_ORIENTATION, 1))
    except Exception:
        # Broken EXIF is common in edited photos and says nothing about the pixels.
        return 1


def _upright(img: Image.Image) -> Image.Image:
    """Apply the EXIF orientation, ignoring EXIF blocks PIL cannot parse."""
    if _orientation(img) == 1:
        return img
    try:
        return ImageOps.exif_transpose(img)
    except Exception:
        # An upright-but-unrotated photo is better than losing it to bad EXIF.
        return img


def _to_rgb(img: Image.Image) -> Image.Image:
    """Convert any PIL mode to 8-bit RGB; alpha is composited onto white."""
    mode = img.mode
    if mode == "RGB" and "transparency" not in img.info:
        return img
    try:
        if mode in _16BIT_MODES:
            return _gray16_to_rgb(img)
        # 'transparency' covers palette images and tRNS colour keys in L/RGB.
        if mode in _ALPHA_MODES or "transparency" in img.info:
            rgba = img.convert("RGBA")
            white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            return Image.alpha_composite(white, rgba).convert("RGB")
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise BadImage(f"unsupported colour mode {mode}") from e


def _gray16_to_rgb(img: Image.Image) -> Image.Image:
    """Scale 0..65535 grey to 0..255, rounding; PIL's own convert would clip."""
    a = np.asarray(img).astype(np.int64)
    # 'I' holds 32-bit ints; we treat it as 16-bit data (what PNG and TIFF
    # greyscale scans hold) and clip anything outside that range.
    a = np.clip(a, 0, 65535)
    a8 = ((a + 128) // 257).astype(np.uint8)
    return Image.fromarray(a8, "L").convert("RGB")


def _sniff_format(prefix: bytes) -> str:
    for magic, name in _SIGNATURES:
        if prefix.startswith(magic):
            return name
    if prefix[:4] == b"RIFF" and prefix[8:12] == b"WEBP":
        return "WEBP"
    # 'BM' alone would also match text; the header's reserved field is zero.
    if prefix[:2] == b"BM" and prefix[6:10] == b"\0\0\0\0":
        return "BMP"
    return "image"


def _unidentified_reason(prefix: bytes, fmt: str) -> str:
    if fmt != "image":
        return f"corrupt {fmt} file (unreadable header)"
    for magic, what in _NOT_IMAGES:
        if prefix.startswith(magic):
            return f"not an image ({what})"
    if prefix[4:8] == b"ftyp":
        brand = prefix[8:12].decode("ascii", "replace").strip()
        if brand in ("heic", "heix", "heim", "heis", "hevc", "hevx", "mif1", "msf1"):
            return "corrupt HEIC/HEIF file" if HEIF_SUPPORTED else "unsupported format (HEIC/HEIF: install pillow-heif)"
        return "not an image (looks like a video)"
    head = prefix.lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in head):
        return "unsupported format (SVG)"
    if head.startswith((b"<!doctype html", b"<html", b"<head", b"<body")):
        return "not an image (looks like HTML)"
    if _looks_like_text(prefix):
        return "not an image (looks like text)"
    return "not an image (unrecognised format)"


def _looks_like_text(prefix: bytes) -> bool:
    if b"\x00" in prefix:
        return False
    try:
        text = prefix.decode("utf-8")
    except UnicodeDecodeError as e:
        # The 512-byte prefix may cut a multi-byte character in half.
        if e.start < len(prefix) - 3:
            return False
        text = prefix[: e.start].decode("utf-8")
    return all(c.isprintable() or c in "\t\r\n\f" for c in text)


def _decode_reason(exc: BaseException, fmt: str) -> str:
    msg = str(exc)
    low = msg.lower()
    if "truncated" in low or "broken data stream" in low or isinstance(exc, EOFError):
        return f"truncated {fmt} data"
    # One line, whatever the decoder put in its message.
    msg = " ".join(msg.split()) or type(exc).__name__
    if len(msg) > 80:
        msg = msg[:77] + "..."
    return f"corrupt {fmt} data ({msg})"


def _bomb_reason(exc: BaseException) -> str:
    # PIL refuses before it hands us the image, so only the pixel count is known.
    m = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(m.group(1)):,} pixels" if m else "too many pixels"
    return f"image too large: {size} (limit {MAX_PIXELS:,})"


def _io_reason(exc: OSError) -> str:
    return f"cannot read file ({exc.strerror or exc})"


def representative_images(paths, height: int, width: int, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` images spread evenly over ``paths`` (grouped by class, so every class shows),
    preprocessed exactly as for training; unreadable ones are left out."""
    paths = list(paths)
    if len(paths) > limit:
        paths = [paths[i] for i in np.unique(np.linspace(0, len(paths) - 1, limit).round().astype(int))]
    images = []
    for path in paths:
        try:
            images.append(load_for_model(path, height, width))
        except (BadImage, OSError):
            continue
    return images
