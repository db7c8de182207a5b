"""Write every photo of a class-folder tree four ways, as new JPEG files: a data set four times as large.

    .venv/bin/python bench/four_way_copies.py [--image_dir ../shared/datasets/flower_photos_dev] --out DIR

Each photo is written as it is, mirrored, flipped upside down and turned half
a circle (upright first, by its EXIF orientation; JPEG quality 92), so every
file has its own content and its own bottleneck.  For measurements whose fixed
costs need more images than the development set has, such as
``cold_retrain.py --image_dir DIR``; the copies are not new photos, so they say
nothing about accuracy.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from machine import DEFAULT_IMAGE_DIR  # bench/machine.py, beside this script
from PIL import Image, ImageOps

WAYS = {"a": lambda im: im, "m": ImageOps.mirror, "f": ImageOps.flip, "r": lambda im: im.rotate(180)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    p.add_argument("--out", required=True)
    args = p.parse_args()
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


if __name__ == "__main__":
    main()
