#!/usr/bin/env python3
"""How far one plain SGD step moves each kernel of Inception-v3, relative to the kernel's size.

    .venv/bin/python -m bench.gradient_scales [--image_dir ../shared/datasets/flower_photos_dev] [--per_class 6] \
        [--json bench/results/gradient-scales-MACHINE.json]

The built-in network up to ``mixed_9`` (``--preset best``'s) with a new layer
fitted by least squares to the first ``--per_class`` photos of each class;
one cross-entropy gradient over those photos.  For every kernel the ratio of
the gradient's norm to the kernel's norm is what a plain SGD step of rate 1
changes it by, as a share of its size.  Batch normalisation is folded into the
kernels, so their norms, and these ratios, differ from block to block; the
spread is why ``--network_optimizer lars`` exists (docs/fine-tuning.md).
Reported: the median and largest ratio of each block, and the whole spread.
"""
from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from bench.machine import DEFAULT_IMAGE_DIR, command, machine, machine_name, write_result


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    parser.add_argument("--per_class", type=int, default=6)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    record = machine()

    import tensorflow as tf

    from bottleneck.data.images import load_for_model
    from bottleneck.model.modules import load_module
    from bottleneck.model.trainable import trainable_network
    from bottleneck.model.weights import default_model_dir

    module = load_module("inception_v3", default_model_dir(), log=lambda *a: None, top_block="mixed_9")
    network = trainable_network(module)
    root = Path(args.image_dir)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for index, name in enumerate(classes):
        chosen = sorted((root / name).glob("*.jpg"))[:args.per_class]
        paths += chosen
        labels += [index] * len(chosen)
    images = tf.constant(np.stack([load_for_model(p, module.height, module.width) for p in paths]))
    y = np.array(labels, np.int32)
    features = network.forward(images).numpy()
    targets = np.eye(len(classes))[y] * 10 - 5  # a working classifier, as a run's new layer is
    fitted = np.linalg.lstsq(np.c_[features, np.ones(len(features))], targets, rcond=None)[0].astype(np.float32)
    with tf.GradientTape() as tape:
        logits = tf.matmul(network.forward(images), fitted[:-1]) + fitted[-1]
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
    gradients = tape.gradient(loss, network.variables)
    ratios = {name: float(tf.norm(g) / tf.norm(v)) for name, v, g in zip(network.names, network.variables, gradients)
              if name.endswith("/kernel")}
    by_block = defaultdict(list)
    for name, ratio in ratios.items():
        by_block[name.split("/")[0]].append(ratio)
    order = sorted(by_block, key=lambda b: (not b.startswith("conv"), len(b), b))
    result = {
        "command": command(argv), "machine": record, "image_dir": args.image_dir, "photos": len(paths),
        "loss": float(loss),
        "by_block": {b: {"median": float(np.median(by_block[b])), "max": max(by_block[b]), "kernels": len(by_block[b])}
                     for b in order},
        "spread_max_over_min": max(ratios.values()) / min(ratios.values()),
        "ratios": ratios,
    }
    for block, figures in result["by_block"].items():
        print(f"{block:8s} median {figures['median']:.2e}  max {figures['max']:.2e}")
    print(f"largest / smallest ratio: {result['spread_max_over_min']:.0f}")
    write_result(args.json or f"bench/results/gradient-scales-{machine_name(record)}.json", result)


if __name__ == "__main__":
    main()
