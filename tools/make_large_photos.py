"""Make phone-sized photos: a few photos scaled up to 12 megapixels (4032x3024), written as new JPEG files.

    .venv/bin/python -m tools.make_large_photos --image_dir PHOTOS --out DIR [--count 8]   # from the repository root

For measuring decoding on the photos that phones take, where the files at hand
are small.  A scaled-up photo is smoother than a real one and its JPEG would
decode faster, so fine noise (about what a phone's sensor leaves) is added
before it is written at JPEG quality 92, which brings the files to the size
and decoding cost of real 12-megapixel photos.  Needs only NumPy and Pillow.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

LARGE_SIZE = (4032, 3024)  # a 12-megapixel phone photo, landscape
NOISE = 6  # grey levels either side: the grain of a phone photo at base ISO


def source_photos(image_dir, count: int) -> list[Path]:
    """``count`` JPEG photos spread over the class folders of ``image_dir`` (or the folder itself)."""
    photos = sorted(p for p in Path(image_dir).rglob("*") if p.suffix.lower() in (".jpg", ".jpeg")
                    and not any(part.startswith(".") for part in p.parts))
    if not photos:
        raise SystemExit(f"no JPEG photos under {image_dir}")
    picks = np.unique(np.linspace(0, len(photos) - 1, count).round().astype(int))
    return [photos[i] for i in picks]


def write_large_photos(image_dir, out, count: int = 8, size=LARGE_SIZE, seed: int = 0) -> list[Path]:
    """Write ``count`` large photos made from photos of ``image_dir`` into ``out``; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    written = []
    for i, photo in enumerate(source_photos(image_dir, count)):
        with Image.open(photo) as image:
            upright = ImageOps.exif_transpose(image).convert("RGB")
        large = np.asarray(upright.resize(size, Image.BICUBIC), dtype=np.int16)
        large += rng.integers(-NOISE, NOISE + 1, size=large.shape, dtype=np.int16)
        target = out / f"large_{i:03d}.jpg"
        Image.fromarray(np.clip(large, 0, 255).astype(np.uint8)).save(target, quality=92)
        written.append(target)
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", required=True, help="Folder (of class sub-folders) of JPEG photos to scale up.")
    p.add_argument("--out", required=True, help="Where the large photos are written.")
    p.add_argument("--count", type=int, default=8, help="How many large photos to write.")
    args = p.parse_args(argv)
    written = write_large_photos(args.image_dir, args.out, args.count)
    megabytes = sum(path.stat().st_size for path in written) / 1e6
    print(f"{len(written)} photos of {LARGE_SIZE[0]}x{LARGE_SIZE[1]} written under {args.out} ({megabytes:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
