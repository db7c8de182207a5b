"""Do three cheap changes beat the plain bottleneck: test-time flips, a larger input, two layers concatenated?

    .venv/bin/python -m bench.cheap_wins --bottleneck_dir /tmp/bottleneck [--image_dir PHOTOS] \
        [--work_dir /tmp/cheap_wins] [--large_size 399] [--fold_seeds 3] [--json bench/results/cheap-wins-MACHINE.json]

Every image gets, for both mixed_9 (--preset best) and mixed_10 (the classic pool_3):

- the plain bottleneck, from --bottleneck_dir under the cache identity that
  retrain.py --bottleneck_layer uses (computed there when missing, as
  bench.sweep_bottleneck_layer does, so a later retrain.py run reuses it);
- the bottleneck of the image mirrored left to right (the 299-pixel input,
  flipped);
- the bottleneck of the image resized to --large_size pixels: the network is
  convolutional up to its final average, so a larger input gives a larger top
  grid (11x11 at 399) whose average is still one vector per block.

One forward pass gives both blocks (mixed_10 is computed on top of mixed_9's
grid).  The flipped and large vectors are kept in --work_dir as npz files, not
in the tool's cache.  A short check first runs the same pass on a few unflipped
299-pixel images and records how far it lands from the cached vectors.

Then ten-fold cross-validation over all images, stratified by class (the
folds of the tool's label-error search, copies in one fold), the same folds
and the same layer seed for every variant of a fold, so each variant's
accuracy on a fold pairs with the baseline's.  The layer is trained as
--preset best trains it (Adam, 0.001, 4,000 class-balanced steps of 100).
Variants, per block:

- baseline: plain vectors;
- flip_probabilities: the baseline's layer, each test image's probabilities
  averaged with its mirror image's;
- flip_vectors: the baseline's layer on the average of image and mirror vectors;
- flip_trained: a layer trained on plain and mirrored rows (twice the rows),
  tested as flip_probabilities;
- large: a layer trained and tested on the --large_size vectors;
- concat: a layer on mixed_9 and mixed_10 side by side (the same for both blocks).

A variant counts as a gain beyond noise when its paired difference from the
baseline, averaged over all folds of all fold seeds, exceeds twice the
standard error of the mean of a seed's ten fold differences (averaged over the
seeds).  The seeds reshuffle the same images, so the standard error is not
divided further by their number.
"""
import argparse
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from bench.cached import builtin_block, filled_cache
from bench.machine import DEFAULT_IMAGE_DIR, command, machine, write_result
from bottleneck.cache.sets import SplitData
from bottleneck.cache.store import Entry
from bottleneck.data.images import load_for_model
from bottleneck.data.walk import list_images
from bottleneck.data_checks.label_errors import assign_folds
from bottleneck.model.inception_v3 import INPUT_SIZE, split_network
from bottleneck.model.modules import BUILTIN_MODULE, load_module
from bottleneck.model.weights import default_model_dir
from bottleneck.training.layer import TrainSettings, train_layer
from bottleneck.training.numerics import layer_probabilities

FOLDS = 10
BLOCKS = ("mixed_9", "mixed_10")
BATCH = 16
CHECK_IMAGES = 16
VARIANTS = ("baseline", "flip_probabilities", "flip_vectors", "flip_trained", "large", "concat")


def plain_vectors(args, paths):
    """The plain bottlenecks of each block from the tool's cache, computing the missing ones there."""
    vectors, digests, timing = {}, None, {}
    for top in BLOCKS:
        with filled_cache(builtin_block(args.model_dir, top), args.bottleneck_dir, paths) as filled:
            vectors[top] = filled.cache.matrix([Entry(filled.digest_of[p]) for p in paths])
        digests = [filled.digest_of[p] for p in paths]
        timing[top] = {"computed": filled.computed, "seconds": filled.seconds}
        print(f"plain {top}: {filled.computed} computed in {filled.seconds:.0f} s", flush=True)
    return vectors, digests, timing


def two_block_pass(arrays, size: int):
    """f(images [N, size, size, 3] in [0, 1]) -> (mixed_9 average, mixed_10 average), one traced pass."""
    import tensorflow as tf

    lower, upper = split_network(arrays, tuned_blocks=1, top="mixed_10")  # lower ends at mixed_9's grid

    @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32)], autograph=False)
    def both(images):
        grid = lower(images)
        return tf.reduce_mean(grid, axis=[1, 2]), upper(grid)

    return both


