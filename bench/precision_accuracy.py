"""Does the network's precision cost accuracy?  Ten-fold cross-validation of the new layer per --precision.

    .venv/bin/python -m bench.precision_accuracy [--image_dir ../shared/datasets/flower_photos_dev] \
        [--bottleneck_dir /tmp/bottleneck] [--model_dir DIR] [--seeds 3] [--json out.json]

For float32, bfloat16 and int8 the bottlenecks (classic pool_3) of every image
are computed into --bottleneck_dir under that precision's own cache identity,
exactly as retrain.py --precision would, so a later run reuses them.  The
classic new layer (SGD 0.01, 4,000 steps) is then judged by ten-fold
cross-validation over all images (every image held out once), for --seeds
seeds.  The same folds are used for every precision, and each precision's
vectors are also compared with float32's (cosine per image).  bfloat16 is
forced whatever the processor (on one without native bfloat16 it is emulated,
slowly, but gives the same numbers).
"""
import argparse
import functools
import logging

import numpy as np

from bench.cached import filled_cache
from bench.machine import DEFAULT_IMAGE_DIR, command, machine, write_result
from bottleneck.cache.sets import SplitData
from bottleneck.cache.store import Entry
from bottleneck.data.walk import list_images
from bottleneck.model.modules import BUILTIN_MODULE, load_module
from bottleneck.model.precision import choose
from bottleneck.model.runner import runner, with_precision
from bottleneck.model.weights import default_model_dir
from bottleneck.training.layer import TrainSettings, train_layer
from bottleneck.training.numerics import layer_probabilities

FOLDS = 10
PRECISIONS = ("float32", "bfloat16", "int8")


def cross_validated(x: np.ndarray, y: np.ndarray, num_classes: int, seed: int) -> float:
    """Share of all images classified correctly when held out, over FOLDS folds (the same folds for every seed)."""
    fold = np.random.default_rng(0).permutation(len(y)) % FOLDS
    correct = 0
    for k in range(FOLDS):
        train, held = SplitData(x[fold != k], y[fold != k], []), SplitData(x[fold == k], y[fold == k], [])
        layer = train_layer(train, SplitData(held.x[:1], held.y[:1], []), num_classes,
                            TrainSettings(seed=seed * FOLDS + k, validation_batch_size=-1))
        correct += int((layer_probabilities(layer, held.x).argmax(1) == held.y).sum())
    return correct / len(y) * 100


def vectors(precision_name: str, paths, args) -> tuple[np.ndarray, float, int]:
    """Every image's bottleneck at this precision (computed once into the cache), seconds spent, images computed."""
    precision = choose(precision_name, flags=frozenset({"avx512_bf16"}), gpus=[])
    module = with_precision(load_module(BUILTIN_MODULE, args.model_dir), precision)
    make = functools.partial(runner, module, precision, args.model_dir)
    with filled_cache(module, args.bottleneck_dir, paths, make_features=make) as filled:
        return filled.cache.matrix([Entry(filled.digest_of[p]) for p in paths]), filled.seconds, filled.computed


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    p.add_argument("--bottleneck_dir", default="/tmp/bottleneck")
    p.add_argument("--model_dir", default=str(default_model_dir()))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    measured_on = machine()
    logging.getLogger("retrain").setLevel(logging.WARNING)
    listing = list_images(args.image_dir)
    paths = [im.path for c in listing.classes for im in c.images]
    y = np.array([i for i, c in enumerate(listing.classes) for _ in c.images])
    rows, reference = [], None
    print(f"{'precision':10} {'10-fold CV % per seed':>26} {'cosine to float32 min/mean':>28}")
    for name in PRECISIONS:
        x, seconds, computed = vectors(name, paths, args)
        reference = x if reference is None else reference
        cosine = (x * reference).sum(1) / np.linalg.norm(x, axis=1) / np.linalg.norm(reference, axis=1)
        cv = [cross_validated(x, y, len(listing.classes), seed) for seed in range(args.seeds)]
        rows.append({"precision": name, "cross_validated_accuracy": cv, "mean": float(np.mean(cv)),
                     "cosine_to_float32_min": float(cosine.min()), "cosine_to_float32_mean": float(cosine.mean()),
                     "computed": computed, "extraction_seconds": seconds})
        print(f"{name:10} {' '.join(f'{v:.1f}' for v in cv):>26} {cosine.min():13.4f} {cosine.mean():.4f}",
              flush=True)
    base = rows[0]["mean"]
    for row in rows:
        row["points_vs_float32"] = row["mean"] - base
    if args.json:
        write_result(args.json, {
            "command": command(), "machine": measured_on,
            "image_dir": args.image_dir, "images": len(paths), "seeds": args.seeds, "folds": FOLDS,
            "training": "classic new layer: SGD 0.01, 4000 steps, batch 100", "rows": rows})


if __name__ == "__main__":
    main()
