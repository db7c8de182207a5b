#!/usr/bin/env python3
"""Size and test-set accuracy of every export of one trained run, and how closely each agrees with the frozen graph.

    .venv/bin/python -m bench.exports --graph=/tmp/output_graph.pb --labels=/tmp/output_labels.txt \
        [--saved_model_dir=DIR] [--tflite=a.tflite --tflite=b.tflite ...] \
        --image_dir PHOTOS [--json bench/results/exports-<data>.json]

The test set is the one retrain.py held out with its default 10/10 percentages:
every image that bottleneck.data.split puts in "testing" (split_class, i.e. which_set
plus the small-class rules).  Each model classifies it the way its users would:
- the frozen graph and every .tflite model through label_image.py's engine
  (classify.classify_paths: PIL decoding, legacy bilinear resize);
- the SavedModel through its ``serving_default`` signature, fed the files' raw
  bytes (decoded and resized inside the graph).
Besides accuracy, "agree" is the share of test images whose top label is the
frozen graph's, and "max |d|" the largest score difference from it.  Nothing
is written, except the --json file when asked.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from bench.machine import DEFAULT_IMAGE_DIR, command, machine, write_result

REPO = Path(__file__).resolve().parent.parent


def test_set(image_dir, validation_percentage: float, testing_percentage: float):
    """[(path, label index)] of the held-out test images, and the labels."""
    from bottleneck.data.split import split_class
    from bottleneck.data.walk import list_images

    listing = list_images(image_dir)
    labels = [c.label for c in listing.classes]
    items = []
    for index, image_class in enumerate(listing.classes):
        split, _note = split_class(image_class, validation_percentage, testing_percentage)
        items += [(image.path, index) for image in split.testing]
    return items, labels


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size


def scores_by_engine(classifier, labels, paths, batch_size) -> np.ndarray:
    """[N, C] scores through label_image.py's engine, in label order."""
    from bottleneck.label_image.engine import classify_paths

    index = {label: i for i, label in enumerate(labels)}
    rows = []
    for prediction in classify_paths(classifier, labels, paths, top_k=len(labels), batch_size=batch_size):
        if prediction.error:
            raise SystemExit(f"cannot classify {prediction.path}: {prediction.error}")
        row = np.zeros(len(labels), np.float32)
        for label, score in prediction.top:
            row[index[label]] = score
        rows.append(row)
    return np.stack(rows)


def saved_model_scores(directory: Path, labels, paths, batch_size) -> np.ndarray:
    import tensorflow as tf

    serve = tf.saved_model.load(str(directory)).signatures["serving_default"]
    rows = []
    for start in range(0, len(paths), batch_size):
        chunk = [p.read_bytes() for p in paths[start : start + batch_size]]
        out = serve(image_bytes=tf.constant(chunk))
        rows.append(out["scores"].numpy())
        got = [s.decode() for s in out["labels"].numpy()]
        assert got == [labels[i] for i in rows[-1].argmax(axis=1)], "labels output disagrees with scores"
    return np.concatenate(rows)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    p.add_argument("--graph", required=True, help="The run's --output_graph (.pb).")
    p.add_argument("--labels", required=True, help="The run's --output_labels.")
    p.add_argument("--saved_model_dir", default=None, help="The run's --saved_model_dir.")
    p.add_argument("--tflite", action="append", default=[], help="A .tflite model of the run (may be repeated).")
    p.add_argument("--validation_percentage", type=float, default=10)
    p.add_argument("--testing_percentage", type=float, default=10)
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--json", default=None, help="Also write the figures to this JSON file.")
    args = p.parse_args(argv)

    from bottleneck.model.tf_import import quiet_tensorflow

    quiet_tensorflow("WARN")
    measured_on = machine()
    from bottleneck.export.tflite import load_tflite
    from bottleneck.label_image.engine import load_graph, read_labels

    items, folder_labels = test_set(args.image_dir, args.validation_percentage, args.testing_percentage)
    labels = read_labels(args.labels)
    if labels != folder_labels:
        raise SystemExit(f"--labels {labels} are not the classes of --image_dir {folder_labels}")
    paths = [path for path, _ in items]
    truth = np.array([index for _, index in items])
    print(f"Test set: {len(paths)} images of {len(labels)} classes under {args.image_dir} "
          f"({args.validation_percentage:g}/{args.testing_percentage:g} split)")

    rows = []

    def measure(name, kind, path, run):
        t = time.perf_counter()
        scores = run()
        seconds = time.perf_counter() - t
        rows.append({"model": name, "kind": kind, "path": str(path), "size_mb": size_of(Path(path)) / 1e6,
                     "accuracy": float((scores.argmax(axis=1) == truth).mean()), "scores": scores,
                     "seconds": seconds})

    graph = load_graph(args.graph)
    measure("frozen graph", "pb", args.graph, lambda: scores_by_engine(graph, labels, paths, args.batch_size))
    if args.saved_model_dir:
        measure("SavedModel (bytes)", "saved_model", args.saved_model_dir,
                lambda: saved_model_scores(Path(args.saved_model_dir), labels, paths, args.batch_size))
    for path in args.tflite:
        model = load_tflite(path)
        if model.labels is not None and model.labels != labels:
            raise SystemExit(f"{path} embeds other labels than --labels")
        dtype = np.dtype(model.input["dtype"]).name
        measure(f"TFLite {Path(path).name}", f"tflite ({dtype} input)", path,
                lambda model=model: scores_by_engine(model, labels, paths, args.batch_size))

    reference = rows[0]["scores"]
    print(f"{'model':<34} {'size MB':>9} {'accuracy':>9} {'agree':>7} {'max |d|':>9} {'img/s':>7}")
    for row in rows:
        row["agree"] = float((row["scores"].argmax(axis=1) == reference.argmax(axis=1)).mean())
        row["max_abs_diff"] = float(np.abs(row["scores"] - reference).max())
        print(f"{row['model']:<34} {row['size_mb']:>9.2f} {row['accuracy'] * 100:>8.1f}% {row['agree'] * 100:>6.1f}% "
              f"{row['max_abs_diff']:>9.2e} {len(paths) / row['seconds']:>7.1f}")
    if args.json:
        for row in rows:
            del row["scores"]
        write_result(args.json, {"command": command(argv), "machine": measured_on, "test_images": len(paths),
                                 "rows": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