def run_pass(fn, paths, size: int, flip: bool):
    """Both blocks' vectors of every image at ``size`` (mirrored if ``flip``); network and wall seconds."""
    out = {top: [] for top in BLOCKS}
    network = cpu = 0.0
    started = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        def decode(path):
            pixels = load_for_model(path, size, size)
            return pixels[:, ::-1] if flip else pixels

        batches = [paths[i:i + BATCH] for i in range(0, len(paths), BATCH)]
        fn(np.zeros((1, size, size, 3), np.float32))  # trace outside the timing
        for n, batch in enumerate(batches):
            pixels = np.stack(list(pool.map(decode, batch)))
            t, c = time.perf_counter(), time.process_time()
            m9, m10 = fn(pixels)
            out["mixed_9"].append(m9.numpy())
            out["mixed_10"].append(m10.numpy())
            network += time.perf_counter() - t
            cpu += time.process_time() - c
            if n % 10 == 0:
                print(f"  {size}px{' flipped' if flip else ''}: {n * BATCH + len(batch)}/{len(paths)}", flush=True)
    wall = time.perf_counter() - started
    return {top: np.concatenate(v) for top, v in out.items()}, {"network_seconds": network, "wall_seconds": wall,
                                                                 "network_cpu_seconds": cpu, "images": len(paths)}


def cached_pass(work_dir: Path, name: str, digests, compute):
    """The npz of a pass in ``work_dir`` when it holds every digest, else ``compute()`` saved there."""
    path = work_dir / f"{name}.npz"
    if path.exists():
        held = np.load(path, allow_pickle=False)
        if list(held["digests"]) == list(digests):
            print(f"{name}: reused {path}", flush=True)
            timing = {k: float(held[k]) for k in ("network_seconds", "wall_seconds", "network_cpu_seconds")}
            # The times are those of the run that computed the vectors, on whatever load it had.
            return {top: held[top] for top in BLOCKS}, {**timing, "images": len(digests), "reused_from": str(path)}
    vectors, timing = compute()
    work_dir.mkdir(parents=True, exist_ok=True)
    np.savez(path, digests=np.array(digests), **vectors, **{k: timing[k] for k in
                                                           ("network_seconds", "wall_seconds", "network_cpu_seconds")})
    print(f"{name}: {timing['network_seconds'] / timing['images'] * 1000:.0f} ms/image network, "
          f"{timing['wall_seconds']:.0f} s in all", flush=True)
    return vectors, timing


def fit(x, y, num_classes: int, seed: int):
    settings = TrainSettings(seed=seed, optimizer="adam", learning_rate=0.001, validation_batch_size=-1)
    return train_layer(SplitData(x, y, []), SplitData(x[:1], y[:1], []), num_classes, settings)


def fold_accuracies(plain, flip, large, y, fold, seed: int, num_classes: int) -> dict:
    """Per block, per variant: the accuracy (%) on each held-out fold."""
    concat = np.concatenate([plain["mixed_9"], plain["mixed_10"]], axis=1)
    acc = {top: {v: [] for v in VARIANTS} for top in BLOCKS}
    for k in range(FOLDS):
        tr, held = fold != k, fold == k
        layer_seed = seed * 100 + k
        yh = y[held]

        def score(p, yh=yh):
            return float((p.argmax(1) == yh).mean() * 100)

        concat_acc = score(layer_probabilities(fit(concat[tr], y[tr], num_classes, layer_seed), concat[held]))
        for top in BLOCKS:
            p, f, lg = plain[top], flip[top], large[top]
            base = fit(p[tr], y[tr], num_classes, layer_seed)
            prob, prob_flip = layer_probabilities(base, p[held]), layer_probabilities(base, f[held])
            both = fit(np.concatenate([p[tr], f[tr]]), np.concatenate([y[tr], y[tr]]), num_classes, layer_seed)
            big = fit(lg[tr], y[tr], num_classes, layer_seed)
            acc[top]["baseline"].append(score(prob))
            acc[top]["flip_probabilities"].append(score(prob + prob_flip))
            acc[top]["flip_vectors"].append(score(layer_probabilities(base, (p[held] + f[held]) / 2)))
            acc[top]["flip_trained"].append(score(layer_probabilities(both, p[held])
                                                  + layer_probabilities(both, f[held])))
            acc[top]["large"].append(score(layer_probabilities(big, lg[held])))
            acc[top]["concat"].append(concat_acc)
    return acc


