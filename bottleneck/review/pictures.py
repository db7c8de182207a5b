"""The pictures the review page shows: any image the run could read, as a JPEG of a bounded size.

Sending a JPEG made here, rather than the file's own bytes, shows every format
the run reads (TIFF, 16-bit PNG, CMYK JPEG) in any browser, upright as the run
saw it, and never hands the browser a file to interpret as something else.
"""
from __future__ import annotations

import io

from PIL import Image

from ..data.images import BadImage, load_rgb_array

SIZES = {"thumb": 320, "large": 1600}  # longest side, pixels
QUALITY = 85


def jpeg_of(path, size: str) -> bytes | None:
    """The image at ``path`` as JPEG bytes no larger than SIZES[size] on its longest side; None when unreadable."""
    longest = SIZES[size]
    try:
        pixels = load_rgb_array(path, longest, longest)
    except (BadImage, OSError):
        return None
    image = Image.fromarray(pixels)
    image.thumbnail((longest, longest), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=QUALITY)
    return buffer.getvalue()
