#!/usr/bin/env python3
"""A multi-label run on real photos: each flower photo also gets a generated label, "bright" or "dark".

    .venv/bin/python -m bench.multi_label [--image_dir flower_photos_dev] [--work /tmp/bench-multi-label] \
        [--json bench/results/multi-label-<machine>.json]

The second label is the photo's mean brightness (Pillow's grey level over the
whole photo) against the median of all the photos, so half are "bright" and half
"dark" and the labels are independent of the flower.  The CSV file lists every
photo as ``<class>/<file>,<class>|bright`` (or ``dark``), and retrain.py trains
on it with --labels_csv --multi_label (the built-in Inception-v3, defaults,
--random_seed 1).  The result is summary.json's multi-label test figures: mean
average precision, micro and macro F1, every label right, and each label's
threshold, F1 and average precision.
"""
from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

from bench.machine import DEFAULT_IMAGE_DIR, command, machine, machine_name, scratch_outputs, write_result


def brightness_rows(image_dir: Path) -> list[tuple[str, str]]:
    """(path relative to image_dir, "<class>|bright" or "<class>|dark") for every photo of every class folder."""
    from PIL import Image

    photos = sorted(p for p in image_dir.glob("*/*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    means = {}
    for photo in photos:
        with Image.open(photo) as image:
            image.draft("L", (128, 128))
            grey = image.convert("L")
            means[photo] = sum(i * n for i, n in enumerate(grey.histogram())) / (grey.width * grey.height)
    median = sorted(means.values())[len(means) // 2]
    return [(p.relative_to(image_dir).as_posix(), f"{p.parent.name}|{'bright' if means[p] >= median else 'dark'}")
            for p in photos]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--image_dir", default=DEFAULT_IMAGE_DIR)
    parser.add_argument("--work", default="/tmp/bench-multi-label", help="Scratch folder: CSV file, cache, outputs.")
    parser.add_argument("--json", default=None, help="Where to write the result (default: bench/results/).")
    args = parser.parse_args(argv)
    from bottleneck.cli.retrain import retrain_main

    image_dir, work = Path(args.image_dir), Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    rows = brightness_rows(image_dir)
    table = work / "labels.csv"
    with open(table, "w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows([("path", "labels"), *rows])
    started = time.perf_counter()
    code = retrain_main([f"--image_dir={image_dir}", f"--labels_csv={table}", "--multi_label", "--random_seed=1",
                         *scratch_outputs(work / "out")])
    seconds = time.perf_counter() - started
    if code:
        return code
    summary = json.loads((work / "out" / "graph_report" / "summary.json").read_text())
    test = summary["multi_label"]["test"]
    result = {
        "benchmark": "multi_label",
        "command": command(argv),
        "machine": machine(),
        "images": len(rows),
        "bright": sum(labels.endswith("|bright") for _p, labels in rows),
        "retrain_seconds": round(seconds, 1),
        "test_images": test["count"],
        "mean_average_precision": test["mean_average_precision"],
        "micro": test["micro"],
        "macro_f1": test["macro_f1"],
        "all_labels_right": test["all_labels_right"],
        "per_label": {label: {k: stats.get(k) for k in ("threshold", "precision", "recall", "f1", "average_precision",
                                                         "support")}
                      for label, stats in summary["per_class"].items()},
    }
    path = args.json or f"bench/results/multi-label-{machine_name(result['machine'])}.json"
    write_result(path, result)
    print(f"mAP {test['mean_average_precision']:.3f}, micro F1 {test['micro']['f1']:.3f}, macro F1 "
          f"{test['macro_f1']:.3f}, every label right {test['all_labels_right'] * 100:.1f}% "
          f"(N={test['count']} test photos); written to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
