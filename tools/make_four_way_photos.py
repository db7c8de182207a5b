"""Make a data set four times as large: every photo of a class-folder tree written four ways, as new JPEG files.

    .venv/bin/python -m tools.make_four_way_photos --image_dir PHOTOS --out DIR   # from the repository root

Each photo is written as it is, mirrored, flipped upside down and turned half
a circle (upright first, by its EXIF orientation; JPEG quality 92), so every
file has its own content and its own bottleneck.  For measurements whose fixed
costs need more images than the development set has, such as
``python -m bench.cold_retrain --image_dir DIR``; the copies are not new photos,
so they say nothing about accuracy.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageOps

WAYS = {"a": lambda im: im, "m": ImageOps.mirror, "f": ImageOps.flip, "r": lambda im: im.rotate(180)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", required=True, help="Folder of class sub-folders of .jpg photos.")
    p.add_argument("--out", required=True, help="Where the four-way tree is written (same class folders).")
    args = p.parse_args(argv)
    written = 0
    for folder in sorted(d for d in Path(args.image_dir).iterdir() if d.is_dir()):
        target = Path(args.out) / folder.name
        target.mkdir(parents=True, exist_ok=True)
        for photo in sorted(folder.glob("*.jpg")):
            with Image.open(photo) as image:
                upright = ImageOps.exif_transpose(image).convert("RGB")
            for tag, way in WAYS.items():
                way(upright).save(target / f"{photo.stem}_{tag}.jpg", quality=92)
                written += 1
    print(f"{written} photos written under {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