def summarise(per_seed: list[dict], counts: np.ndarray) -> dict:
    """Mean accuracy, paired differences from the baseline and the verdict, per block and variant."""
    out = {}
    for top in BLOCKS:
        out[top] = {}
        base = np.array([s[top]["baseline"] for s in per_seed])  # [seeds, folds]
        for v in VARIANTS:
            acc = np.array([s[top][v] for s in per_seed])
            # Fold sizes differ by an image or two: the share of all images right weights folds by size.
            overall = float(((acc * counts).sum(axis=1) / counts.sum(axis=1)).mean())
            diff = acc - base
            se_per_seed = diff.std(axis=1, ddof=1) / np.sqrt(FOLDS)
            mean, se = float(diff.mean()), float(se_per_seed.mean())
            out[top][v] = {"accuracy": overall, "fold_accuracies": acc.round(2).tolist(),
                           "paired_differences": diff.round(2).tolist(),
                           "mean_difference": mean, "standard_error": se,
                           "per_seed_mean_difference": diff.mean(axis=1).round(3).tolist(),
                           "per_seed_standard_error": se_per_seed.round(3).tolist(),
                           "gain_beyond_noise": bool(v != "baseline" and mean > 2 * se)}
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    p.add_argument("--bottleneck_dir", default="/tmp/bottleneck")
    p.add_argument("--model_dir", default=str(default_model_dir()))
    p.add_argument("--work_dir", default="/tmp/cheap_wins")
    p.add_argument("--large_size", type=int, default=399)
    p.add_argument("--fold_seeds", type=int, default=3)
    p.add_argument("--json", default=None)
    args = p.parse_args()
    measured_on = machine()
    logging.getLogger("retrain").setLevel(logging.WARNING)
    listing = list_images(args.image_dir)
    paths = [im.path for c in listing.classes for im in c.images]
    y = np.array([i for i, c in enumerate(listing.classes) for _ in c.images])
    num_classes = len(listing.classes)

    plain, digests, plain_timing = plain_vectors(args, paths)
    arrays = load_module(BUILTIN_MODULE, args.model_dir).weights
    small = two_block_pass(arrays, INPUT_SIZE)
    check, _ = run_pass(small, paths[:CHECK_IMAGES], INPUT_SIZE, flip=False)
    check_diff = {top: float(np.abs(check[top] - plain[top][:CHECK_IMAGES]).max()) for top in BLOCKS}
    print(f"check against the cache, largest difference: {check_diff}", flush=True)
    work = Path(args.work_dir)
    flip, flip_timing = cached_pass(work, f"flip-{INPUT_SIZE}", digests,
                                    lambda: run_pass(small, paths, INPUT_SIZE, flip=True))
    large, large_timing = cached_pass(work, f"plain-{args.large_size}", digests,
                                      lambda: run_pass(two_block_pass(arrays, args.large_size), paths,
                                                       args.large_size, flip=False))

    per_seed = []
    for seed in range(args.fold_seeds):
        started = time.perf_counter()
        fold = assign_folds(y, digests, FOLDS, seed)
        per_seed.append(fold_accuracies(plain, flip, large, y, fold, seed, num_classes))
        print(f"fold seed {seed}: {time.perf_counter() - started:.0f} s", flush=True)
    counts = np.stack([np.bincount(assign_folds(y, digests, FOLDS, s), minlength=FOLDS)
                       for s in range(args.fold_seeds)])
    summary = summarise(per_seed, counts)

    print(f"\n{'block':9} {'variant':19} {'CV acc %':>9} {'paired diff':>12} {'SE':>6}  beyond noise")
    for top in BLOCKS:
        for v in VARIANTS:
            s = summary[top][v]
            print(f"{top:9} {v:19} {s['accuracy']:9.2f} {s['mean_difference']:+12.2f} {s['standard_error']:6.2f}  "
                  f"{'yes' if s['gain_beyond_noise'] else 'no'}")
    per_image = {f"forward pass {INPUT_SIZE}px flipped": flip_timing["network_seconds"] / len(paths),
                 f"forward pass {args.large_size}px": large_timing["network_seconds"] / len(paths)}
    print("network seconds per image:", {k: round(v, 4) for k, v in per_image.items()})
    if args.json:
        write_result(args.json, {"command": command(), "machine": measured_on, "image_dir": args.image_dir,
                                 "images": len(paths), "folds": FOLDS, "fold_seeds": args.fold_seeds,
                                 "large_size": args.large_size, "training": "adam 0.001, 4000 steps of 100",
                                 "rule": "gain beyond noise: mean paired difference > 2 x standard error of a "
                                         "seed's 10 fold differences (averaged over seeds)",
                                 "check_largest_difference_from_cache": check_diff,
                                 "plain_extraction": plain_timing, "flip_pass": flip_timing,
                                 "large_pass": large_timing, "network_seconds_per_image": per_image,
                                 "results": summary})


if __name__ == "__main__":
    main()
