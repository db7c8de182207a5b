"""How many distorted copies per training image are worth computing (--distorted_copies)?

    .venv/bin/python -m bench.sweep_distorted_copies --image_dir PHOTOS --bottleneck_dir /tmp/bottleneck \
        --copies 1 2 3 5 10 --flip_left_right --random_crop 10 --random_scale 10 --random_brightness 10

Needs the copies cached already: run retrain.py once with the same distortion flags,
the same --bottleneck_dir and --distorted_copies at least the largest count.  Copy k
is the same whatever the count, so one extraction serves every count.  Prints
validation accuracy on the whole validation set (what the default is chosen on)
and test accuracy (reported only), averaged over seeds.
"""
import argparse
import logging

import numpy as np

from bench.machine import DEFAULT_IMAGE_DIR
from bottleneck.cache.sets import load_sets
from bottleneck.cache.store import BottleneckCache
from bottleneck.data.distort import Distortion
from bottleneck.data.split import split_class
from bottleneck.data.walk import list_images
from bottleneck.model import inception_v3, weights
from bottleneck.model.modules import PREPROCESSING
from bottleneck.training.layer import TrainSettings, train_layer
from bottleneck.training.numerics import layer_probabilities


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    p.add_argument("--bottleneck_dir", default="/tmp/bottleneck")
    p.add_argument("--copies", type=int, nargs="+", default=[1, 2, 3, 5, 10])
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--flip_left_right", action="store_true")
    p.add_argument("--random_crop", type=float, default=0)
    p.add_argument("--random_scale", type=float, default=0)
    p.add_argument("--random_brightness", type=float, default=0)
    args = p.parse_args()
    logging.getLogger("retrain").setLevel(logging.WARNING)
    distortion = Distortion(args.flip_left_right, args.random_crop, args.random_scale, args.random_brightness)
    listing = list_images(args.image_dir)
    splits = [split_class(c, 10, 10)[0] for c in listing.classes]
    identity = f"{inception_v3.NAME}@sha256:{weights.ARCHIVE_SHA256[:16]}|{PREPROCESSING}"
    dim = inception_v3.BOTTLENECK_SIZE
    cache = BottleneckCache(args.bottleneck_dir, identity, dim)
    digest_of, _ = cache.digests([im.path for c in listing.classes for im in c.images])
    plain = load_sets(cache, splits, digest_of, dim)
    validation, testing = plain["validation"], plain["testing"]
    print(f"{'copies':>6} {'val %':>7} {'test %':>7}")
    for copies in [0] + args.copies:
        train = (load_sets(cache, splits, digest_of, dim, distortion, copies)["training"] if copies
                 else plain["training"])
        val, test = [], []
        for seed in range(args.seeds):
            layer = train_layer(train, validation, len(splits), TrainSettings(seed=seed, validation_batch_size=-1))
            val.append((layer_probabilities(layer, validation.x).argmax(1) == validation.y).mean() * 100)
            test.append((layer_probabilities(layer, testing.x).argmax(1) == testing.y).mean() * 100)
        label = "none" if copies == 0 else str(copies)
        print(f"{label:>6} {np.mean(val):7.1f} {np.mean(test):7.1f}", flush=True)


if __name__ == "__main__":
    main()
