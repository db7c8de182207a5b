#!/usr/bin/env python3
"""How many planted copies the near-duplicate search finds, and how many pairs it reports among originals.

    .venv/bin/python -m bench.near_duplicates --image_dir ../shared/datasets/flower_photos_dev \\
        --bottleneck_dir DIR [--photos 40] [--json bench/results/near-duplicates-MACHINE.json]

``--bottleneck_dir`` must hold the set's bottlenecks (one earlier retrain.py run, default settings).
``--photos`` photos picked at random get copies made five ways (resized to 90 %, to 80 % at JPEG quality 75,
to 50 % at quality 70, cropped by 5 % a side, saved again at quality 50); their bottlenecks are computed
with the built-in Inception-v3.  For each way, the originals plus that way's copies go through
duplicates.similar_vectors, and a copy counts as found when it is paired with its original.
"""
from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from bench.data_checks_scale import real_bottlenecks
from bench.machine import command, machine, write_result
from bottleneck.data.images import load_for_model
from bottleneck.data_checks import duplicates


def _jpeg(image: Image.Image, quality: int = 80) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


WAYS = {
    "resized 90%": lambda im: _jpeg(im.resize((int(im.width * 0.9), int(im.height * 0.9)))),
    "resized 80%, quality 75": lambda im: _jpeg(im.resize((int(im.width * 0.8), int(im.height * 0.8))), 75),
    "resized 50%, quality 70": lambda im: _jpeg(im.resize((im.width // 2, im.height // 2)), 70),
    "cropped 5% a side": lambda im: _jpeg(im.crop((int(im.width * 0.05), int(im.height * 0.05),
                                                   int(im.width * 0.95), int(im.height * 0.95)))),
    "quality 50": lambda im: _jpeg(im, 50),
}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", type=Path, required=True)
    p.add_argument("--bottleneck_dir", type=Path, required=True)
    p.add_argument("--photos", type=int, default=40)
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    from bottleneck.model.inception_v3 import CLASSIC_TOP_BLOCK
    from bottleneck.model.modules import load_module
    from bottleneck.model.weights import default_model_dir

    measured_on = machine()
    images, _labels = real_bottlenecks(args.image_dir, args.bottleneck_dir)
    unique = {}
    for i, d in enumerate(images.digests):
        unique.setdefault(d, i)
    originals = images.x[list(unique.values())]
    paths = [images.paths[i] for i in unique.values()]
    module = load_module("inception_v3", default_model_dir(), log=lambda _m: None, top_block=CLASSIC_TOP_BLOCK)
    picked = np.random.default_rng(2).choice(len(paths), args.photos, replace=False)
    among_originals = len(duplicates.similar_vectors(originals)[0])
    found = {}
    for way, make in WAYS.items():
        copies = []
        for i in picked:
            with Image.open(paths[i]) as im:
                data = make(im.convert("RGB"))
            copies.append(module.features(load_for_model(data, module.height, module.width)[None]).numpy()[0])
        pairs, _index = duplicates.similar_vectors(np.vstack([originals, np.array(copies)]))
        paired = {(i, j) for i, j, _s in pairs}
        found[way] = sum((int(i), len(originals) + r) in paired for r, i in enumerate(picked))
        print(f"{way}: {found[way]}/{args.photos}", flush=True)
    results = {"command": command(argv), "machine": measured_on, "images": len(originals), "photos_copied": args.photos,
               "found": found, "pairs_among_originals": among_originals,
               "rule": {"min_similarity": duplicates.NEAR_MIN_SIMILARITY, "margin": duplicates.NEAR_MARGIN}}
    print(json.dumps(results, indent=2))
    if args.json:
        write_result(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
