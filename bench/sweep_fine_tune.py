"""Does --fine_tune help, and with which settings?

    .venv/bin/python -m bench.sweep_fine_tune --bottleneck_dir /tmp/bottleneck [--model_dir DIR] \
        --image_dir PHOTOS [--json bench/results/fine-tune-<layer>-<data>.json] [--setting NAME ...]

Each setting is one full ``retrain.retrain`` run (head on cached bottlenecks,
then fine-tuning, then export to a temporary folder) on the same images,
split, seed and distortion flags (--flip_left_right --random_crop 10
--random_scale 10 --random_brightness 10, 3 cached copies).  The first run computes the
activations at the cut for every image and copy; later runs reuse them.
Prints validation accuracy before and after fine-tuning, whether the tuned
network was kept, test accuracy and the fine-tuning time.  --bottleneck_layer
is --preset best's mixed_9 unless given (bench/results/fine-tune-mixed_10-*.json
was measured with --bottleneck_layer mixed_10).
"""
import argparse
import logging
import tempfile
import time

from bench.machine import DEFAULT_IMAGE_DIR, command, machine, write_result
from bottleneck.cli.retrain import build_parser, config_from_args
from bottleneck.model.inception_v3 import TOP_BLOCKS
from bottleneck.model.weights import default_model_dir
from bottleneck.pipeline import retrain

BASE = ["--preset", "best", "--flip_left_right", "--random_crop", "10", "--random_scale", "10",
        "--random_brightness", "10", "--random_seed", "1", "--validation_batch_size", "-1"]
SETTINGS = {
    "head only": [],
    "head only, smoothing 0.1, dropout 0.5": ["--label_smoothing", "0.1", "--dropout", "0.5"],
    "1 block, lr 1e-4": ["--fine_tune", "--fine_tune_learning_rate", "1e-4"],
    "1 block, lr 1e-4, smoothing 0.1, dropout 0.5": ["--fine_tune", "--fine_tune_learning_rate", "1e-4",
                                                     "--label_smoothing", "0.1", "--dropout", "0.5"],
    "1 block, lr 3e-5, smoothing 0.1, dropout 0.5": ["--fine_tune", "--fine_tune_learning_rate", "3e-5",
                                                     "--label_smoothing", "0.1", "--dropout", "0.5"],
    "1 block, lr 3e-4, smoothing 0.1, dropout 0.5": ["--fine_tune", "--fine_tune_learning_rate", "3e-4",
                                                     "--label_smoothing", "0.1", "--dropout", "0.5"],
    "2 blocks, lr 1e-4, smoothing 0.1, dropout 0.5": ["--fine_tune", "--fine_tune_layers", "2",
                                                      "--fine_tune_learning_rate", "1e-4",
                                                      "--label_smoothing", "0.1", "--dropout", "0.5"],
}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    p.add_argument("--bottleneck_dir", default="/tmp/bottleneck")
    p.add_argument("--model_dir", default=str(default_model_dir()))
    p.add_argument("--steps", type=int, default=300, help="--fine_tune_steps of every setting")
    p.add_argument("--setting", nargs="*", choices=sorted(SETTINGS), default=list(SETTINGS))
    p.add_argument("--bottleneck_layer", choices=TOP_BLOCKS, default="mixed_9")
    p.add_argument("--json", default=None)
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    measured_on = machine()
    rows = []
    print(f"{'setting':46} {'val before':>10} {'val after':>9} {'kept':>5} {'test':>6} {'fine-tune s':>11}")
    for name in args.setting:
        with tempfile.TemporaryDirectory(prefix="sweep-fine-tune-") as tmp:
            flags = ["--image_dir", args.image_dir, "--bottleneck_dir", args.bottleneck_dir,
                     "--model_dir", args.model_dir, "--output_graph", f"{tmp}/g.pb", "--output_labels", f"{tmp}/l.txt",
                     "--summaries_dir", f"{tmp}/logs", "--checkpoint_path", f"{tmp}/ckpt", "--quiet",
                     "--fine_tune_steps", str(args.steps), "--bottleneck_layer", args.bottleneck_layer,
                     *BASE, *SETTINGS[name]]
            started = time.perf_counter()
            result = retrain(config_from_args(build_parser().parse_args(flags)))
            tuned = result.summary["fine_tune"]
            row = {
                "setting": name, "flags": SETTINGS[name], "bottleneck_layer": args.bottleneck_layer,
                "validation_before": tuned["validation_accuracy_before"] if tuned else None,
                "validation_after": (tuned["validation_accuracy_after"] if tuned
                                     else result.summary["accuracy"]["validation"]),
                "kept": tuned["helped"] if tuned else None,
                "test": result.test_accuracy, "fine_tune_s": tuned["seconds"] if tuned else 0.0,
                "run_s": time.perf_counter() - started,
            }
        rows.append(row)
        before = "" if row["validation_before"] is None else f"{row['validation_before'] * 100:.1f}"
        print(f"{name:46} {before:>10} {row['validation_after'] * 100:9.1f} {str(row['kept']):>5} "
              f"{row['test'] * 100:6.1f} {row['fine_tune_s']:11.0f}", flush=True)
    if args.json:
        write_result(args.json, {"command": command(), "machine": measured_on, "rows": rows})


if __name__ == "__main__":
    main()
