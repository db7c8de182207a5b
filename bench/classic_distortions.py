"""Cached distorted copies against the classic per-step distortions, on a short run.

    .venv/bin/python -m bench.classic_distortions --image_dir PHOTOS \
        [--bottleneck_dir /tmp/bottleneck] [--model_dir DIR] [--json bench/results/classic-distortions-<data>.json]

The classic script, with any distortion flag, gave up its cache: every training
step decoded --train_batch_size random training images, distorted them and ran
each through the whole network before one update of the new layer.  This
script measures both ways on the same images, split and distortion flags
(--flip_left_right --random_crop 10 --random_scale 10 --random_brightness 10):

1. ours: ``retrain.retrain`` with --distorted_copies 3 on a copy of the
   bottleneck cache that holds the plain bottlenecks only, so what is timed is
   the one-off extraction of the copies plus 4,000 training steps; test
   accuracy as the run reports it.
2. classic: the per-step loop (batch 100, SGD at 0.01, the classic defaults),
   each step's images freshly distorted and run through the network as one
   batch (as fast as a per-step pipeline can be on a CPU, where one image at
   a time runs no slower), given the same wall-clock time as (1).  Its
   test accuracy is measured on the cached plain test bottlenecks, and the
   measured seconds per step give what its 4,000 steps would cost.

The plain bottlenecks must be cached in --bottleneck_dir already (one
retrain.py run on --image_dir with that --bottleneck_dir).
"""
import argparse
import logging
import shutil
import sqlite3
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import DEFAULT_IMAGE_DIR, command, machine, write_result
from bottleneck.cache.sets import load_sets
from bottleneck.cache.store import DB_NAME, BottleneckCache
from bottleneck.cli.retrain import build_parser, config_from_args
from bottleneck.data.images import load_rgb_array
from bottleneck.data.split import split_class
from bottleneck.data.walk import list_images
from bottleneck.model.modules import load_module
from bottleneck.model.traced import network_fn
from bottleneck.model.weights import default_model_dir
from bottleneck.pipeline import retrain
from bottleneck.training.layer import balanced_sampler

DISTORTION_FLAGS = ["--flip_left_right", "--random_crop", "10", "--random_scale", "10", "--random_brightness", "10"]


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    p.add_argument("--bottleneck_dir", default="/tmp/bottleneck")
    p.add_argument("--model_dir", default=str(default_model_dir()))
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    figures = {"command": command(), "machine": machine()}
    with tempfile.TemporaryDirectory(prefix="bench-classic-") as tmp:
        tmp = Path(tmp)
        # Only the plain bottlenecks are carried over, so the copies are really computed.
        (tmp / "bn").mkdir()
        for part in Path(args.bottleneck_dir).glob(DB_NAME + "*"):  # with its write-ahead log
            shutil.copy2(part, tmp / "bn" / part.name)
        with sqlite3.connect(tmp / "bn" / DB_NAME) as db:
            db.execute("DELETE FROM vectors WHERE variant != '' OR module LIKE '%|activations:%'")
        flags = ["--image_dir", args.image_dir, "--bottleneck_dir", str(tmp / "bn"), "--model_dir", args.model_dir,
                 "--output_graph", str(tmp / "g.pb"), "--output_labels", str(tmp / "l.txt"),
                 "--summaries_dir", str(tmp / "logs"), "--checkpoint_path", str(tmp / "ckpt"),
                 "--distorted_copies", str(args.copies), "--random_seed", "0", "--quiet", *DISTORTION_FLAGS]
        config = config_from_args(build_parser().parse_args(flags))
        start = time.perf_counter()
        ours = retrain(config)
        ours_seconds = time.perf_counter() - start
        figures["ours"] = {
            "seconds": round(ours_seconds, 1),
            "copies_extraction_s": round(ours.timings["bottlenecks"], 1),
            "training_s": round(ours.timings["training"], 1),
            "steps": config.training.steps,
            "test_accuracy": ours.test_accuracy,
        }
        print(f"ours: {ours_seconds:.0f} s in all ({ours.timings['bottlenecks']:.0f} s for the copies, "
              f"{ours.timings['training']:.1f} s training), test accuracy {ours.test_accuracy * 100:.1f}%", flush=True)
        figures["classic"] = classic_per_step(config, budget_s=ours_seconds)
    c = figures["classic"]
    print(f"classic per-step: {c['steps']} steps in {c['seconds']:.0f} s ({c['seconds_per_step']:.2f} s/step), "
          f"test accuracy {c['test_accuracy'] * 100:.1f}%; its {config.training.steps} steps would take "
          f"{c['projected_full_run_h']:.1f} h")
    if args.json:
        write_result(args.json, figures)


def classic_per_step(config, budget_s: float) -> dict:
    """The classic loop: fresh distortions through the network at every step, for ``budget_s`` seconds."""
    module = load_module(config.bottlenecks.tfhub_module, config.bottlenecks.model_dir, log=lambda *_: None)
    features = network_fn(module)
    distortion = config.bottlenecks.distortion
    listing = list_images(config.input.image_dir)
    inputs = config.input
    splits = [split_class(c, inputs.validation_percentage, inputs.testing_percentage)[0] for c in listing.classes]
    cache = BottleneckCache(config.bottlenecks.bottleneck_dir, module.identity, module.bottleneck_size)
    digest_of, _ = cache.digests([im.path for c in listing.classes for im in c.images])
    test = load_sets(cache, splits, digest_of, module.bottleneck_size)["testing"]
    cache.close()
    paths = [im.path for sp in splits for im in sp.training]
    labels = np.array([i for i, sp in enumerate(splits) for _ in sp.training], np.int32)
    rng = np.random.default_rng(0)
    sample = balanced_sampler(labels, len(splits), rng)
    weights = np.clip(rng.normal(0, 0.001, (module.bottleneck_size, len(splits))), -0.002, 0.002).astype(np.float32)
    biases = np.zeros(len(splits), np.float32)
    scale = (1 + config.bottlenecks.random_crop / 100) * (1 + config.bottlenecks.random_scale / 100)
    side = int(module.height * scale) + 1
    start, steps = time.perf_counter(), 0
    while time.perf_counter() - start < budget_s:
        rows = sample(config.training.batch_size)
        pixels = np.stack([distortion.apply(load_rgb_array(paths[r], side, side), module.height, module.width, rng)
                           for r in rows])
        x = features(pixels).numpy()
        logits = x @ weights + biases
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(rows)), labels[rows]] -= 1.0
        p /= len(rows)
        weights -= np.float32(config.training.learning_rate) * (x.T @ p)
        biases -= np.float32(config.training.learning_rate) * p.sum(axis=0)
        steps += 1
    seconds = time.perf_counter() - start
    accuracy = float(((test.x @ weights + biases).argmax(axis=1) == test.y).mean())
    return {
        "steps": steps, "seconds": round(seconds, 1), "seconds_per_step": round(seconds / steps, 3),
        "test_accuracy": accuracy,
        "projected_full_run_h": round(seconds / steps * config.training.steps / 3600, 2),
    }


if __name__ == "__main__":
    main()
