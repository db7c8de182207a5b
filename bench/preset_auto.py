"""What does --preset auto choose on a real data set, how long does its search take, and does its choice
cross-validate as well as --preset best?

    .venv/bin/python -m bench.preset_auto [--image_dir ../shared/datasets/flower_photos_dev] \
        [--bottleneck_dir /tmp/bottleneck] [--model_dir DIR] [--json bench/results/preset-auto-<machine>.json]

1. One ``retrain.py --preset auto`` run, in its own process as a user starts it, its outputs in a scratch folder
   and its bottlenecks in ``--bottleneck_dir`` (a warm cache makes the run's time the search's; a cold one adds
   each layer's forward passes).  From its summary.json: the table, the chosen setting, the search's own seconds,
   the select phase's (with any bottlenecks of the second layer it computed) and the run's test accuracy.
2. The yardstick of docs/accuracy.md: ten-fold cross-validation over all images with ``training/layer.py``, the
   folds of ``bench.sweep_bottleneck_layer`` (91.6 % for --preset best on flower_photos_dev), for the chosen
   setting and for --preset best's, on the same folds.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench.machine import DEFAULT_IMAGE_DIR, command, machine, machine_name, scratch_outputs, write_result
from bottleneck.cache.sets import SplitData, load_sets
from bottleneck.cache.store import BottleneckCache
from bottleneck.config.settings import PRESETS, RetrainConfig, with_flags
from bottleneck.data.split import split_class
from bottleneck.data.walk import list_images
from bottleneck.model.modules import BUILTIN_MODULE, load_module
from bottleneck.model.weights import default_model_dir
from bottleneck.training.layer import train_layer
from bottleneck.training.numerics import layer_probabilities

REPO = Path(__file__).resolve().parent.parent
FOLDS = 10  # as bench.sweep_bottleneck_layer


def run_preset_auto(image_dir: str, bottleneck_dir: str, model_dir: str, folder: Path) -> tuple[dict, float]:
    """summary.json of one retrain.py --preset auto run, and the run's wall seconds."""
    # Not --quiet: the table is in the log.
    outputs = [flag for flag in scratch_outputs(folder) if not flag.startswith(("--bottleneck_dir", "--quiet"))]
    argv = [sys.executable, "retrain.py", f"--image_dir={image_dir}", f"--bottleneck_dir={bottleneck_dir}",
            f"--model_dir={model_dir}", "--preset=auto", "--skip_data_checks", "--skip_heatmaps", *outputs]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"retrain.py --preset auto failed ({done.returncode}):\n{done.stderr[-3000:]}")
    print("\n".join(line for line in done.stderr.splitlines() if "preset auto" in line or "% ± " in line), flush=True)
    return json.loads((folder / "graph_report" / "summary.json").read_text()), seconds


def all_images(image_dir: str, bottleneck_dir: str, model_dir: str, layer: str) -> SplitData:
    """Every image's cached bottleneck at ``layer`` (the run computed them), in the sweep's order."""
    listing = list_images(image_dir)
    splits = [split_class(c, 10, 10)[0] for c in listing.classes]
    module = load_module(BUILTIN_MODULE, model_dir, log=lambda *_: None, top_block=layer)
    cache = BottleneckCache(bottleneck_dir, module.identity, module.bottleneck_size)
    try:
        digest_of, unreadable = cache.digests([im.path for c in listing.classes for im in c.images])
        assert not unreadable, unreadable
        data = load_sets(cache, splits, digest_of, module.bottleneck_size)
    finally:
        cache.close()
    return SplitData(np.concatenate([d.x for d in data.values()]), np.concatenate([d.y for d in data.values()]), [])


def cross_validated(data: SplitData, num_classes: int, flags: dict) -> float:
    """Percentage of all images classified correctly when held out, over FOLDS folds (bench.sweep_bottleneck_layer's
    folds and seeds), training the new layer with ``flags``."""
    fold = np.random.default_rng(0).permutation(len(data.y)) % FOLDS
    correct = 0
    for k in range(FOLDS):
        settings = dataclasses.replace(with_flags(RetrainConfig(), flags).training, seed=k, validation_batch_size=-1)
        train, held = fold != k, fold == k
        layer = train_layer(SplitData(data.x[train], data.y[train], []),
                            SplitData(data.x[held][:1], data.y[held][:1], []), num_classes, settings)
        correct += int((layer_probabilities(layer, data.x[held]).argmax(1) == data.y[held]).sum())
    return correct / len(data.y) * 100


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    p.add_argument("--bottleneck_dir", default="/tmp/bottleneck")
    p.add_argument("--model_dir", default=str(default_model_dir()))
    p.add_argument("--json", default=None)
    args = p.parse_args()
    measured_on = machine()
    with tempfile.TemporaryDirectory() as scratch:
        summary, run_seconds = run_preset_auto(args.image_dir, args.bottleneck_dir, args.model_dir, Path(scratch))
    selection = summary["model_selection"]
    chosen, best = selection["chosen"], dict(PRESETS["best"])
    num_classes = len(summary["labels"])
    layers = {chosen["bottleneck_layer"], best["bottleneck_layer"]}
    data = {layer: all_images(args.image_dir, args.bottleneck_dir, args.model_dir, layer) for layer in layers}
    yardstick = {name: cross_validated(data[flags["bottleneck_layer"]], num_classes, flags)
                 for name, flags in (("chosen", chosen), ("preset_best", best))}
    print(f"search {selection['seconds']:.1f} s (select phase {summary['timings_s']['select']:.1f} s, run "
          f"{run_seconds:.1f} s); {FOLDS}-fold cross-validation over {len(data[chosen['bottleneck_layer']].y)} "
          f"images: chosen {yardstick['chosen']:.1f} %, --preset best {yardstick['preset_best']:.1f} %; "
          f"test accuracy of the run {summary['accuracy']['test'] * 100:.1f} % (N={summary['accuracy']['test_count']})")
    result = {"command": command(), "machine": measured_on, "image_dir": args.image_dir,
              "model_selection": selection, "select_phase_seconds": summary["timings_s"]["select"],
              "run_seconds": run_seconds, "timings_s": summary["timings_s"], "test_accuracy": summary["accuracy"],
              "cross_validated_accuracy": {"folds": FOLDS, **yardstick, "preset_best_setting": best}}
    write_result(args.json or REPO / "bench" / "results" / f"preset-auto-{machine_name(measured_on)}.json", result)


if __name__ == "__main__":
    main()
