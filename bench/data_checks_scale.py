#!/usr/bin/env python3
"""How the data checks scale: out-of-fold label errors and the near-duplicate search on N bottlenecks.

    .venv/bin/python -m bench.data_checks_scale --image_dir ../shared/datasets/flower_photos_dev \\
        --bottleneck_dir DIR [--sizes 10000 200000] [--json bench/results/data-checks-scale-MACHINE.json]

The vectors are the set's real bottlenecks (from an earlier retrain.py run's cache), each repeated with
independent noise (5% of the vectors' typical size) until there are N of them, labelled by the class of the
bottleneck they came from, so the search meets the dense classes of real data.  Each size is timed in one
process: the out-of-fold predictions, the ranking, and the similarity search (exact up to
duplicates.EXACT_SEARCH_LIMIT distinct images, an inverted-file index above).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from bench.machine import command, machine, write_result
from bottleneck.cache.sets import load_sets
from bottleneck.cache.store import BottleneckCache
from bottleneck.data.split import split_classes
from bottleneck.data.walk import list_images
from bottleneck.data_checks import duplicates, label_errors
from bottleneck.data_checks.all_images import AllImages
from bottleneck.model.inception_v3 import CLASSIC_TOP_BLOCK
from bottleneck.model.modules import load_module
from bottleneck.model.weights import default_model_dir


def real_bottlenecks(image_dir: Path, bottleneck_dir: Path):
    classes = list_images(image_dir).classes
    splits = split_classes(classes, 10, 10, lambda _m: None)
    module = load_module("inception_v3", default_model_dir(), log=lambda _m: None, top_block=CLASSIC_TOP_BLOCK)
    cache = BottleneckCache(bottleneck_dir, module.identity, module.bottleneck_size)
    digest_of, _errors = cache.digests([im.path for c in classes for im in c.images])
    sets = load_sets(cache, splits, digest_of, module.bottleneck_size)
    cache.close()
    return AllImages.from_sets(sets, digest_of), [c.label for c in classes]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", type=Path, required=True)
    p.add_argument("--bottleneck_dir", type=Path, required=True)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 200_000])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    measured_on = machine()
    base, labels = real_bottlenecks(args.image_dir, args.bottleneck_dir)
    rng = np.random.default_rng(0)
    scale = float(np.linalg.norm(base.x, axis=1).mean() / np.sqrt(base.x.shape[1]))
    results = []
    for n in args.sizes:
        rows = np.arange(n) % len(base.y)
        x = (base.x[rows] + rng.normal(0, 0.05 * scale, size=(n, base.x.shape[1]))).astype(np.float32)
        sets = ["validation" if i % 10 == 8 else "testing" if i % 10 == 9 else "training" for i in range(n)]
        images = AllImages(x, base.y[rows], [f"img_{i}" for i in range(n)], sets,
                                       [f"d{i}" for i in range(n)])
        t = time.perf_counter()
        probabilities = label_errors.out_of_fold(images, len(labels))
        t_oof = time.perf_counter() - t
        t = time.perf_counter()
        errors = label_errors.rank_label_errors(images, probabilities, labels)
        t_rank = time.perf_counter() - t
        t = time.perf_counter()
        pairs, index = duplicates.similar_vectors(images.x)
        t_search = time.perf_counter() - t
        row = {"images": n, "out_of_fold_s": round(t_oof, 2), "rank_s": round(t_rank, 2),
               "similarity_search_s": round(t_search, 2), "index": index, "pairs": len(pairs),
               "disputed": len(errors)}
        print(json.dumps(row), flush=True)
        results.append(row)
    out = {"command": command(argv), "machine": measured_on, "shared_machine": True, "results": results}
    if args.json:
        write_result(args.json, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
