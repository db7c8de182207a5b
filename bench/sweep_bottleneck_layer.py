"""Which block of Inception-v3 makes the best bottleneck for new classes (--bottleneck_layer)?

    .venv/bin/python -m bench.sweep_bottleneck_layer --bottleneck_dir /tmp/bottleneck [--model_dir DIR] \
        --image_dir PHOTOS [--seeds 3] [--json bench/results/bottleneck-layer-<data>.json]

For each candidate (mixed_10's average, the classic pool_3; mixed_9's; mixed_8's)
the bottlenecks of every image are computed into --bottleneck_dir under that
layer's own cache identity, exactly as retrain.py --bottleneck_layer would, so
a later retrain.py run reuses them (one forward pass per image and layer;
nothing when cached).  The new layer is then trained with
--preset best's optimizer (Adam, 0.001, 4,000 steps) and judged two ways:

- the tool's own split (10% validation, 10% test by name hash): validation
  accuracy, which a user would choose on, and test accuracy, over --seeds;
- ten-fold cross-validation over all images (900 training, 100 held out in
  each fold, every image held out once).  With only 90 test images one image
  is 1.1 points, so this is the steadier figure to choose a default on.
"""
import argparse
import logging

import numpy as np

from bench.cached import builtin_block, filled_cache
from bench.machine import DEFAULT_IMAGE_DIR, command, machine, write_result
from bottleneck.cache.sets import SplitData, load_sets
from bottleneck.data.split import split_class
from bottleneck.data.walk import list_images
from bottleneck.model.inception_v3 import TOP_BLOCKS
from bottleneck.model.weights import default_model_dir
from bottleneck.training.layer import TrainSettings, train_layer
from bottleneck.training.numerics import layer_probabilities

FOLDS = 10


def accuracy(layer, data: SplitData) -> float:
    return float((layer_probabilities(layer, data.x).argmax(1) == data.y).mean() * 100)


def settings(seed: int) -> TrainSettings:
    return TrainSettings(seed=seed, optimizer="adam", learning_rate=0.001, validation_batch_size=-1)


def cross_validated(data: dict[str, SplitData], num_classes: int) -> float:
    """Share of all images classified correctly when held out, over FOLDS folds."""
    x = np.concatenate([d.x for d in data.values()])
    y = np.concatenate([d.y for d in data.values()])
    fold = np.random.default_rng(0).permutation(len(y)) % FOLDS
    correct = 0
    for k in range(FOLDS):
        train, held = SplitData(x[fold != k], y[fold != k], []), SplitData(x[fold == k], y[fold == k], [])
        layer = train_layer(train, SplitData(held.x[:1], held.y[:1], []), num_classes, settings(k))
        correct += int((layer_probabilities(layer, held.x).argmax(1) == held.y).sum())
    return correct / len(y) * 100


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
    splits = [split_class(c, 10, 10)[0] for c in listing.classes]
    paths = [im.path for c in listing.classes for im in c.images]
    rows = []
    print(f"{'bottleneck':10} {'size':>5} {'val %':>6} {'test %':>7} {'10-fold CV %':>13} {'extraction s':>13}")
    for top in TOP_BLOCKS:
        with filled_cache(builtin_block(args.model_dir, top), args.bottleneck_dir, paths) as filled:
            module, digest_of, seconds = filled.module, filled.digest_of, filled.seconds
            data = load_sets(filled.cache, splits, digest_of, module.bottleneck_size)
        val, test = [], []
        for seed in range(args.seeds):
            layer = train_layer(data["training"], data["validation"], len(splits), settings(seed))
            val.append(accuracy(layer, data["validation"]))
            test.append(accuracy(layer, data["testing"]))
        cv = cross_validated(data, len(splits))
        rows.append({"bottleneck_layer": top, "size": module.bottleneck_size, "validation_accuracy": np.mean(val),
                     "test_accuracy": np.mean(test), "cross_validated_accuracy": cv, "images": len(digest_of),
                     "validation_count": len(data["validation"].y), "test_count": len(data["testing"].y),
                     "computed": filled.computed, "extraction_seconds": seconds})
        print(f"{top:10} {module.bottleneck_size:5d} {np.mean(val):6.1f} {np.mean(test):7.1f} {cv:13.1f} "
              f"{seconds:13.1f}" + (f" ({filled.computed} images)" if filled.computed else ""), flush=True)
    if args.json:
        write_result(args.json, {"command": command(), "machine": measured_on, "image_dir": args.image_dir,
                                 "seeds": args.seeds, "folds": FOLDS, "rows": rows})


if __name__ == "__main__":
    main()
