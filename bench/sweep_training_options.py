"""Which training options of the new layer give the best validation accuracy (the choice behind --preset best)?

    .venv/bin/python -m bench.sweep_training_options --image_dir PHOTOS \
        --bottleneck_dir /tmp/bottleneck

Needs the bottlenecks cached already (run retrain.py on the folder once with the same
--bottleneck_dir). Prints validation accuracy on the whole validation set (what the
choice is made on) and test accuracy (reported, never used to choose), over seeds.
"""
import argparse
import logging

import numpy as np

from bench.machine import DEFAULT_IMAGE_DIR
from bottleneck.cache.sets import load_sets
from bottleneck.cache.store import BottleneckCache
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
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args()
    logging.getLogger("retrain").setLevel(logging.WARNING)
    listing = list_images(args.image_dir)
    splits = [split_class(c, 10, 10)[0] for c in listing.classes]
    identity = f"{inception_v3.NAME}@sha256:{weights.ARCHIVE_SHA256[:16]}|{PREPROCESSING}"
    cache = BottleneckCache(args.bottleneck_dir, identity, inception_v3.BOTTLENECK_SIZE)
    digest_of, _ = cache.digests([im.path for c in listing.classes for im in c.images])
    data = load_sets(cache, splits, digest_of, inception_v3.BOTTLENECK_SIZE)
    grid = [
        dict(optimizer="sgd", learning_rate=0.01),
        dict(optimizer="sgd", learning_rate=0.01, early_stopping_patience=30),
        dict(optimizer="momentum", learning_rate=0.01),
        dict(optimizer="adam", learning_rate=0.001),
        dict(optimizer="adam", learning_rate=0.001, weight_decay=0.001),
        dict(optimizer="adam", learning_rate=0.001, dropout=0.5),
        dict(optimizer="adam", learning_rate=0.001, dropout=0.5, label_smoothing=0.1),
        dict(optimizer="sgd", learning_rate=0.01, dropout=0.5, label_smoothing=0.1),
        dict(optimizer="sgd", learning_rate=0.01, weight_decay=0.001),
        dict(optimizer="momentum", learning_rate=0.01, dropout=0.5, label_smoothing=0.1, weight_decay=0.001),
    ]
    print(f"{'options':<75} {'val %':>7} {'test %':>7}")
    for options in grid:
        val, test = [], []
        for seed in range(args.seeds):
            settings = TrainSettings(steps=4000, seed=seed, eval_step_interval=10, validation_batch_size=-1, **options)
            layer = train_layer(data["training"], data["validation"], len(splits), settings)
            val.append(
                (layer_probabilities(layer, data["validation"].x).argmax(1) == data["validation"].y).mean() * 100)
            test.append((layer_probabilities(layer, data["testing"].x).argmax(1) == data["testing"].y).mean() * 100)
        print(f"{str(options):<75} {np.mean(val):7.1f} {np.mean(test):7.1f}", flush=True)


if __name__ == "__main__":
    main()
